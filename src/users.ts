/**
 * Who is online here, and who a hello makes a connection (§4, §10, §11.1): guests by the name
 * they choose, members by their host application's token, admins by ADMIN_TOKEN; names unique
 * by look-alike keys (on every instance through the roster, and reserved for a guest's session
 * while it is valid, through storage); sessions that bring a user back, and end at signout.
 */
import { randomId } from "./core/random.ts";
import type { TokenVerifier } from "./auth.ts";
import { guestsAllowed } from "./config.ts";
import type { Connection, User } from "./connection.ts";
import type { Context } from "./context.ts";
import type { Presence } from "./core/presence.ts";
import { DAY_MS, type Restriction, type Roster, type SessionRecord, type Store } from "./engine.ts";
import { MEMBER_ID_PREFIX, MESSAGES, checkName, fail, nameKeys, ok, reservedKeys, userRef, type Failure, type Result } from "./protocol/rules.ts";
import { CLOSE, CLOSE_REASON, NAME_MAX_CHARS, type HelloFrame, type UserRef } from "./protocol/wire.ts";
import type { RateGate } from "./rate.ts";

/**
 * A restored session's expiry is pushed back at most this often (one write per hour at most), or
 * every half of SESSION_TTL_SECONDS when that is shorter (sessionRefreshMs).
 */
const SESSION_REFRESH_MS = 3_600_000;
/**
 * A new guest session lives this long (or SESSION_TTL_SECONDS, if shorter) until it is first used
 * again; that use refreshes it to the full TTL. A token nobody comes back with costs a day of
 * disk, not 30.
 */
const NEW_SESSION_TTL_MS = DAY_MS;
/** Bytes of randomness in a session token (256 bits) and in a user id. */
const SESSION_TOKEN_BYTES = 32;
const USER_ID_BYTES = 9;
/** Bot tokens start so (§11.6); any other token is read as a JWT. */
const BOT_TOKEN_PREFIX = "bot_";

/** Bounds the names tried for a user that lost its own (takeFallbackName). */
const FALLBACK_NAME_ATTEMPTS = 4;

/**
 * The name a user that lost `name` tries next: `name-` and a part of its id, longer with each
 * attempt, the name cut to fit NAME_MAX_CHARS; null when that is no valid name.
 *   fallbackName("alice", "mG3v0kqZ5wJd", 0) // => "alice-mG3v"
 */
export function fallbackName(name: string, userId: string, attempt: number): string | null {
  const suffix = userId.slice(0, 4 + 2 * attempt);
  const base = [...name].slice(0, NAME_MAX_CHARS - 1 - suffix.length).join("").trim();
  return checkName(`${base}-${suffix}`);
}

/**
 * How often a session in use has its expiry pushed back: hourly, or every half TTL when the TTL is
 * shorter, so a session used within its TTL never lapses (at a TTL of an hour or less, an hourly
 * refresh would never come).
 *   sessionRefreshMs(30 * DAY_MS) // => 3_600_000
 *   sessionRefreshMs(120_000)     // => 60_000
 */
function sessionRefreshMs(ttlMs: number): number {
  return Math.min(SESSION_REFRESH_MS, ttlMs / 2);
}

/**
 * Whether a user here is a server admin: one of its connections says so or, in presence grace with
 * none, its latest hello did (a page reload does not make it outranked).
 */
const adminOf = (user: User): boolean => (user.conns.length > 0 ? user.conns.some((c) => c.admin) : user.admin);

const newToken = () => randomId(SESSION_TOKEN_BYTES);
const newUserId = () => randomId(USER_ID_BYTES);
/** What storage keeps of a secret (a session token, an invite code): its SHA-256. */
export const hashSecret = (secret: string) => new Bun.CryptoHasher("sha256").update(secret).digest("hex");

/** Compares two secrets in time that does not depend on where they differ. */
export function sameSecret(given: string, expected: string): boolean {
  const digest = (s: string) => new Bun.CryptoHasher("sha256").update(s).digest();
  return crypto.timingSafeEqual(digest(given), digest(expected));
}

