/**
 * Moderation as the page sees it. For moderators: a menu on each member they outrank (remove,
 * mute for 10 min, 1 h or 1 day, ban with an optional reason, make or unmake a moderator; for
 * admins, ban from the whole chat), and "Unban" on the line of a ban they saw (a banned person
 * is in no member list). For everyone: live `moderation` frames as lines in the log and changes
 * to roles; being sent out of a room (`left` with a reason: the room stays on screen saying why,
 * and is not joined again by itself; a ban is remembered until it ends, and the room joined
 * again then); being muted, a read-only room and slow mode, which decide what the composer says
 * and whether Send works (with a countdown in slow mode).
 */

import type { ErrorFrame, LeftFrame, ModerationFrame, UserRef } from "../src/protocol/wire.ts";
import type { Connection } from "./connection.ts";
import { TIMER_MAX_MS, h, untilText } from "./dom.ts";
import { duration, moderationLine, outLine } from "./events.ts";
import type { Identity, Self } from "./identity.ts";
import { showMenu, type Ask, type MenuItem } from "./menu.ts";
import { mayModerate, maySetRole, mayWriteFreely, rankOf, type Rank } from "./rights.ts";
import type { Room } from "./room.ts";
import type { Rooms } from "./rooms.ts";
import { refused as slowRefused, waitMs as slowWait } from "./slow.ts";
import { refFor } from "./sync.ts";

/** The lengths of a mute the member menu offers, in seconds. */
const MUTES = [600, 3_600, 86_400] as const;
/** After a ban's end, before joining again: the server's clock may be a little ahead of this one. */
const BAN_END_SLACK_MS = 1_000;
/** A ban that ended by this clock but not by the server's: ask again no sooner than this. */
const BAN_END_RETRY_MS = 30_000;

/** What the composer shows for a room: a note, whether writing is closed, how long Send waits. */
export interface WriteState {
  note: string;
  blocked: boolean;
  waitMs: number;
  /** When this state changes by itself (a mute ends, the countdown's second turns), in ms; 0: not. */
  changesInMs: number;
}

export interface ModerationDeps {
  rooms: Rooms;
  link: Connection;
  self: Self;
  identity: Identity;
  ask: Ask;
  notice(text: string): void;
  /** A room's standing changed: the page redraws its header and composer. */
  changed(room: Room): void;
}

export type Moderation = ReturnType<typeof createModeration>;

