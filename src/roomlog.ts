/**
 * Delivery sequencing: every stored message and event reaches the members here once and in seq
 * order, and a joiner gets each exactly once, in its `joined` or live. The relay brings what the
 * engine stored (with one process, at once; with Redis, at most once, possibly late or after a
 * gap); this puts it in order, drops repeats and fills gaps from storage, for every engine alike.
 * A watched room's authority (roles, settings) is kept here too, moved by the events it carries.
 */
import type { Connection } from "./connection.ts";
import type { Context } from "./context.ts";
import type { Presence } from "./core/presence.ts";
import type { NewEntry, Page, Relay, Restriction, RoomAuth, RoomInfo, Store } from "./engine.ts";
import type { Fanout } from "./fanout.ts";
import { CLOSE, CLOSE_REASON, HISTORY_PAGE_MAX, type Role, type StoredFrame, type UserRef } from "./protocol/wire.ts";

/** Bounds the history pages read to fill one gap in what the relay brought. */
const FILL_PAGES_MAX = 100;
/**
 * How long a watched room's page, read for one join, serves the next joins while the room's seq
 * stands still. Every change to its messages takes a seq, except an age sweep or a reclaim (on any
 * instance): a page served from memory is at most this much older than the store's.
 */
const PAGE_REUSE_MS = 1000;
/** Pages kept per room (by `since` and limit): a join storm asks for the newest page and for "after my last seq". */
const PAGES_KEPT_PER_ROOM = 4;

/** What the log knows of a room with members, messages on their way, or joiners here. */
interface RoomState {
  /** The room's name: the one copy its members' lists hold, not one per join frame (issue #8: memory). */
  name: string;
  /** The latest seq delivered here; null until read from storage. */
  seq: number | null;
  /** The epoch of the sequence `seq` counts in (null: the room has none yet, or an engine that never loses one). */
  epoch: string | null;
  /** Resets seen here: a join that began reading before one is read again. */
  resets: number;
  /** Messages accepted for the room and not yet delivered or failed. */
  inflight: Set<NewEntry>;
  /** Joins reading history right now: each collects what is delivered meanwhile. */
  joins: Set<StoredFrame[]>;
  /** The relay brings every message of the room here, so `seq` is the room's latest. */
  watched: boolean;
  /** Starting to watch it: subscribing, then reading where the relay starts. */
  watching: Promise<void> | null;
  /** Reading history to fill a gap in what the relay brought. */
  filling: boolean;
  /** Brought while watching or filling, with their epochs: delivered after, in seq order. */
  backlog: Brought[];
  /** The room's roles and settings, read when it started to be watched, moved by its events since. */
  auth: RoomAuth | null;
  /** Reads of the room's rights under way: each collects the changes heard meanwhile (readAuth). */
  heard: Set<AuthChange[]>;
  /** Pages read for joins, while `seq` and `resets` are what they were read at (PAGE_REUSE_MS). */
  pages: PagesRead | null;
}

/** A watched room's pages read at one seq, by `since` and limit. */
interface PagesRead {
  seq: number;
  resets: number;
  at: number;
  byAsk: Map<string, { info: RoomInfo; page: Page }>;
}

/** A change to a room's rights (a ban, a mute, a role), as heard: made on whatever copy of them the log holds. */
type AuthChange = (auth: RoomAuth) => void;

/** A message as the relay brought it: with the epoch it was stored in, when the engine says. */
interface Brought {
  message: StoredFrame;
  epoch: string | undefined;
}

/**
 * What a joiner gets of a room: its latest seq, oldest retained seq, a page of messages, and the
 * room's epoch; `reset` when the joiner's epoch was another (its `since` was not followed).
 */
export interface JoinPage {
  seq: number;
  oldestSeq: number;
  messages: StoredFrame[];
  complete: boolean;
  epoch?: string;
  reset?: true;
}

/**
 * A join's read, still collecting what is delivered: `finish` ends it and gives the page, in the
 * same step in which the caller subscribes the joiner, so nothing falls between the two; `cancel`
 * ends it when the joiner went meanwhile.
 */
