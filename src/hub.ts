/**
 * The hub: the protocol's rules for what a client asks (hello, join, leave, send, typing,
 * history, signout), whichever door it came through and whichever engine stores it. The doors
 * turn frames and lines into these calls and render the answers their own way; the parts below
 * do the mechanics: Users (identity, names, sessions), Authority (rights, rooms' settings, roles
 * and invites), Membership (presence and its announcements), RoomLog (delivery in seq order),
 * Batcher (group commit), RateGate, Conns (caps) and Directory.
 */
import type { TokenVerifier } from "./auth.ts";
import { Authority, actorOf, isNewRoom, roleIn, type Actor } from "./authority.ts";
import { Batcher } from "./batcher.ts";
import { WsConnection, type Connection } from "./connection.ts";
import { Conns } from "./conns.ts";
import type { Context } from "./context.ts";
import { Presence } from "./core/presence.ts";
import { Directory, type RoomEntry, type RoomsPage } from "./directory.ts";
import { DAY_MS, outboxBounds, type Appended, type RoomAuth, type NewMessage, type Page, type PageQuery, type Relay, type RoomCount, type Roster, type Store } from "./engine.ts";
import type { Fanout } from "./fanout.ts";
import { Bots } from "./bots.ts";
import { Changes } from "./changes.ts";
import { Membership, type Entering } from "./membership.ts";
import { Moderation } from "./moderation.ts";
import { MESSAGES, fail, normalizeText, ok, withRef, type Failure, type Result } from "./protocol/rules.ts";
import { CLOSE, CLOSE_REASON, isRoom, type ClientFrame, type ClientFrameType, type JoinedFrame, type MessageFrame, type StoredFrame, type UserRef } from "./protocol/wire.ts";
import { RateGate, type Token } from "./rate.ts";
import { RoomLog } from "./roomlog.ts";
import { Users, type HelloAsk } from "./users.ts";
import { Webhooks, webhookOptions } from "./webhooks.ts";

export type { RoomEntry, RoomsPage } from "./directory.ts";

/** The commands of §11.3 (Hub.command): what the WebSocket and the HTTP API both take. */
export type CommandFrame = Extract<ClientFrame, { type: "edit" | "delete" | "room_settings" | "role" | "kick" | "ban" | "unban" | "mute" | "invite" }>;

/** A join as the hub takes it: the room, where to resume, how many messages `joined` carries. */
export interface Join {
  room: string;
  /** Resume after this seq (§4); undefined for the newest messages. */
  since?: number;
  /** The room's epoch as the joiner last saw it: another one than the room's voids `since` (issue 21: 1). */
  epoch?: string;
  /** Messages in `joined` at most (HISTORY_ON_JOIN; the TCP door shows fewer). */
  limit: number;
  /** An invite code to a private room (§11.2). */
  invite?: string;
  /** What `joined` echoes. */
  ref?: string;
}

/** A frame to pay for and answer (Hub.spend). */
export interface Paid {
  conn: Connection;
  /** The frame's type; undefined for a TCP line or a frame that did not parse. */
  type: ClientFrameType | undefined;
  /** What an error answer echoes. */
  ref: string | undefined;
  /** The token asked for as the frame arrived (Hub.ask), if any. */
  asked: Token | null;
  /** Answers the frame, once it is paid for. */
  answer: () => void | Promise<void>;
}

export class Hub {
  readonly conns: Conns;
  readonly presence: Presence<Connection>;
  readonly users: Users;
  readonly rate: RateGate;
  readonly batcher: Batcher;
  readonly log: RoomLog;
  readonly membership: Membership;
  readonly directory: Directory;
  readonly authority: Authority;
  readonly changes: Changes;
  readonly bots: Bots;
  readonly moderation: Moderation;
  /** The webhook deliverer (§11.7); null while WEBHOOK_URL is unset. */
  readonly webhooks: Webhooks | null;
  /** Whether members can sign in (an AUTH_* key is set). */
  readonly signsInMembers: boolean;

