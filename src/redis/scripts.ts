/**
 * The Redis engine's Lua scripts (lua/), as the sources RedisLink.run loads and calls by SHA.
 * Each script's opening comment names its KEYS and ARGV; this file only puts them together.
 */
import trimLib from "./lua/trim-lib.lua" with { type: "text" };
import append from "./lua/append.lua" with { type: "text" };
import trim from "./lua/trim.lua" with { type: "text" };
import reclaim from "./lua/reclaim.lua" with { type: "text" };
import rosterAdd from "./lua/roster-add.lua" with { type: "text" };
import rosterRemove from "./lua/roster-remove.lua" with { type: "text" };
import rosterRename from "./lua/roster-rename.lua" with { type: "text" };
import rosterAdopt from "./lua/roster-adopt.lua" with { type: "text" };
import nameClaim from "./lua/name-claim.lua" with { type: "text" };
import nameRelease from "./lua/name-release.lua" with { type: "text" };
import bucketTake from "./lua/bucket-take.lua" with { type: "text" };
import sessionSave from "./lua/session-save.lua" with { type: "text" };
import sessionRevoke from "./lua/session-revoke.lua" with { type: "text" };
import ownerClaim from "./lua/owner-claim.lua" with { type: "text" };
import roleSet from "./lua/role-set.lua" with { type: "text" };
import inviteUse from "./lua/invite-use.lua" with { type: "text" };

export const SCRIPTS = {
  /** Stores, trims and publishes one message. */
  append: trimLib + append,
  /** Trims one quiet room by age. */
  trim: trimLib + trim,
  /** Drops the history of the room idle longest, to make room in MAX_ROOMS. */
  reclaim: trimLib + reclaim,
  rosterAdd,
  rosterRemove,
  rosterRename,
  rosterAdopt,
  nameClaim,
  nameRelease,
  /** One token of a shared bucket (the same rule as core/bucket.ts's TokenBucket). */
  bucketTake,
  sessionSave,
  sessionRevoke,
  ownerClaim,
  roleSet,
  inviteUse,
} as const;
