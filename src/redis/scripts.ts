/**
 * The Redis engine's Lua scripts (lua/), as the sources RedisLink.run loads and calls by SHA.
 * Each script's opening comment names its KEYS and ARGV; this file only puts them together. A
 * script whose second run of one call would do or answer otherwise than its first is made with
 * `once` (link.ts): a call sent again after a lost connection gets the first run's answer.
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
import bucketTakeAll from "./lua/bucket-take-all.lua" with { type: "text" };
import bucketRestore from "./lua/bucket-restore.lua" with { type: "text" };
import slowTake from "./lua/slow-take.lua" with { type: "text" };
import sessionSave from "./lua/session-save.lua" with { type: "text" };
import sessionRevoke from "./lua/session-revoke.lua" with { type: "text" };
import ownerClaim from "./lua/owner-claim.lua" with { type: "text" };
import roleSet from "./lua/role-set.lua" with { type: "text" };
import inviteCreate from "./lua/invite-create.lua" with { type: "text" };
import inviteUse from "./lua/invite-use.lua" with { type: "text" };
import restrictionsSweep from "./lua/restrictions-sweep.lua" with { type: "text" };
import serverBan from "./lua/server-ban.lua" with { type: "text" };
import hooksLib from "./lua/hooks-lib.lua" with { type: "text" };
import hooksAdd from "./lua/hooks-add.lua" with { type: "text" };
import hooksTake from "./lua/hooks-take.lua" with { type: "text" };
import hooksDone from "./lua/hooks-done.lua" with { type: "text" };
import hooksRetry from "./lua/hooks-retry.lua" with { type: "text" };
import hooksTakeover from "./lua/hooks-takeover.lua" with { type: "text" };
import { once } from "./link.ts";

export const SCRIPTS = {
  /** Stores, trims and publishes one message, and queues its webhook event. */
  append: trimLib + hooksLib + append,
  /** Trims one quiet room by age. */
  trim: trimLib + trim,
  /** Drops the history of the room idle longest, to make room in MAX_ROOMS. */
  reclaim: once(trimLib + reclaim),
  /** Indexes the rooms an older instance's data holds by their newest entry, for reclaim. */
  heldIndex: trimLib + heldIndex,
  rosterAdd: once(rosterAdd),
  rosterRemove: once(rosterRemove),
  /** Once: a second run would publish the rename again. */
  rosterRename: once(rosterRename),
  rosterAdopt: once(rosterAdopt),
  rosterGrace,
  nameClaim,
  nameRelease,
  /** An instance's hold of a user as a server admin, or its release. */
  adminHold,
  /** One token from each of its keys, in order (the same rule as core/bucket.ts's TokenBucket). */
  bucketTake: once(bucketTake),
  /** One token from each of its keys, or from none (a room start: the user's and the address's). */
  bucketTakeAll: once(bucketTakeAll),
  /** A user's shared bucket put back after Redis lost its data. */
  bucketRestore,
  /** A user's slow-mode slot in a room, shared by every instance. */
  slowTake: once(slowTake),
  sessionSave,
  sessionRevoke,
  ownerClaim: once(ownerClaim),
  /** Once: a second run would queue its webhook events again. */
  roleSet: once(hooksLib + roleSet),
  /** Once: a resend of a call that stored its code would count that code and refuse it. */
  inviteCreate: once(inviteCreate),
  inviteUse: once(inviteUse),
  /** A user's server-wide ban (and its address's), or the lifting of it and of the address bans its bans made. Once: its webhook events. */
  serverBan: once(hooksLib + serverBan),
  /** Drops the room bans and mutes that lapsed. */
  restrictionsSweep,
  /** The webhook outbox (§11.7): queue live events, take, done, retry, take over a dead instance's. */
  hooksAdd: once(hooksLib + hooksAdd),
  /** Once: a second run would take other events, and those the first took would wait on this consumer for good. */
  hooksTake: once(hooksTake),
  hooksDone: hooksLib + hooksDone,
  hooksRetry,
  hooksTakeover,
} as const;