  constructor(
    private readonly ctx: Context,
    readonly store: Store,
    private readonly fanout: Fanout,
    readonly relay: Relay,
    private readonly roster: Roster,
    verifier: TokenVerifier | null,
  ) {
    this.conns = new Conns(ctx.config);
    this.presence = new Presence(ctx.config.presenceGraceMs);
    this.rate = new RateGate(ctx, roster);
    this.users = new Users(ctx, store, roster, this.rate, this.presence, verifier);
    this.signsInMembers = verifier !== null;
    this.batcher = new Batcher(store, relay, ctx.metrics);
    const hooks = webhookOptions(ctx.config);
    this.webhooks = hooks && new Webhooks(ctx, store.openOutbox(outboxBounds(ctx.config)), hooks);
    this.log = new RoomLog(ctx, store, relay, fanout, this.presence, () => roster.recover(false), (room, auth) => this.moderation.recheck(room, auth));
    this.membership = new Membership(ctx, this.presence, roster, fanout, this.batcher, this.log, this.users, this.webhooks);
    this.directory = new Directory(ctx.now, store, roster, this.presence, this.log);
    this.authority = new Authority(ctx, store, roster, this.log, this.membership, this.batcher, fanout, this.users, this.webhooks);
    this.changes = new Changes(ctx, store, this.log, this.batcher, this.authority);
    this.bots = new Bots(ctx, store, this.conns, this.membership);
    this.moderation = new Moderation(ctx, store, this.log, this.authority, this.membership, fanout, relay, this.users, this.conns, this.webhooks);
    relay.attach({
      receive: (message, epoch) => this.log.receive(message, epoch),
      catchUp: (room) => this.log.catchUp(room),
      event: ({ frame, oldName }) => {
        if (frame.type === "moderation") this.moderation.apply(frame, false);
        else this.membership.event({ frame, ...(oldName !== undefined ? { oldName } : {}) });
      },
      server: (event) => {
        if (event.type === "ban") void this.moderation.serverBan(event);
        else if (event.type === "signout") this.closeSession(event.userId, event.session);
        else if (event.type === "rename") this.membership.renamedElsewhere(event.userId, event.name, event.version);
        else this.membership.nameLost(event.userId, event.name);
      },
      resubscribed: () => void this.moderation.recheckServerBans(),
    });
    roster.attach(this.membership);
  }

  private get config() {
    return this.ctx.config;
  }

  open(conn: Connection): void {
    this.conns.add(conn);
    conn.helloTimer = setTimeout(() => conn.user === null && conn.helloExpired(), this.config.helloTimeoutMs);
    this.ctx.log("info", "open", { conn: conn.id, transport: conn.transport, ip: conn.ip });
  }

  /** The one cleanup of a closed connection; safe to call twice. */
  close(conn: Connection, code: number, reason: string): void {
    if (!this.conns.remove(conn)) return;
    this.membership.drop(conn);
    this.ctx.log("info", "close", {
      conn: conn.id,
      transport: conn.transport,
      ip: conn.ip,
      user: conn.user?.ref.id,
      durationMs: this.ctx.now() - conn.openedAt,
      code: conn.closeWhy?.code ?? code,
      reason: conn.closeWhy?.reason ?? reason,
    });
  }

  /** Asks for a frame's token as it arrives (RateGate.ask). */
  ask(conn: Connection, type: ClientFrameType | undefined): Token | null {
    return this.rate.ask(conn, type);
  }

  /**
   * Spends one token for a frame, then answers it; a connection no longer open spends nothing.
   * With one process nothing waits (no promise, no tick); with a shared bucket the frame waits
   * for the token it asked for on arrival.
   */
  spend(frame: Paid): void | Promise<void> {
    const { conn, ref, answer } = frame;
    if (conn.state !== "open") return;
    const taken = this.rate.take(conn, frame.type, frame.asked);
    if (typeof taken === "boolean") return this.paid(conn, frame.type, taken, ref) ? answer() : undefined;
    return taken.then(async (t) => {
      if (conn.state === "open" && this.paid(conn, frame.type, t, ref)) await answer();
    });
  }

  /**
   * An empty bucket answers rate_limited; the abuse that follows closes the connection, but only
   * after the messages it had sent are out, so it sees its own accepted words as the others do
   * (§10). Meanwhile it is not read.
   */
  private paid(conn: Connection, type: Paid["type"], taken: boolean, ref: string | undefined): boolean {
    const verdict = this.rate.count(conn, taken);
    if (verdict === "ok") return true;
    conn.fail("rate_limited", MESSAGES.rateLimited, ref, { retryAfterMs: this.rate.frameRetryAfterMs(conn, type) });
    if (verdict === "abuse") this.closeAfterPending(conn, CLOSE.policy, CLOSE_REASON.abuse);
    return false;
  }