/** The refusal of a user banned from the server (§11.4): `banned`, with until when. One for a hello and the HTTP API. */
export function bannedFromServer(ban: Restriction): Failure {
  return { ...fail("banned", "you are banned from this server"), ...(ban.until !== null ? { extra: { until: ban.until } } : {}) };
}

/** Who a hello makes the connection. */
export interface Identity {
  user: UserRef;
  /** The name's look-alike keys. */
  keys: string[];
  /** The session token to hand back; null over TCP, where there is no way to show it again. */
  token: string | null;
  /** Its hash, as the connection remembers it (for signout). */
  session: string | null;
  admin: boolean;
  /** A member's private rooms (its token's `rooms` claim). */
  rooms: string[];
  /** When the user took its name, and the name's version, as the roster holds it. */
  since: number;
  version: number;
  /** The session as stored, when there is one. */
  record: SessionRecord | null;
  /** The hello's watch on the session it restores, from its lookup until it is attached (Users.attach). */
  resuming?: Resuming | null;
}

/** A hello under way that restores a session: a signout of that session meanwhile marks it (Users.revoked). */
interface Resuming {
  hash: string;
  revoked: boolean;
}

/** What a hello asks for, door-independent: a TCP user gives a name only. */
export type HelloAsk = Pick<HelloFrame, "name" | "session" | "token" | "adminToken">;

export class Users {
  readonly online = new Map<string, User>();
  /** Look-alike key → the online users holding a name with it. */
  private readonly holders = new Map<string, Set<string>>();
  /** The keys of the names no guest may take (RESERVED_NAMES and the built-in ones). */
  private reservedSet: Set<string> | null = null;
  /** Session hash → the hellos under way that restore it, until each is attached or fails. */
  private readonly resuming = new Map<string, Set<Resuming>>();

  constructor(
    private readonly ctx: Context,
    private readonly store: Store,
    private readonly roster: Roster,
    private readonly rate: RateGate,
    private readonly presence: Presence<Connection>,
    private readonly verifier: TokenVerifier | null,
  ) {}

  /** Made at the first hello that needs it, not at start: its keys need the confusables table. */
  private get reserved(): Set<string> {
    return (this.reservedSet ??= reservedKeys(this.ctx.config.reservedNames));
  }

  /**
   * Who `conn` is, by what its hello shows (§11.1): a member's token, a live session, or a guest
   * name. Nothing changes until the name is held on every instance and the session is stored,
   * so a failed hello leaves nothing half done. A hello that restores a session is watched from
   * before its lookup until it is attached: a signout of the session meanwhile marks it (revoked),
   * and the hub asks before it attaches (revokedMeanwhile).
   */
  async identify(conn: Connection, ask: HelloAsk): Promise<Result<Identity>> {
    const resuming = ask.session === undefined ? null : this.watch(hashSecret(ask.session));
    let who: Result<Identity> | undefined;
    try {
      who = await this.identifyAs(conn, ask);
    } finally {
      if (who?.ok && resuming && who.value.session === resuming.hash) who.value.resuming = resuming;
      else this.unwatch(resuming);
    }
    return who;
  }