export interface Reading<T> {
  /** The room's name, the log's own copy (members' lists share it). */
  room: string;
  /** The room's roles and settings as watched. */
  auth: RoomAuth;
  /** Whether the room held anything (a retained message or event) when it was read. */
  retained: boolean;
  alongside: T;
  /** The page, or null when the room was reset while it was read (then the joiner is sent away to come again). */
  finish(): JoinPage | null;
  cancel(): void;
}

export class RoomLog {
  private readonly rooms = new Map<string, RoomState>();
  /** Rooms holding pages, oldest first: let go of once PAGE_REUSE_MS old, so a quiet room holds none. */
  private kept: { state: RoomState; pages: PagesRead }[] = [];

  constructor(
    private readonly ctx: Context,
    private readonly store: Store,
    private readonly relay: Relay,
    private readonly fanout: Fanout,
    private readonly presence: Presence<Connection>,
    /**
     * Puts back what the engine lost (Roster.recover) before a reset room's clients are sent away:
     * they come back at once, and their sessions must be there (issue 21: 3).
     */
    private readonly recover: () => Promise<void> = async () => {},
    /**
     * Hears the room's rights as read again (Moderation.recheck): a ban or kick whose live event
     * the relay missed takes its user out here once they are read.
     */
    private readonly reread: (room: string, auth: RoomAuth) => void = () => {},
  ) {}

  /** Rooms the log holds (for tests and debugging: it must not grow with rooms merely visited). */
  get size(): number {
    return this.rooms.size;
  }

  /** Rooms holding pages read for joins (for tests: they are let go of). */
  get pagesKept(): number {
    return this.kept.length;
  }

  /**
   * The room's roles and settings: kept for a watched room, read from storage otherwise (a room
   * not watched here may change on another instance at any time).
   */
  async auth(room: string): Promise<RoomAuth> {
    const state = this.rooms.get(room);
    if (state?.watched && state.auth) return state.auth;
    return this.store.roomAuth(room);
  }

  /** A watched room's roles and settings, at once; null for a room not watched here (ask `auth`). */
  cachedAuth(room: string): RoomAuth | null {
    const state = this.rooms.get(room);
    return state?.watched ? state.auth : null;
  }

  /** A ban or mute changed (stored already; null: lifted): a watched room's follow. */
  restrict(room: string, kind: "ban" | "mute", userId: string, restriction: Restriction | null): void {
    this.changeAuth(room, (auth) => {
      const map = kind === "ban" ? auth.bans : auth.mutes;
      if (restriction) map.set(userId, restriction);
      else map.delete(userId);
    });
  }

  /** A role changed (stored already): a watched room's roles follow. "owner" moves ownership. */
  setRole(room: string, user: UserRef, role: Role): void {
    this.changeAuth(room, ({ roles }) => {
      if (role === "owner") for (const [id, holder] of roles) if (holder.role === "owner") roles.set(id, { ...holder, role: "moderator" });
      if (role === "member") roles.delete(user.id);
      else roles.set(user.id, { role, name: user.name });
    });
  }

  /** Makes a change heard on the rights held, and on those being read right now (readAuth). */
  private changeAuth(room: string, change: AuthChange): void {
    const state = this.rooms.get(room);
    if (!state) return;
    if (state.auth) change(state.auth);
    for (const heard of state.heard) heard.push(change);
  }

  /**
   * Reads the room's rights into `state.auth`. A change heard while they are read may be missing
   * from what the read gives (stored after it, or before, with the answer on its way): each is made
   * on it again, in the order heard (each sets or deletes, so twice is once), and none is lost.
   */
  private async readAuth(state: RoomState): Promise<RoomAuth> {
    const heard: AuthChange[] = [];
    state.heard.add(heard);
    try {
      const auth = await this.store.roomAuth(state.name);
      for (const change of heard) change(auth);
      state.auth = auth;
      this.reread(state.name, auth);
      return auth;
    } finally {
      state.heard.delete(heard);
    }
  }

