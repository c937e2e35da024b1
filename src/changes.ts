/**
 * Messages that change (§11.3–§11.4): an edit by its author within EDIT_WINDOW_SECONDS, a
 * deletion by its author or a moderator and up, each stored as an event in the room's sequence
 * (so joins, history and `since` carry it) while the message itself changes in the same commit;
 * and the check that a reply answers a message of the room.
 */
import type { Actor, Authority } from "./authority.ts";
import { eventId } from "./authority.ts";
import type { Batcher } from "./batcher.ts";
import type { Context } from "./context.ts";
import type { Store } from "./engine.ts";
import { MESSAGES, fail, normalizeText, ok, type Result } from "./protocol/rules.ts";
import { isRoom, type DeleteFrame, type EditFrame, type MessageFrame } from "./protocol/wire.ts";
import type { RoomLog } from "./roomlog.ts";

type Args<F> = Omit<F, "type" | "ref">;

export class Changes {
  constructor(
    private readonly ctx: Context,
    private readonly store: Store,
    private readonly log: RoomLog,
    private readonly batcher: Batcher,
    private readonly authority: Authority,
  ) {}

  /** The message `seq` of `room` as it is now, if it is one that may still change; else `not_found`. */
  private async target(room: string, seq: number): Promise<Result<MessageFrame>> {
    const entry = await this.store.entry(room, seq);
    if (!entry || entry.type !== "message" || entry.deleted !== undefined) return fail("not_found", "no such message in this room");
    return ok(entry);
  }

  /** Whether `replyTo` names a message of the room (§11.3): `not_found` otherwise. */
  async replyTarget(room: string, replyTo: number): Promise<Result<null>> {
    const entry = await this.store.entry(room, replyTo);
    return entry?.type === "message" ? ok(null) : fail("not_found", "no such message to reply to");
  }

  /**
   * `edit` (§11.3): the author, not banned or muted there, within EDIT_WINDOW_SECONDS of sending;
   * in a private room, while it may read it (Authority.mayChangeOwn).
   */
  async edit(actor: Actor, frame: Args<EditFrame>): Promise<Result<null>> {
    const { room, seq } = frame;
    if (!isRoom(room)) return fail("room_invalid", MESSAGES.roomInvalid);
    const max = this.ctx.config.maxMessageChars;
    const text = normalizeText(frame.text, max);
    if (text === null) return fail("text_invalid", `text is 1 to ${max} characters, no control characters but tab and newline`);
    const target = await this.target(room, seq);
    if (!target.ok) return target;
    if (target.value.user.id !== actor.ref.id) return fail("forbidden", "only its author may edit a message");
    const window = this.ctx.config.editWindowSeconds;
    const now = this.ctx.now();
    if (window && now - target.value.ts > window * 1000) return fail("forbidden", `a message may be edited for ${window} s after it was sent`);
    const auth = await this.log.auth(room);
    const refused =
      this.authority.banned(auth, actor.ref.id) ?? (await this.authority.mayChangeOwn(room, auth, actor)) ?? this.authority.muted(auth, actor.ref.id);
    if (refused) return refused;
    const stored = await this.batcher.add({ type: "edit", room, user: { ...target.value.user }, id: eventId(), ts: now, target: seq, text });
    return "refused" in stored ? fail("not_found", "no such message in this room") : ok(null);
  }

  /**
   * `delete` (§11.3): the author (in a private room, while it may read it: Authority.mayChangeOwn),
   * or a moderator and up over a lower rank's message.
   */
  async delete(actor: Actor, frame: Args<DeleteFrame>): Promise<Result<null>> {
    const { room, seq } = frame;
    if (!isRoom(room)) return fail("room_invalid", MESSAGES.roomInvalid);
    const target = await this.target(room, seq);
    if (!target.ok) return target;
    const author = target.value.user;
    const auth = await this.log.auth(room);
    const denied =
      author.id === actor.ref.id
        ? await this.authority.mayChangeOwn(room, auth, actor)
        : this.authority.check(auth, actor, "message.delete", await this.authority.rankOf(auth, author.id));
    if (denied) return denied;
    const stored = await this.batcher.add({ type: "delete", room, user: { ...actor.ref }, id: eventId(), ts: this.ctx.now(), target: seq });
    if ("refused" in stored) return fail("not_found", "no such message in this room");
    if (author.id !== actor.ref.id) await this.authority.audit({ room, ts: this.ctx.now(), action: "delete", by: { ...actor.ref }, user: author, detail: { seq } });
    return ok(null);
  }
}