  private async identifyAs(conn: Connection, ask: HelloAsk): Promise<Result<Identity>> {
    const now = this.ctx.now();
    const config = this.ctx.config;
    if (ask.adminToken !== undefined && (config.adminToken === null || !sameSecret(ask.adminToken, config.adminToken))) {
      return fail("auth_invalid", "wrong admin token");
    }
    const madeAdmin = ask.adminToken !== undefined;
    const found = ask.session === undefined ? null : await this.store.findSession(hashSecret(ask.session), now);
    const restored = found?.kind === "bot" ? null : found;
    let session: SessionRecord;
    let reuse = false;
    if (ask.token !== undefined) {
      const member = await this.signedIn(ask.token, now);
      if (!member.ok) return member;
      // The same member coming back with a fresh token keeps its session.
      reuse = restored?.userId === member.value.userId;
      session = { ...member.value, admin: member.value.admin || madeAdmin };
    } else if (restored?.kind === "member") {
      reuse = true;
      session = { ...restored, admin: restored.admin || madeAdmin };
    } else {
      if (!guestsAllowed(config)) return fail("auth_required", "this server takes members only: sign in with your app");
      const name = checkName(ask.name ?? restored?.name ?? "");
      if (!name) return fail("name_invalid", MESSAGES.nameInvalid);
      reuse = restored !== null;
      const userId = restored?.userId ?? newUserId();
      session = { userId, expiresAt: 0, kind: "guest", name, keys: nameKeys(name), admin: (restored?.admin ?? false) || madeAdmin, rooms: [] };
      if (session.keys.some((key) => this.reserved.has(key))) return fail("name_taken", MESSAGES.nameReserved);
      if (this.heldByOther(session.keys, userId)) return fail("name_taken", MESSAGES.nameTaken);
      const reserved = await this.store.nameReservedBy(session.keys, now);
      if (reserved !== null && reserved !== userId) return fail("name_taken", MESSAGES.nameTaken);
    }
    // A server-wide ban of the user, or of its address, holds at every hello (§11.4).
    const ban = await this.store.serverBan(session.userId, conn.ip, now);
    if (ban) return { ...bannedFromServer(ban), close: { code: CLOSE.banned, reason: CLOSE_REASON.banned } };
    const guest = session.kind === "guest";
    const keys = guest ? session.keys : nameKeys(session.name);
    const token = reuse ? ask.session! : conn.transport === "ws" ? newToken() : null;
    // Checked again: with an engine behind a network, others may have moved meanwhile.
    if (conn.state !== "open" || conn.user) return fail("internal", "connection closed");
    if (guest && this.heldByOther(keys, session.userId)) return fail("name_taken", MESSAGES.nameTaken);
    // Unique on every instance: the roster holds the name (one process: the map above is all),
    // and a rename lets go of the old one in the same step, on every instance.
    const online = this.online.get(session.userId);
    const since = online?.ref.name === session.name ? online.nameSince : now;
    let version: number;
    try {
      const held = await this.roster.claimName({ name: session.name, keys, userId: session.userId, exclusive: guest, since });
      if (!held.held) return fail("name_taken", MESSAGES.nameTaken);
      version = held.version;
    } catch (error) {
      this.ctx.log("error", "storage", { error: String(error), op: "claimName" });
      return fail("internal", MESSAGES.internal);
    }
    const unclaim = () => {
      // The claim just made stands for nobody here: let it go, unless the user holds it already.
      if (!keys.every((key) => this.holders.get(key)?.has(session.userId))) this.roster.releaseName(keys, session.userId);
    };
    session.nameVersion = version;
    // A bot signs in with its token every time: its session is not kept, so a revoked bot's brings nothing back.
    if (token !== null && session.kind !== "bot") {
      const saved = await this.saveSession(token, session, reuse ? restored : null, now);
      if (saved !== "saved") {
        unclaim();
        // Revoked since it was looked up (a signout): an unknown session now, which is ignored (§4).
        if (saved === "gone") return this.identifyAs(conn, { ...ask, session: undefined });
        return fail("internal", MESSAGES.internal);
      }
    }
    // A new session written for a hello that then fails was handed to nobody: it goes, or it
    // would reserve the name (nameReservedBy) for its lifetime against everyone, its winner too.
    const undo = async () => {
      unclaim();
      if (token === null || reuse || session.kind === "bot") return;
      await this.store.revokeSession(hashSecret(token)).catch((error) => this.ctx.log("error", "storage", { error: String(error), op: "revokeSession" }));
    };
    if (conn.state !== "open" || conn.user) {
      await undo();
      return fail("internal", "connection closed");
    }
    // Another hello for the name won while this one waited for storage: that is all it is.
    if (guest && this.heldByOther(keys, session.userId)) {
      await undo();
      return fail("name_taken", MESSAGES.nameTaken);
    }
    // Held here now, in the step that checked it: a hello that resumes before this one's user
    // is attached (Hub.hello) sees the name taken, so two never both get it.
    this.hold(keys, session.userId);
    const user = userRef(session.userId, session.name);
    return ok({
      user, keys, token, session: token === null ? null : hashSecret(token), admin: session.admin, rooms: session.rooms, since, version,
      record: token === null ? null : session,
    });
  }