  /** The latest seq delivered in `room` when the relay brings it here, else null (ask storage). */
  watchedSeq(room: string): number | null {
    const state = this.rooms.get(room);
    return state?.watched ? (state.seq ?? 0) : null;
  }

  /** A message on its way to storage: the room is kept until it is delivered or failed. */
  sending(message: NewEntry): void {
    this.state(message.room).inflight.add(message);
  }

  /** Whether a message of `userId` with this `id` is on its way to storage here (sending, not yet sent). */
  storing(room: string, userId: string, id: string): boolean {
    const inflight = this.rooms.get(room)?.inflight;
    if (!inflight) return false;
    for (const m of inflight) if ((m.type === undefined || m.type === "message") && m.user.id === userId && m.id === id) return true;
    return false;
  }

  /** The message was delivered (or refused, or failed). */
  sent(message: NewEntry): void {
    this.rooms.get(message.room)?.inflight.delete(message);
    this.forgetIfEmpty(message.room);
  }

  private state(room: string): RoomState {
    let state = this.rooms.get(room);
    if (!state) {
      state = {
        name: room, seq: null, epoch: null, resets: 0, inflight: new Set(), joins: new Set(), watched: false, watching: null, filling: false, backlog: [], auth: null, heard: new Set(), pages: null,
      };
      this.rooms.set(room, state);
    }
    return state;
  }

  /**
   * A room nobody here is in, nothing is on its way to and nobody is joining is not worth
   * remembering: it is no longer watched (its `seq` would go stale), and forgotten.
   */
  forgetIfEmpty(room: string): void {
    const state = this.rooms.get(room);
    if (!state || state.joins.size || state.inflight.size || state.watching || this.presence.count(room)) return;
    if (state.watched) this.relay.unwatch(room);
    this.rooms.delete(room);
  }

  /**
   * The one way a stored message reaches its room. A seq already delivered here is dropped (an
   * engine that relays from elsewhere may repeat one); joins reading history right now collect it.
   */
  private deliver(message: StoredFrame): void {
    const state = this.rooms.get(message.room);
    if (!state) return;
    if (state.seq !== null && message.seq <= state.seq) return;
    state.seq = message.seq;
    for (const collected of state.joins) collected.push(message);
    const before = state.auth?.settings;
    if (message.type === "settings" && state.auth) {
      const { topic, private: isPrivate, readOnly, slowModeSeconds } = message;
      state.auth.settings = { topic, private: isPrivate, readOnly, slowModeSeconds };
    }
    this.fanout.message(message, before);
    this.relay.delivered(message);
  }

  /**
   * A stored message, from the relay: delivered in seq order, once. A repeat is dropped (by
   * deliver); after a gap, history fills it in first. What comes while the room is being
   * watched or filled waits in its backlog. A room not watched here has nobody to deliver to.
   */
  receive(message: StoredFrame, epoch?: string): void {
    const state = this.rooms.get(message.room);
    if (!state || (!state.watched && !state.watching)) return;
    if (state.watching || state.filling || state.backlog.length) {
      state.backlog.push({ message, epoch });
      if (!state.watching && !state.filling) void this.fill(message.room, state);
      return;
    }
    // Stored under another epoch: storage lost the room's sequence since (issue 21: 1), whatever
    // the seq. A room that had none takes the first it sees.
    if (epoch !== undefined && epoch !== state.epoch) {
      if (state.epoch === null && (state.seq ?? 0) < message.seq) state.epoch = epoch;
      else this.reset(state, epoch);
    }
    if (state.seq !== null && message.seq > state.seq + 1) {
      state.backlog.push({ message, epoch });
      void this.fill(message.room, state);
      return;
    }
    this.deliver(message);
  }