  /**
   * Whether `conn` has as many frames waiting as it may (RateGate.maxWaitingFrames): then the one
   * that came is answered rate_limited and the connection closed as rate abuse is, before it is
   * queued, so a client cannot pile up frames behind one that waits for storage.
   */
  overflows(conn: Connection, type: ClientFrameType | undefined, ref: string | undefined): boolean {
    if (conn.queued < this.rate.maxWaitingFrames) return false;
    conn.fail("rate_limited", MESSAGES.rateLimited, ref, { retryAfterMs: this.rate.frameRetryAfterMs(conn, type) });
    this.closeAfterPending(conn, CLOSE.policy, CLOSE_REASON.abuse);
    return true;
  }

  /** Stops reading `conn` now and closes it once what it sent is delivered. */
  closeAfterPending(conn: Connection, code: number, reason: string): void {
    if (conn.state !== "open") return;
    conn.state = "closing";
    void this.batcher.settled().then(() => conn.close(code, reason));
  }

  /** Forgets the rate buckets that are full again and belong to no one online. */
  sweep(now: number): void {
    this.rate.sweep(now, (userId) => this.users.online.has(userId));
    this.authority.sweep(now);
  }

  /**
   * Welcomes `conn` as its hello says (§4, §10, §11.1): a guest by name, a member by token, a
   * session's user again. Hellos are counted per address before anything else, so churning
   * hellos cost no storage.
   */
  async hello(conn: Connection, ask: HelloAsk): Promise<Result<{ user: UserRef; session: string | null; admin: boolean }>> {
    if (conn.user) return fail("bad_request", "already welcomed");
    const wait = await this.rate.takeHello(conn.ip);
    if (wait > 0) {
      const close = { code: CLOSE.policy, reason: CLOSE_REASON.abuse };
      return { ...fail("rate_limited", "too many hellos from your address; wait a minute"), extra: { retryAfterMs: wait }, close };
    }
    let who = await this.users.identify(conn, ask);
    // Its session was signed out while the hello was under way: unknown now, so ignored (§4, §11.1).
    if (who.ok && this.users.revokedMeanwhile(who.value)) who = await this.users.identify(conn, { ...ask, session: undefined });
    if (!who.ok) return who;
    const live = this.users.connections(who.value.user.id);
    // One more than a session may have: its oldest connection goes, as if it had dropped (§10).
    const oldest = live.length >= this.config.maxConnectionsPerSession ? live[0]! : null;
    const { user, oldName } = this.users.attach(conn, who.value);
    if (oldest) {
      // Only once the new one is attached: dropped before, it left the user with no connection,
      // which forgot the user and let go of the name identify had just claimed for it.
      this.membership.drop(oldest);
      oldest.close(CLOSE.replaced, CLOSE_REASON.replaced);
    }
    if (oldName !== null) this.membership.renamed(user, oldName);
    if (conn.helloTimer) clearTimeout(conn.helloTimer);
    conn.helloTimer = null;
    return ok({ user: { ...user.ref }, session: who.value.token, admin: who.value.admin });
  }

  /** `signout` (§11.1): the connection's session ends everywhere, at once; the door then closes its connections (endSession). */
  async signout(conn: Connection): Promise<Result<null>> {
    if (conn.session === null) return fail("bad_request", "no session to sign out of");
    try {
      await this.users.revoke(conn.session);
    } catch (error) {
      this.ctx.log("error", "storage", { error: String(error), op: "revokeSession" });
      return fail("internal", MESSAGES.internal);
    }
    return ok(null);
  }

  /**
   * Closes every connection of `conn`'s session with 1000 "signed out", on every instance; they
   * leave their rooms at once, without grace.
   */
  endSession(conn: Connection): void {
    const { session, user } = conn;
    if (session === null || !user) return;
    this.relay.broadcast({ type: "signout", userId: user.ref.id, session });
    this.closeSession(user.ref.id, session);
  }

  private closeSession(userId: string, session: string): void {
    // Its hellos under way are not attached yet: marked, they restore nothing (Hub.hello).
    this.users.revoked(session);
    for (const c of [...this.users.connections(userId)]) {
      if (c.session !== session) continue;
      this.membership.drop(c, true);
      c.close(CLOSE.normal, CLOSE_REASON.signedOut);
    }
    // Rooms held in grace for a connection that dropped before are left now too: nobody comes back to them.
    this.membership.endGracesOf(userId);
  }