  /** A member's session from its token (§11.1), or why the token is refused. */
  /** A member's or bot's session from its token (§11.1, §11.6), or why the token is refused. */
  private async signedIn(token: string, now: number): Promise<Result<SessionRecord>> {
    if (token.startsWith(BOT_TOKEN_PREFIX)) {
      const bot = await this.store.botByToken(hashSecret(token));
      if (!bot) return fail("auth_invalid", "unknown or revoked bot token");
      return ok({ userId: bot.id, expiresAt: 0, kind: "bot", name: bot.name, keys: [], admin: false, rooms: [] });
    }
    if (!this.verifier) return fail("auth_invalid", "this server takes no member tokens (no AUTH_* key is set)");
    const verified = await this.verifier.verify(token, now);
    if (!verified.ok) return fail("auth_invalid", verified.why);
    const { sub, name, admin, rooms } = verified.claims;
    return ok({ userId: MEMBER_ID_PREFIX + sub, expiresAt: 0, kind: "member", name, keys: [], admin, rooms });
  }

  /**
   * Stores the session: a new token must be on disk before the client holds it; a restored one
   * is written when what it restores changed, or to push its expiry back, at most every
   * sessionRefreshMs, so a reconnect storm after a deploy writes nothing. A restored one is
   * written only while it is still stored: "gone" when a signout revoked it meanwhile, "failed"
   * when storage failed.
   */
  private async saveSession(token: string, session: SessionRecord, before: SessionRecord | null, now: number): Promise<"saved" | "gone" | "failed"> {
    const ttlMs = this.ctx.config.sessionTtlSeconds * 1000;
    const same =
      before !== null &&
      before.name === session.name &&
      before.admin === session.admin &&
      before.keys.join() === session.keys.join() &&
      before.rooms.join() === session.rooms.join();
    if (same && before.expiresAt - now >= ttlMs - sessionRefreshMs(ttlMs)) {
      session.expiresAt = before.expiresAt;
      return "saved";
    }
    const fresh = before === null && session.kind === "guest";
    session.expiresAt = now + (fresh ? Math.min(ttlMs, NEW_SESSION_TTL_MS) : ttlMs);
    try {
      return (await this.store.saveSession(hashSecret(token), session, before !== null)) ? "saved" : "gone";
    } catch (error) {
      this.ctx.log("error", "storage", { error: String(error), op: "saveSession" });
      return "failed";
    }
  }

  /** Ends a session (signout): its token opens nothing and its name is free (§11.1). */
  revoke(sessionHash: string): Promise<void> {
    return this.store.revokeSession(sessionHash);
  }

  /**
   * The session was revoked (a signout, here or on another instance, as its connections here are
   * closed): the hellos under way that restore it are marked, and restore nothing.
   */
  revoked(sessionHash: string): void {
    for (const hello of this.resuming.get(sessionHash) ?? []) hello.revoked = true;
  }

  /**
   * Whether the session `who` restores was revoked while its hello was under way (§11.1). Asked
   * in the step that attaches: one revoked later finds the connection attached, and closes it.
   * If so, the hello lets go of the name identify held for it (here and on every instance, unless
   * the user holds it already); its write, if any, found the session gone or came before the
   * revocation, so nothing of the session is left.
   */
  revokedMeanwhile(who: Identity): boolean {
    if (!who.resuming?.revoked) return false;
    this.unwatch(who.resuming);
    const kept = this.online.get(who.user.id)?.keys ?? [];
    const taken = who.keys.filter((key) => !kept.includes(key));
    this.unhold(taken, who.user.id);
    if (taken.length) this.roster.releaseName(taken, who.user.id);
    return true;
  }

  private watch(hash: string): Resuming {
    const hello = { hash, revoked: false };
    let hellos = this.resuming.get(hash);
    if (!hellos) this.resuming.set(hash, (hellos = new Set()));
    hellos.add(hello);
    return hello;
  }

  private unwatch(hello: Resuming | null | undefined): void {
    if (!hello) return;
    const hellos = this.resuming.get(hello.hash);
    if (hellos?.delete(hello) && hellos.size === 0) this.resuming.delete(hello.hash);
  }

  /** The user's live connections, oldest first (none when it is not online). */
  connections(userId: string): readonly Connection[] {
    return this.online.get(userId)?.conns ?? [];
  }