  /**
   * Storage lost the room's sequence (Redis without its data): it starts again from seq 1 under
   * `epoch`. The room's WebSocket clients here hold seqs of the old one, that now name other
   * messages: they are closed with 1001, and come back with `since` and their epoch, which is not
   * the room's, so they get the room from its start. TCP users keep no seq: they go on. Joins
   * reading right now are read again.
   */
  private reset(state: RoomState, epoch: string | null): void {
    this.ctx.log("warn", "room_reset", { room: state.name, published: state.seq, from: state.epoch, to: epoch });
    state.seq = 0;
    state.epoch = epoch;
    state.resets++;
    const clients = this.fanout.wsIn(state.name);
    void this.recover()
      .catch((error) => this.ctx.log("warn", "storage", { error: String(error), op: "recover" }))
      .then(() => {
        for (const conn of clients) conn.close(CLOSE.shutdown, CLOSE_REASON.reset);
      });
  }

  /** The relay may have missed the room's latest messages (it reconnected; a periodic check): read on. */
  catchUp(room: string): void {
    const state = this.rooms.get(room);
    if (state?.watched && !state.watching && !state.filling) void this.fill(room, state);
  }

  /**
   * Starts watching a room: subscribe first, then read the stored seq, where the relay starts.
   * Everything up to it is in storage (a join reads it there), everything after it is brought;
   * what is brought meanwhile waits in the backlog.
   */
  private watch(room: string, state: RoomState): Promise<void> {
    state.watching ??= (async () => {
      try {
        await this.relay.watch(room);
        const [info] = await Promise.all([this.store.roomInfo(room), this.readAuth(state)]);
        state.seq = info.seq;
        state.epoch = info.epoch;
        state.watched = true;
      } catch (error) {
        this.relay.unwatch(room);
        state.backlog = [];
        throw error;
      } finally {
        state.watching = null;
      }
      this.deliverBacklog(state);
    })();
    return state.watching;
  }

  /**
   * Delivers what storage holds after the room's last delivered seq, up to its stored seq, then
   * the backlog. A failed read leaves the backlog for the next catch-up or message.
   */
  private async fill(room: string, state: RoomState): Promise<void> {
    state.filling = true;
    try {
      // Roles move by live events, which a relay that was away may have missed: read them again.
      const [{ seq: stored, epoch }] = await Promise.all([this.store.roomInfo(room), this.readAuth(state)]);
      // Storage came back with another epoch (Redis restarted without its data, or lost it and
      // was written to since), or with less than was delivered: go on from what it holds.
      if ((state.epoch !== null && epoch !== state.epoch) || (state.seq !== null && stored < state.seq)) this.reset(state, epoch);
      else state.epoch ??= epoch;
      for (let pages = 0; (state.seq ?? 0) < stored && pages < FILL_PAGES_MAX; pages++) {
        const page = await this.store.page(room, { after: state.seq ?? 0, before: stored + 1, limit: HISTORY_PAGE_MAX });
        if (page.messages.length === 0) break;
        for (const m of page.messages) this.deliver(m);
      }
    } catch (error) {
      this.ctx.log("error", "storage", { error: String(error), op: "fill", room });
      return;
    } finally {
      state.filling = false;
    }
    this.deliverBacklog(state);
  }

  private deliverBacklog(state: RoomState): void {
    const backlog = state.backlog.sort((a, b) => a.message.seq - b.message.seq);
    state.backlog = [];
    for (const { message, epoch } of backlog) this.receive(message, epoch);
  }