  /**
   * Joins `conn` to `room`. `joined` is handed to `conn` in the same step that subscribes it, so
   * it comes before any live event of the room (§10 ordering), and every message is in it or
   * live exactly once (RoomLog.read).
   */
  async join(conn: Connection, asked: Join): Promise<Result<null>> {
    const { room } = asked;
    if (!isRoom(room)) return fail("room_invalid", MESSAGES.roomInvalid);
    if (!conn.rooms.includes(room) && conn.rooms.length >= this.config.maxRoomsPerConnection) {
      return fail("too_many_rooms", `at most ${this.config.maxRoomsPerConnection} rooms per connection`);
    }
    const actor = actorOf(conn);
    const entering = this.membership.willEnter(room, actor.ref.id);
    try {
      return await this.enter(conn, asked, actor, entering);
    } finally {
      this.membership.entered(room, entering);
    }
  }

  /** The join's steps once it may be asked: rights, the read, the owner's claim, then in. */
  private async enter(conn: Connection, asked: Join, actor: Actor, entering: Entering): Promise<Result<null>> {
    let { room } = asked;
    const { since, limit, ref } = asked;
    let reading;
    try {
      // Rights first, at every join, a resuming one too: a refused joiner gets nothing of the room.
      const refused = await this.authority.mayEnter(room, await this.log.auth(room), actor, asked.invite);
      if (refused) return refused;
      reading = await this.log.read(room, since, limit, () => this.roster.others(room), asked.epoch);
    } catch (error) {
      this.ctx.log("error", "storage", { error: String(error), op: "join", room });
      return fail("internal", MESSAGES.internal);
    }
    const user = conn.user;
    const gone = () => conn.state !== "open" || conn.released || !user;
    if (gone()) {
      reading.cancel();
      return fail("internal", "connection closed");
    }
    const read = reading;
    /** A step of the join that waits for storage and may refuse it: a refusal, a failure or a gone connection ends the reading. */
    const step = async (op: string, run: () => Promise<Failure | null>): Promise<Failure | null> => {
      let refused;
      try {
        refused = await run();
      } catch (error) {
        this.ctx.log("error", "storage", { error: String(error), op, room });
        refused = fail("internal", MESSAGES.internal);
      }
      if (!refused && !gone()) return null;
      read.cancel();
      return refused ?? fail("internal", "connection closed");
    };
    if (!conn.rooms.includes(room)) {
      const othersHere = this.presence.count(room) + read.alongside.length;
      const refused = await step("claimOwner", () => this.startIfNew(room, read.auth, read.retained, othersHere, actor, conn.ip));
      if (refused) return refused;
    }
    // Rights again, now that the room is watched: a ban or kick made on another instance before this
    // one watched the room was heard only there, and the rights read after subscribing hold it (a
    // public room's check is a Map read). Asked again while a kick or ban was heard meanwhile; the
    // invite, if any, was spent already; a kick from a public room still lets it in.
    do {
      entering.removed = false;
      const refused = await step("join", async () => this.authority.mayEnter(room, await this.log.auth(room), actor, undefined));
      if (refused) return refused;
    } while (entering.removed);
    room = reading.room;
    const page = reading.finish();
    if (!page) {
      // The room was reset while it was read: what was read counts in a sequence that is gone.
      // The joiner is sent away as the room's members were, to come again with `since`.
      if (conn instanceof WsConnection) conn.close(CLOSE.shutdown, CLOSE_REASON.reset);
      return fail("internal", CLOSE_REASON.reset);
    }
    const first = !conn.rooms.includes(room);
    const entry = first ? this.membership.enter(room, user!.ref, conn) : "again";
    const members = this.authority.withRoles(this.membership.list(room, reading.alongside), reading.auth);
    const joined: JoinedFrame = {
      type: "joined",
      room,
      ...page,
      members,
      role: roleIn(reading.auth, user!.ref.id),
      settings: { ...reading.auth.settings },
    };
    conn.joined(withRef(joined, ref));
    if (first) {
      this.fanout.subscribe(conn, room);
      conn.rooms.push(room);
      this.ctx.metrics.joins++;
      if (entry !== "again") this.membership.announceJoin(room, user!.ref, conn, entry);
    }
    return ok(null);
  }