  /**
   * Makes `conn` a connection of the identified user, online from now on. Returns the user and,
   * when it came back with another name, the name it had (the caller announces it).
   */
  attach(conn: Connection, who: Identity): { user: User; oldName: string | null } {
    this.unwatch(who.resuming);
    let user = this.online.get(who.user.id);
    let oldName: string | null = null;
    if (!user) {
      user = this.newUser(who.user, who.keys, who.since, who.version);
      this.hold(who.keys, who.user.id);
    } else if (user.ref.name !== who.user.name && who.version >= user.nameVersion) {
      oldName = user.ref.name;
      this.rename(user, who.user.name, who.keys, who.since, who.version);
    } else {
      // The same name; or this hello's rename lost to a later one, whose name the user keeps:
      // the name identify held here for it goes.
      user.nameVersion = Math.max(user.nameVersion, who.version);
      this.unhold(who.keys.filter((key) => !user!.keys.includes(key)), user.ref.id);
    }
    user.conns.push(conn);
    conn.user = user;
    conn.session = who.session;
    conn.sessionRecord = who.record;
    conn.admin = who.admin;
    user.admin = who.admin;
    conn.claimRooms = who.rooms;
    this.roster.holdAdmin(user.ref.id, adminOf(user));
    return { user, oldName };
  }

  /** Whether a user is a server admin as far as this instance knows: its connections here say so, or in grace its last hello did. */
  isAdmin(userId: string): boolean {
    const user = this.online.get(userId);
    return user !== undefined && adminOf(user);
  }

  private newUser(ref: UserRef, keys: string[], since: number, version: number): User {
    const user: User = { ref, keys, nameSince: since, nameVersion: version, conns: [], admin: false, typingAt: null, bucket: this.rate.userBuckets.get(ref.id, this.ctx.now()) };
    this.online.set(ref.id, user);
    return user;
  }

  /** The user's name here becomes `name` (the roster moved its holds already). */
  private rename(user: User, name: string, keys: string[], since: number, version: number): void {
    this.release(user.keys, user.ref.id);
    this.hold(keys, user.ref.id);
    user.ref.name = name;
    user.keys = keys;
    user.nameSince = since;
    user.nameVersion = version;
  }

  /**
   * A member in grace is online (§4), so its name stays its own; its instance, which held it, is
   * gone. Held here until the grace ends (forgetIfOffline lets it go) or the user comes back,
   * and so is its rank: `admin` when its last hello there made it one.
   */
  holdInGrace(ref: UserRef, admin: boolean): void {
    if (this.online.has(ref.id) || !ref.name) return;
    const user = this.newUser(ref, nameKeys(ref.name), this.ctx.now(), 0);
    user.admin = admin;
    this.hold(user.keys, ref.id);
    this.claimQuietly(user);
    this.roster.holdAdmin(ref.id, admin);
  }

  /**
   * The same user was renamed on another instance (name-claim.lua's server event, or a stale
   * hold): its connections here take the new name too, for what they send from now on, unless
   * this instance knows a later version of the name already (two renames at once: the later one
   * wins everywhere). The roster moved this instance's hold already.
   */
  renamedElsewhere(userId: string, name: string, version: number): void {
    const local = this.online.get(userId);
    if (!local || version < local.nameVersion || (version === local.nameVersion && local.ref.name !== name)) return;
    if (local.ref.name === name) {
      // Known already: hold it again (the hold that brought this back was of an older name).
      local.nameVersion = version;
      this.claimQuietly(local);
      return;
    }
    this.rename(local, name, nameKeys(name), this.ctx.now(), version);
    this.claimQuietly(local);
  }

  /**
   * Stores again the sessions of the users online here (the engine lost its data, issue 21: 3),
   * under the names they have now: their tokens keep working, and their guests' names stay theirs.
   */
  async saveLiveSessions(only?: User): Promise<void> {
    const saved = new Set<string>();
    const writes: Promise<unknown>[] = [];
    for (const user of only ? [only] : this.online.values()) {
      for (const conn of user.conns) {
        const record = conn.sessionRecord;
        if (conn.session === null || record === null || saved.has(conn.session)) continue;
        saved.add(conn.session);
        const guest = record.kind === "guest";
        Object.assign(record, { name: user.ref.name, keys: guest ? user.keys : [], nameVersion: user.nameVersion });
        writes.push(this.store.saveSession(conn.session, record).catch((error) => this.ctx.log("error", "storage", { error: String(error), op: "saveSession" })));
      }
    }
    await Promise.all(writes);
  }