  /**
   * The page a join reads, up to the room's seq as delivered here: from memory when a join read
   * it at this seq less than PAGE_REUSE_MS ago (a join storm reads each room once), else from
   * storage. Pages are shared, never changed: `finish` makes new arrays.
   */
  private async page(state: RoomState, since: number | undefined, limit: number): Promise<{ info: RoomInfo; page: Page }> {
    const seq = state.seq;
    const before = seq === null ? undefined : seq + 1;
    const query = since === undefined ? { before, limit } : { after: since, before, limit };
    if (seq === null || !state.watched) return this.store.roomPage(state.name, query);
    const now = this.ctx.now();
    let pages = state.pages;
    // A clock that stepped back counts as time gone by too: a page is never served for longer.
    if (!pages || pages.seq !== seq || pages.resets !== state.resets || now - pages.at >= PAGE_REUSE_MS || now < pages.at) {
      this.letGoOfPages(now);
      pages = state.pages = { seq, resets: state.resets, at: now, byAsk: new Map() };
      this.kept.push({ state, pages });
    }
    const ask = `${since ?? ""}/${limit}`;
    const kept = pages.byAsk.get(ask);
    if (kept) return kept;
    const read = await this.store.roomPage(state.name, query);
    // Kept only if nothing moved while it was read.
    if (state.pages === pages && state.seq === seq && pages.byAsk.size < PAGES_KEPT_PER_ROOM) pages.byAsk.set(ask, read);
    return read;
  }

  /** Drops the pages read PAGE_REUSE_MS ago or more (they are kept in the order read). */
  private letGoOfPages(now: number): void {
    let old = 0;
    while (old < this.kept.length && now - this.kept[old]!.pages.at >= PAGE_REUSE_MS) {
      const { state, pages } = this.kept[old++]!;
      if (state.pages === pages) state.pages = null;
    }
    if (old) this.kept = this.kept.slice(old);
  }

  /**
   * Reads what a joiner of `room` gets: without `since` the newest `limit` messages, with it the
   * first `limit` after it. History is read up to the seq delivered so far, and what is delivered
   * while it is read is collected and added in `finish`, so every message is in the page or live
   * exactly once. `alongside` is read at the same time (the members on other instances). Rejects,
   * leaving nothing behind, when the room cannot be watched or read.
   */
  async read<T>(room: string, since: number | undefined, limit: number, alongside: () => Promise<T>, epoch?: string): Promise<Reading<T>> {
    const state = this.state(room);
    const collected: StoredFrame[] = [];
    state.joins.add(collected);
    const cancel = () => {
      state.joins.delete(collected);
      this.forgetIfEmpty(room);
    };
    let info, page, extra: T, readUpTo: number | null;
    let reset = false;
    const resets = state.resets;
    try {
      // Subscribe first, then read: what is delivered while history is read is collected, not lost.
      if (!state.watched) await this.watch(room, state);
      // The joiner knew the room under another epoch: its `since` counts in a sequence that is
      // gone, so it gets the room from its start (protocol: joined.reset).
      if (since !== undefined && epoch !== undefined && epoch !== state.epoch) [since, reset] = [0, true];
      readUpTo = state.seq;
      let read;
      [read, extra] = await Promise.all([this.page(state, since, limit), alongside()]);
      ({ info, page } = read);
    } catch (error) {
      cancel();
      throw error;
    }
    // Watching read the stored seq; what came after it is collected.
    const read = readUpTo ?? info.seq;
    state.seq ??= info.seq;
    return {
      room: state.name,
      // As held now: a change heard while the joiner is let in counts for its `joined`.
      get auth() {
        return state.auth!;
      },
      retained: info.oldestSeq > 0,
      alongside: extra,
      cancel,
      finish: () => {
        state.joins.delete(collected);
        if (state.resets !== resets) return null;
        const arrived = collected.filter((m) => m.seq > read);
        // `since` picks the messages sent; the room's oldest retained seq is told whatever it is.
        const fresh = since === undefined ? arrived : arrived.filter((m) => m.seq > since);
        let { messages, complete } = page;
        if (since === undefined) {
          messages = messages.concat(fresh);
          if (messages.length > limit) [messages, complete] = [messages.slice(messages.length - limit), false];
        } else if (complete && fresh.length) {
          messages = messages.concat(fresh);
          if (messages.length > limit) [messages, complete] = [messages.slice(0, limit), false];
        }
        const joined: JoinPage = { seq: state.seq!, oldestSeq: info.oldestSeq || (arrived[0]?.seq ?? 0), messages, complete };
        if (state.epoch !== null) joined.epoch = state.epoch;
        if (reset) joined.reset = true;
        return joined;
      },
    };
  }
}