  /**
   * A new room (no owner, nothing retained, nobody in it) is started by whoever comes to it first,
   * by a join or an HTTP post (§11.2): the one rule both ask. Starting is bounded per user and per
   * address, so nobody fills MAX_ROOMS in a moment with rooms of one message each (issue 21: 7),
   * once ROOM_CREATION says it may; the starter owns the room. Null when it may go on.
   */
  private async startIfNew(room: string, auth: RoomAuth, retained: boolean, othersHere: number, actor: Actor, ip: string): Promise<Failure | null> {
    if (!isNewRoom(auth, retained, othersHere)) return null;
    // Refused by ROOM_CREATION, it spends none of the starts.
    const refused = this.authority.mayStart(actor);
    if (refused) return refused;
    const wait = await this.rate.takeRoomStart(actor.ref.id, ip);
    if (wait > 0) return { ...fail("rate_limited", "you started too many new rooms lately: use one that exists, or wait"), extra: { retryAfterMs: wait } };
    await this.authority.claim(room, actor);
    return null;
  }

  /**
   * An explicit leave has no grace, and leaves only this connection: the others see the user
   * leave when its last connection has left (§10). It completes after the leaver's pending
   * messages are delivered, so the leaver still hears its own last words and the others hear
   * them before the leave; the leaver, unsubscribed by then, does not hear its own leave.
   */
  async leave(conn: Connection, room: string): Promise<Result<null>> {
    if (!isRoom(room)) return fail("room_invalid", MESSAGES.roomInvalid);
    const at = conn.rooms.indexOf(room);
    if (at === -1) return fail("not_joined", `not in ${room}`);
    conn.rooms.splice(at, 1);
    const gone = this.membership.exit(room, conn.user!, conn);
    await this.batcher.settled();
    if (!conn.rooms.includes(room)) this.fanout.unsubscribe(conn, room);
    if (gone) await gone;
    return ok(null);
  }

  /**
   * Accepts a message (§4, §11.3): not while muted, in a read-only room only from moderators and
   * up; a reply only to a message of the room (which makes the send wait for that lookup: the
   * connection's later frames wait behind it); last, in slow mode, once per its seconds.
   */
  send(conn: Connection, room: string, id: string, rawText: string, replyTo?: number): Result<null> | Promise<Result<null>> {
    if (!isRoom(room)) return fail("room_invalid", MESSAGES.roomInvalid);
    if (!conn.rooms.includes(room)) return fail("not_joined", `not in ${room}`);
    const text = normalizeText(rawText, this.config.maxMessageChars);
    if (text === null) {
      return fail("text_invalid", `text is 1 to ${this.config.maxMessageChars} characters, no control characters but tab and newline`);
    }
    const auth = this.log.cachedAuth(room);
    const refused = auth && this.authority.maySend(auth, actorOf(conn));
    if (refused) return this.refusedSend(conn, room, id, refused);
    if (replyTo === undefined) return this.slotted(conn, auth, room, id, text);
    // A target gone (trimmed, say) refuses a new reply, not the retry of one stored: refusedSend finds its original.
    return this.changes.replyTarget(room, replyTo).then((r) => (r.ok ? this.slotted(conn, auth, room, id, text, replyTo) : this.refusedSend(conn, room, id, r)));
  }

  /**
   * A send nothing else refuses: slow mode's slot is taken now, last, since taking it counts the
   * send (a send refused for its reply used none, §11.2); then it is accepted.
   */
  private slotted(conn: Connection, auth: RoomAuth | null, room: string, id: string, text: string, replyTo?: number): Result<null> | Promise<Result<null>> {
    const refused = auth && this.authority.takeSlowSlot(room, auth, actorOf(conn));
    // Only a room in slow mode waits here (for its slot, shared by every instance); a refused send, for its original.
    if (refused instanceof Promise) return refused.then((r) => (r ? this.refusedSend(conn, room, id, r) : this.accept(conn, room, id, text, replyTo)));
    return refused ? this.refusedSend(conn, room, id, refused) : this.accept(conn, room, id, text, replyTo);
  }

  /** A send its room refused: the sender alone gets the original if it repeats a stored key (unlessRepeated), else the refusal. */
  private async refusedSend(conn: Connection, room: string, id: string, refused: Failure): Promise<Result<null>> {
    const original = await this.unlessRepeated(refused, room, conn.user!.ref.id, id);
    if (!original.ok) return original;
    if (conn.state === "open") conn.deliver(original.value);
    return ok(null);
  }