  /**
   * The user lost its name `lost` to one who held it first (issue 21: 2): it takes the first free
   * of `lost-<a part of its id>` (longer parts if need be), on every instance, and its sessions
   * keep that one. Null when it has another name already, is not here, or is in grace only
   * (nobody to tell: its grace ends under the old name).
   */
  async takeFallbackName(userId: string, lost: string): Promise<{ user: User; oldName: string } | null> {
    const user = this.online.get(userId);
    if (!user || user.ref.name !== lost || user.conns.length === 0) return null;
    const now = this.ctx.now();
    for (let attempt = 0; attempt < FALLBACK_NAME_ATTEMPTS; attempt++) {
      const name = fallbackName(lost, userId, attempt);
      if (name === null) continue;
      const keys = nameKeys(name);
      if (keys.some((key) => this.reserved.has(key)) || this.heldByOther(keys, userId)) continue;
      const reserved = await this.store.nameReservedBy(keys, now);
      if (reserved !== null && reserved !== userId) continue;
      const held = await this.roster.claimName({ name, keys, userId, exclusive: user.ref.kind === undefined, since: now });
      if (!held.held) continue;
      if (this.online.get(userId) !== user || user.ref.name !== lost) return null;
      this.rename(user, name, keys, now, held.version);
      await this.saveLiveSessions(user);
      return { user, oldName: lost };
    }
    return null;
  }

  /**
   * The user is gone when it has no connection and is in no room, not even in grace. Called
   * whenever it lost a connection or a room, so the roster hears too whether it is still an admin here.
   */
  forgetIfOffline(user: User): void {
    if (user.conns.length > 0 || this.presence.isMember(user.ref.id)) {
      this.roster.holdAdmin(user.ref.id, adminOf(user));
      return;
    }
    this.online.delete(user.ref.id);
    this.release(user.keys, user.ref.id);
    this.roster.holdAdmin(user.ref.id, false);
  }

  /**
   * Holds the user's name on every instance without waiting (it holds it here already): a hold,
   * which renames nothing; one that finds the user renamed elsewhere takes that name.
   */
  private claimQuietly(user: User): void {
    const { ref, keys, nameSince: since, nameVersion: version } = user;
    this.roster
      .claimName({ name: ref.name, keys, userId: ref.id, exclusive: ref.kind === undefined, since, version })
      .then((got) => {
        if (!got.held && got.renamed) this.renamedElsewhere(ref.id, got.renamed.name, got.renamed.version);
      })
      .catch((error) => this.ctx.log("warn", "storage", { error: String(error), op: "claimName" }));
  }

  private hold(keys: readonly string[], userId: string): void {
    for (const key of keys) {
      let set = this.holders.get(key);
      if (!set) this.holders.set(key, (set = new Set()));
      set.add(userId);
    }
  }

  /** Lets go of keys here only (the roster holds nothing for them). */
  private unhold(keys: readonly string[], userId: string): void {
    for (const key of keys) {
      const set = this.holders.get(key);
      if (set?.delete(userId) && set.size === 0) this.holders.delete(key);
    }
  }

  /** The one way a user lets go of a name: here, and on every instance. */
  private release(keys: readonly string[], userId: string): void {
    let held = false;
    for (const key of keys) {
      const set = this.holders.get(key);
      if (!set?.delete(userId)) continue;
      held = true;
      if (set.size === 0) this.holders.delete(key);
    }
    if (held) this.roster.releaseName(keys, userId);
  }

  /** Whether another online user holds a name with one of these keys. */
  private heldByOther(keys: readonly string[], userId: string): boolean {
    for (const key of keys) {
      const set = this.holders.get(key);
      if (set && (set.size > 1 || !set.has(userId))) return true;
    }
    return false;
  }
}
