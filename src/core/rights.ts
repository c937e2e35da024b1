/**
 * Who may do what (§11.2–§11.4), as one table of actions by the least rank that may take them,
 * and one function every door's request is checked with: may(actor, action, target). Pure.
 *
 * Ranks, lowest first: member < moderator < owner (of the room) < admin (of the server). An
 * admin outranks everyone in every room.
 */

/** A user's standing in one room. */
export type Rank = "member" | "moderator" | "owner" | "admin";

const ORDER: Record<Rank, number> = { member: 0, moderator: 1, owner: 2, admin: 3 };

/** Everything a request may need a right for. */
export type Action =
  /** Set a room's topic. */
  | "room.topic"
  /** Set a room's other settings: private, readOnly, slowModeSeconds. */
  | "room.settings"
  /** Give or take a role (moderator, member) or hand the room over (owner). */
  | "room.role"
  /** Make an invite code. */
  | "room.invite"
  /** Join a private room without being on its list. */
  | "room.enter"
  /** Send in a read-only room. */
  | "send.readOnly"
  /** Send without waiting for slow mode. */
  | "send.slowMode"
  /** Delete someone else's message. */
  | "message.delete"
  /** Kick, ban, unban or mute someone in a room. */
  | "user.moderate"
  /** Ban someone from the whole server, or an address. */
  | "server.ban"
  /** Read the audit log and private rooms over HTTP; manage bots. */
  | "server.admin";

/** The table: the least rank that may take each action. */
export const LEAST_RANK: Readonly<Record<Action, Rank>> = {
  "room.topic": "moderator",
  "room.settings": "owner",
  "room.role": "owner",
  "room.invite": "moderator",
  "room.enter": "moderator",
  "send.readOnly": "moderator",
  "send.slowMode": "moderator",
  "message.delete": "moderator",
  "user.moderate": "moderator",
  "server.ban": "admin",
  "server.admin": "admin",
};

/** Actions taken on another user, where the target's rank matters too. */
const ON_USERS: ReadonlySet<Action> = new Set(["room.role", "user.moderate", "server.ban", "message.delete"]);
/** Actions no one takes on a room's owner there (§11.3): it may not be kicked, banned or muted in its room. */
const SPARING_OWNERS: ReadonlySet<Action> = new Set(["user.moderate", "server.ban"]);

/** Who acts or is acted on, in one room: its rank there. */
export interface Standing {
  rank: Rank;
}

/**
 * Whether `actor` may take `action` (on `target`, for actions on users): null when it may, else
 * why not, for the `forbidden` error's message. An actor acts only on users of a lower rank
 * (admins on everyone), and no one acts on a room's owner but through `room.role` by an admin.
 *
 *   may({rank: "moderator"}, "user.moderate", {rank: "member"})    // => null
 *   may({rank: "moderator"}, "user.moderate", {rank: "moderator"}) // => "…not over a moderator"
 *   may({rank: "admin"}, "user.moderate", {rank: "owner"})         // => "…the room's owner"
 */
export function may(actor: Standing, action: Action, target?: Standing): string | null {
  const least = LEAST_RANK[action];
  if (ORDER[actor.rank] < ORDER[least]) return `only ${least === "admin" ? "admins" : `the ${least}s and up`} may do that`;
  if (!target || !ON_USERS.has(action)) return null;
  if (target.rank === "owner" && SPARING_OWNERS.has(action)) return "not on the room's owner";
  if (actor.rank !== "admin" && ORDER[target.rank] >= ORDER[actor.rank]) return `not over ${target.rank === "admin" ? "an admin" : `the ${target.rank}`}`;
  return null;
}

/** A user's rank in a room: admin over everything, else its role there. */
export function rankOf(role: "owner" | "moderator" | "member", admin: boolean): Rank {
  return admin ? "admin" : role;
}
