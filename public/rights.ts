/**
 * Who may do what in a room, as far as the page needs to know what to offer: the server decides
 * (its table is src/core/rights.ts), and this mirrors it so the page shows a control only to
 * those it will work for. Pure.
 *
 * Ranks, lowest first: member < moderator < owner (of the room) < admin (of the server). One acts
 * only on lower ranks (admins on everyone), and nobody kicks, bans or mutes a room's owner.
 */

import type { Role } from "../src/protocol/wire.ts";

export type Rank = "member" | "moderator" | "owner" | "admin";

const ORDER: Record<Rank, number> = { member: 0, moderator: 1, owner: 2, admin: 3 };

/** A user's rank in a room: its role there, or admin everywhere. `rankOf("member", true) // => "admin"` */
export function rankOf(role: Role | undefined, admin = false): Rank {
  return admin ? "admin" : (role ?? "member");
}

/** Whether `rank` is `least` or above. */
export function atLeast(rank: Rank, least: Rank): boolean {
  return ORDER[rank] >= ORDER[least];
}

/** Sets the topic (the rest of the settings, and roles: `atLeast(rank, "owner")`). */
export const mayTopic = (rank: Rank) => atLeast(rank, "moderator");
export const maySettings = (rank: Rank) => atLeast(rank, "owner");
export const mayInvite = (rank: Rank) => atLeast(rank, "moderator");
/** Writes in a read-only room, and without waiting for slow mode. */
export const mayWriteFreely = (rank: Rank) => atLeast(rank, "moderator");

/** Acts on a user of rank `target`: an admin on anyone, others only on lower ranks. */
function over(actor: Rank, target: Rank): boolean {
  return actor === "admin" || ORDER[target] < ORDER[actor];
}

/**
 * Kicks, mutes or bans a user of rank `target` in the room.
 *   mayModerate("moderator", "member") // => true     mayModerate("admin", "owner") // => false
 */
export function mayModerate(actor: Rank, target: Rank): boolean {
  return atLeast(actor, "moderator") && target !== "owner" && over(actor, target);
}

/** Deletes a message by a user of rank `author`: one's own always, others' as a moderator over them. */
export function mayDelete(actor: Rank, author: Rank, mine: boolean): boolean {
  return mine || (atLeast(actor, "moderator") && over(actor, author));
}

/** Makes a user of rank `target` a moderator, or a member again (the owner and admins). */
export function maySetRole(actor: Rank, target: Rank): boolean {
  return atLeast(actor, "owner") && target !== "owner" && over(actor, target);
}
