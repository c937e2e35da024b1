/**
 * The Redis engine's Lua scripts (lua/), as the sources RedisLink.run loads and calls by SHA.
 * Each script's opening comment names its KEYS and ARGV; this file only puts them together.
 */
import trimLib from "./lua/trim-lib.lua" with { type: "text" };
import append from "./lua/append.lua" with { type: "text" };
import trim from "./lua/trim.lua" with { type: "text" };
import reclaim from "./lua/reclaim.lua" with { type: "text" };
import heldIndex from "./lua/held-index.lua" with { type: "text" };
import rosterAdd from "./lua/roster-add.lua" with { type: "text" };
import rosterRemove from "./lua/roster-remove.lua" with { type: "text" };
import rosterRename from "./lua/roster-rename.lua" with { type: "text" };
import rosterAdopt from "./lua/roster-adopt.lua" with { type: "text" };
import rosterGrace from "./lua/roster-grace.lua" with { type: "text" };
import nameClaim from "./lua/name-claim.lua" with { type: "text" };
import nameRelease from "./lua/name-release.lua" with { type: "text" };
import adminHold from "./lua/admin-hold.lua" with { type: "text" };
import bucketTake from "./lua/bucket-take.lua" with { type: "text" };
import bucketRestore from "./lua/bucket-restore.lua" with { type: "text" };
import slowTake from "./lua/slow-take.lua" with { type: "text" };
import sessionSave from "./lua/session-save.lua" with { type: "text" };
import sessionRevoke from "./lua/session-revoke.lua" with { type: "text" };
import ownerClaim from "./lua/owner-claim.lua" with { type: "text" };
import roleSet from "./lua/role-set.lua" with { type: "text" };
import inviteUse from "./lua/invite-use.lua" with { type: "text" };
import restrictionsSweep from "./lua/restrictions-sweep.lua" with { type: "text" };
import serverBan from "./lua/server-ban.lua" with { type: "text" };
import hooksLib from "./lua/hooks-lib.lua" with { type: "text" };
import hooksAdd from "./lua/hooks-add.lua" with { type: "text" };
import hooksTake from "./lua/hooks-take.lua" with { type: "text" };
import hooksDone from "./lua/hooks-done.lua" with { type: "text" };
import hooksRetry from "./lua/hooks-retry.lua" with { type: "text" };
import hooksTakeover from "./lua/hooks-takeover.lua" with { type: "text" };

export const SCRIPTS = {
  /** Stores, trims and publishes one message, and queues its webhook event. */
  append: trimLib + hooksLib + append,
  /** Trims one quiet room by age. */
  trim: trimLib + trim,
  /** Drops the history of the room idle longest, to make room in MAX_ROOMS. */
  reclaim: trimLib + reclaim,
  /** Indexes the rooms an older instance's data holds by their newest entry, for reclaim. */
  heldIndex: trimLib + heldIndex,
  rosterAdd,
  rosterRemove,
  rosterRename,
  rosterAdopt,
  rosterGrace,
  nameClaim,
  nameRelease,
  /** An instance's hold of a user as a server admin, or its release. */
  adminHold,
  /** One token from each of its keys, in order (the same rule as core/bucket.ts's TokenBucket). */
  bucketTake,
  /** A user's shared bucket put back after Redis lost its data. */
  bucketRestore,
  /** A user's slow-mode slot in a room, shared by every instance. */
  slowTake,
  sessionSave,
  sessionRevoke,
  ownerClaim,
  roleSet: hooksLib + roleSet,
  inviteUse,
  /** A user's server-wide ban (and its address's), or the lifting of it and of the address bans its bans made. */
  serverBan: hooksLib + serverBan,
  /** Drops the room bans and mutes that lapsed. */
  restrictionsSweep,
  /** The webhook outbox (§11.7): queue live events, take, done, retry, take over a dead instance's. */
  hooksAdd: hooksLib + hooksAdd,
  hooksTake,
  hooksDone: hooksLib + hooksDone,
  hooksRetry,
  hooksTakeover,
} as const;