  /**
   * A send the room refuses now (a mute, read-only, slow mode, a reply whose target is gone) may
   * be the retry of one stored before it was: a repeated key gets the original whatever the room
   * says now (§4), through either door. Asked on the refusal path alone, so a send that goes
   * costs no extra read (append finds repeats itself). The refusal stands when there is none, or
   * storage fails. An original still on its way to storage here is waited for: it is the
   * original once stored.
   */
  private async unlessRepeated(refused: Failure, room: string, userId: string, id: string): Promise<Result<StoredFrame>> {
    try {
      if (this.log.storing(room, userId, id)) await this.batcher.settled();
      const original = await this.store.original(room, userId, id);
      return original ? ok(original) : refused;
    } catch (error) {
      this.ctx.log("error", "storage", { error: String(error), op: "original", room });
      return refused;
    }
  }

  private accept(conn: Connection, room: string, id: string, text: string, replyTo?: number): Result<null> {
    if (conn.state !== "open" || !conn.rooms.includes(room)) return fail("not_joined", `not in ${room}`);
    this.ctx.metrics.messagesIn++;
    const user = conn.user!.ref;
    const message: NewMessage = { room, user: user.kind ? { id: user.id, name: user.name, kind: user.kind } : { id: user.id, name: user.name }, id, text, ts: this.ctx.now() };
    if (replyTo !== undefined) message.replyTo = replyTo;
    this.log.sending(message);
    this.stored(message).then(
      (result) => {
        this.log.sent(message);
        if (conn.state !== "open") return;
        // A repeated id: the sender alone gets the original again.
        if ("refused" in result) conn.fail(result.refused, `the server holds history for at most ${this.config.maxRooms} rooms`, id);
        else if (result.duplicate) conn.deliver(result.message);
      },
      (error) => {
        this.log.sent(message);
        this.ctx.log("error", "storage", { error: String(error), room });
        if (conn.state === "open") conn.fail("internal", "message not stored; send it again", id);
      },
    );
    return ok(null);
  }

  /**
   * A message from an actor without a connection (the HTTP API, §11.6, from address `ip`): the
   * rules of `send`, but no join is needed, a private room needs its list, and a post to a new
   * room starts it as a join would. Resolves once it is stored and delivered, with the message
   * (the original, for a repeated id).
   */
  async post(actor: Actor, frame: { room: string; id: string; text: string; replyTo?: number }, ip: string): Promise<Result<{ message: MessageFrame; duplicate: boolean }>> {
    const { room, id, replyTo } = frame;
    if (!isRoom(room)) return fail("room_invalid", MESSAGES.roomInvalid);
    const text = normalizeText(frame.text, this.config.maxMessageChars);
    if (text === null) return fail("text_invalid", `text is 1 to ${this.config.maxMessageChars} characters, no control characters but tab and newline`);
    const auth = await this.log.auth(room);
    const banned = this.authority.banned(auth, actor.ref.id);
    if (banned) return banned;
    if (!(await this.authority.mayRead(room, actor))) return fail("forbidden", `${room} is private: a bot must be on its list`);
    // Only a room with no owner and nobody here can be new: the reads that tell the rest (does it
    // hold history, is anyone in it elsewhere) are made for such a room alone, not for every post.
    const here = this.presence.count(room);
    if (isNewRoom(auth, false, here)) {
      const [info, others] = await Promise.all([this.store.roomInfo(room), this.roster.others(room)]);
      const refused = await this.startIfNew(room, auth, info.oldestSeq > 0, here + others.length, actor, ip);
      if (refused) return refused;
    }
    // Slow mode last, as for `send`: a post refused for its reply uses no slot. Any refusal may
    // be a retry's, whose original stands (a reply's target trimmed away since, say).
    let refused = this.authority.maySend(auth, actor);
    if (!refused && replyTo !== undefined) {
      const target = await this.changes.replyTarget(room, replyTo);
      if (!target.ok) refused = target;
    }
    refused ??= await this.authority.takeSlowSlot(room, auth, actor);
    if (refused) {
      const original = await this.unlessRepeated(refused, room, actor.ref.id, id);
      return original.ok ? ok({ message: original.value as MessageFrame, duplicate: true }) : original;
    }
    this.ctx.metrics.messagesIn++;
    const message: NewMessage = { room, user: { ...actor.ref }, id, text, ts: this.ctx.now() };
    if (replyTo !== undefined) message.replyTo = replyTo;
    this.log.sending(message);
    let result;
    try {
      result = await this.stored(message);
    } finally {
      this.log.sent(message);
    }
    if ("refused" in result) return fail("room_limit", `the server holds history for at most ${this.config.maxRooms} rooms`);
    return ok({ message: result.message as MessageFrame, duplicate: result.duplicate });
  }