export function createModeration(deps: ModerationDeps) {
  const { rooms, link, self, identity, ask, notice } = deps;
  /** A server-wide ban of this user, as its moderation frame said (before the 4003 close). */
  let serverBan: ModerationFrame | null = null;

  const myRank = (room: Room): Rank => rankOf(room.role, self.admin);
  const rankOfUser = (room: Room, id: string): Rank => rankOf(room.roles.get(id));

  /** Whether the reader may act on `user` in `room`: the member list gives it a menu. */
  function actsOn(room: Room, user: UserRef): boolean {
    if (user.id === self.me?.id || room.out) return false;
    const target = rankOfUser(room, user.id);
    return mayModerate(myRank(room), target) || maySetRole(myRank(room), target);
  }

  /** The ⋯ of a member in the list: what the reader may do to them. */
  function openMenu(button: HTMLButtonElement): void {
    const room = rooms.currentRoom();
    const user = room?.members.get(button.closest<HTMLElement>("li")?.dataset.user ?? "");
    if (!room || !user) return;
    const mine = myRank(room);
    const theirs = rankOfUser(room, user.id);
    const items: MenuItem[] = [];
    if (mayModerate(mine, theirs)) {
      items.push({ label: "Remove from room…", run: () => void kick(room, user) });
      for (const seconds of MUTES) items.push({ label: `Mute for ${duration(seconds)}`, run: () => act(room, { type: "mute", room: room.name, user: user.id, seconds }) });
      if ((room.muted.get(user.id) ?? 0) > Date.now()) items.push({ label: "Unmute", run: () => act(room, { type: "mute", room: room.name, user: user.id, seconds: 0 }) });
      items.push({ label: "Ban…", danger: true, run: () => void ban(room, user) });
    }
    if (self.admin) items.push({ label: "Ban from this chat…", danger: true, run: () => void banEverywhere(room, user) });
    if (maySetRole(mine, theirs)) {
      const role = theirs === "moderator" ? "member" : "moderator";
      items.push({ label: role === "moderator" ? "Make moderator" : "Remove moderator role", run: () => act(room, { type: "role", room: room.name, user: user.id, role }) });
    }
    showMenu(button, `Actions for ${user.name}`, items);
  }

  /** Sends a moderation command; the server's moderation frame shows what it did. */
  function act(room: Room, frame: Parameters<Connection["send"]>[0], ref = refFor("moderate", room.name)): void {
    if (!link.send({ ...frame, ref })) notice("Not connected: nothing was done.");
  }

  async function kick(room: Room, user: UserRef): Promise<void> {
    const answer = await ask({
      title: `Remove ${user.name} from #${room.name}?`,
      text: `${user.name} leaves the room now and may come back${room.settings.private ? " only with an invite" : ""}. A ban keeps someone out.`,
      ok: "Remove",
      reason: true,
    });
    if (answer) act(room, { type: "kick", room: room.name, user: user.id, ...(answer.reason ? { reason: answer.reason } : {}) });
  }

  async function ban(room: Room, user: UserRef): Promise<void> {
    const answer = await ask({
      title: `Ban ${user.name} from #${room.name}?`,
      text: `${user.name} leaves the room now and cannot join it again until the ban ends.`,
      ok: "Ban",
      reason: true,
      length: true,
    });
    if (!answer) return;
    const seconds = answer.seconds === null ? {} : { seconds: answer.seconds };
    act(room, { type: "ban", room: room.name, user: user.id, ...seconds, ...(answer.reason ? { reason: answer.reason } : {}) });
  }

  /** Admins: a server-wide ban, which closes the user's every connection (§11.4); only the user is told, so `ok` gets a notice. */
  async function banEverywhere(room: Room, user: UserRef): Promise<void> {
    const answer = await ask({
      title: `Ban ${user.name} from this chat?`,
      text: `All of ${user.name}'s connections close now, and ${user.name} cannot come back to any room until the ban ends.`,
      ok: "Ban",
      reason: true,
      length: true,
    });
    if (!answer) return;
    const seconds = answer.seconds === null ? {} : { seconds: answer.seconds };
    act(room, { type: "ban", user: user.id, ...seconds, ...(answer.reason ? { reason: answer.reason } : {}) }, refFor("serverban", room.name, user.name));
  }

  // ─── Frames ────────────────────────────────────────────────────────────────────────────────

  function onModeration(f: ModerationFrame): void {
    const me = f.user.id === self.me?.id;
    if (f.room === undefined) {
      if (me && f.action === "ban") serverBan = f;
      return;
    }
    const room = rooms.get(f.room);
    if (!room) return;
    if (me) room.action = f;
    if (f.action === "role") setRole(room, f.user.id, f.role ?? "member");
    else if (f.action === "mute") room.muted.set(f.user.id, f.until ?? Infinity);
    else if (f.action === "unmute") room.muted.delete(f.user.id);
    if (me && (f.action === "mute" || f.action === "unmute")) room.mutedUntil = f.action === "mute" ? (f.until ?? Infinity) : 0;
    const row = rooms.line(room, moderationLine(f, untilText));
    if (f.action === "ban" && mayModerate(myRank(room), rankOfUser(room, f.user.id))) row.append(" ", unbanButton(room, f.user));
    // Lifted: no line offers it any more.
    if (f.action === "unban") for (const button of room.view.list.querySelectorAll<HTMLButtonElement>("button.unban")) if (button.dataset.user === f.user.id) button.remove();
    rooms.renderMembers();
    deps.changed(room);
  }

  function unbanButton(room: Room, user: UserRef): HTMLButtonElement {
    const button = h("button", { class: "link-button unban", text: "Unban", attrs: { type: "button", "aria-label": `Unban ${user.name} from #${room.name}` } });
    button.dataset.user = user.id;
    button.addEventListener("click", () => act(room, { type: "unban", room: room.name, user: user.id }));
    return button;
  }

  function setRole(room: Room, id: string, role: "owner" | "moderator" | "member"): void {
    if (role === "owner") {
      // Handing the room over: the old owner becomes a moderator.
      for (const [other, held] of room.roles) if (held === "owner") room.roles.set(other, "moderator");
      if (room.role === "owner") room.role = "moderator";
    }
    if (role === "member") room.roles.delete(id);
    else room.roles.set(id, role);
    if (id === self.me?.id) room.role = role;
  }

  /** Sent out of a room: it stays on screen saying why; a ban is remembered until it ends. */
  function onLeft(f: LeftFrame): void {
    const room = rooms.get(f.room);
    if (!room || !f.reason) return;
    const action = room.action?.action === (f.reason === "kicked" ? "kick" : "ban") ? room.action : undefined;
    if (f.reason === "banned") banned(room, action?.until ?? null);
    rooms.shut(room, outLine(f.reason, room.name, action, untilText), true);
  }

  /** Joined: the server let us in, so a ban this browser remembered for the room is over (lifted, or ended). */
  function joined(room: string): void {
    if (identity.bans().has(room)) identity.setBan(room, false);
  }

  /** A join refused with `banned`: out, and remembered until the ban ends. True if it was that. */
  function joinRefused(room: Room, f: ErrorFrame): boolean {
    if (f.code !== "banned") return false;
    banned(room, f.until ?? null);
    rooms.shut(room, bannedText(room.name, f.until ?? null), true);
    return true;
  }

  function bannedText(room: string, until: number | null): string {
    return `You are banned from #${room}${until ? ` until ${untilText(until)}` : ""}.`;
  }

  /** A room is made: if this browser knows of a ban from it that still holds, it is not joined. */
  function made(room: Room): void {
    const bans = identity.bans();
    if (!bans.has(room.name)) return;
    const until = bans.get(room.name) ?? null;
    if (until !== null && until <= Date.now()) return identity.setBan(room.name, false);
    room.out = { text: bannedText(room.name, until), rejoin: true };
    rejoinAtEnd(room, until);
  }

  /** Banned from `room` until `until` (null: until unbanned): remembered, and joined again when it ends. */
  function banned(room: Room, until: number | null): void {
    identity.setBan(room.name, until);
    rejoinAtEnd(room, until);
  }

  /** A ban that ends while the page is open: the room is joined again then, as after a reload. */
  function rejoinAtEnd(room: Room, until: number | null): void {
    if (until === null) return;
    const inMs = until - Date.now();
    // A later end waits for the reader's "Join again".
    if (inMs > TIMER_MAX_MS) return;
    window.setTimeout(
      () => {
        // Still this ban, still out: not lifted, lengthened or left meanwhile.
        if (identity.bans().get(room.name) !== until || !room.out || rooms.get(room.name) !== room) return;
        identity.setBan(room.name, false);
        rooms.rejoin(room);
      },
      inMs > 0 ? inMs + BAN_END_SLACK_MS : BAN_END_RETRY_MS,
    );
  }

  /** A send was refused: a mute says until when, slow mode how long to wait; the composer shows it. */
  function sendRefused(room: Room, f: ErrorFrame): void {
    if (f.code === "muted") room.mutedUntil = f.until ?? Infinity;
    else if (f.code === "slow_mode") slowRefused(room, f.retryAfterMs, Date.now());
    else return;
    deps.changed(room);
  }

  /** What the composer of `room` says and allows now. */
  function writeState(room: Room | undefined): WriteState {
    const open = { note: "", blocked: false, waitMs: 0, changesInMs: 0 };
    if (!room || room.out) return { ...open, blocked: room !== undefined };
    const at = Date.now();
    if (room.mutedUntil > at) {
      const ends = Number.isFinite(room.mutedUntil);
      const until = ends ? ` until ${untilText(room.mutedUntil)}` : "";
      const why = room.action?.action === "mute" && room.action.reason ? ` (${room.action.reason})` : "";
      return { ...open, note: `You are muted in #${room.name}${until}${why}.`, blocked: true, changesInMs: ends ? room.mutedUntil - at : 0 };
    }
    const free = mayWriteFreely(myRank(room));
    if (room.settings.readOnly && !free) return { ...open, note: `#${room.name} is read-only: only moderators write here.`, blocked: true };
    const slow = room.settings.slowModeSeconds;
    if (!slow || free) return open;
    const waitMs = slowWait(room, free, at);
    return { ...open, note: `Slow mode: one message per ${duration(slow)}.`, waitMs, changesInMs: waitMs % 1000 || Math.min(waitMs, 1000) };
  }

  /** What the page says when the server closed with 4003: banned from the whole chat. */
  function serverBanned(): string {
    const f = serverBan;
    const until = f?.until ? ` until ${untilText(f.until)}` : "";
    return `You are banned from this chat${until}${f?.reason ? `: ${f.reason}` : ""}.`;
  }

  return { actsOn, openMenu, onModeration, onLeft, joined, joinRefused, made, sendRefused, writeState, serverBanned };
}