  /**
   * Stores a message; one refused because MAX_ROOMS rooms hold history gets one more try once the
   * room idle longest made way for it (ROOM_RECLAIM_DAYS), so a full pool does not refuse new
   * rooms for good (issue 21: 7).
   */
  private async stored(message: NewMessage): Promise<Appended> {
    const result = await this.batcher.add(message);
    if (!("refused" in result) || result.refused !== "room_limit" || !this.config.roomReclaimDays) return result;
    let room: string | null;
    try {
      room = await this.store.reclaimIdle(this.ctx.now() - this.config.roomReclaimDays * DAY_MS, (r) => this.presence.count(r) > 0);
    } catch (error) {
      this.ctx.log("error", "storage", { error: String(error), op: "reclaimIdle" });
      return result;
    }
    if (room === null) return result;
    this.ctx.log("info", "room_reclaimed", { room, for: message.room });
    return this.batcher.add(message);
  }

  typing(conn: WsConnection, room: string): Result<null> {
    if (!isRoom(room)) return fail("room_invalid", MESSAGES.roomInvalid);
    if (!conn.rooms.includes(room)) return fail("not_joined", `not in ${room}`);
    const user = conn.user!;
    const now = this.ctx.now();
    const last = user.typingAt?.get(room);
    if (last !== undefined && now - last < this.config.typingThrottleMs) return ok(null);
    (user.typingAt ??= new Map()).set(room, now);
    this.fanout.typing(room, user.ref, user.conns);
    return ok(null);
  }

  /**
   * One command of §11.3 for `actor`, as both doors hand it over (a WebSocket frame, an HTTP
   * API body): the one path they share. Answers `ok`'s null, or an invite.
   */
  command(actor: Actor, frame: CommandFrame): Promise<Result<unknown>> {
    switch (frame.type) {
      case "edit":
        return this.changes.edit(actor, frame);
      case "delete":
        return this.changes.delete(actor, frame);
      case "room_settings":
        return this.authority.settings(actor, frame);
      case "role":
        return this.authority.role(actor, frame);
      case "kick":
        return this.moderation.kick(actor, frame);
      case "ban":
        return this.moderation.ban(actor, frame);
      case "unban":
        return this.moderation.unban(actor, frame);
      case "mute":
        return this.moderation.mute(actor, frame);
      case "invite":
        return this.authority.invite(actor, frame);
    }
  }

  /** A page of a room's history: any room's, but a private room's only for those on its list (§11.2). */
  async history(actor: Actor | null, room: string, query: PageQuery): Promise<Result<Page>> {
    if (!isRoom(room)) return fail("room_invalid", MESSAGES.roomInvalid);
    if (actor ? !(await this.authority.mayRead(room, actor)) : (await this.log.auth(room)).settings.private) {
      return fail("forbidden", `${room} is private`);
    }
    return ok(await this.store.page(room, query));
  }

  /** A page of the rooms with members, busiest first (Directory); private rooms only for admins (§11.2). */
  rooms(withPrivate: boolean, limit?: number, cursor?: RoomCount | null): Promise<RoomsPage> {
    return this.directory.rooms(withPrivate, limit, cursor);
  }

  /** Rooms with the newest messages (Directory); private rooms only for admins. */
  recentRooms(withPrivate: boolean): Promise<RoomEntry[]> {
    return this.directory.recentRooms(withPrivate);
  }

  /** Every member of `room` once, on every instance. */
  members(room: string): Promise<UserRef[]> {
    return this.membership.members(room);
  }

  /** Stops the timers (presence grace, hello deadlines, bot checks) at shutdown. */
  dispose(): void {
    this.membership.dispose();
    this.bots.dispose();
    for (const conn of this.conns.all()) if (conn.helloTimer) clearTimeout(conn.helloTimer);
  }
}
