/**
 * Who is online here, and who a hello makes a connection (§4, §10, §11.1): guests by the name
 * they choose, members by their host application's token, admins by ADMIN_TOKEN; names unique
 * by look-alike keys (on every instance through the roster, and reserved for a guest's session
 * while it is valid, through storage); sessions that bring a user back, and end at signout.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import type { TokenVerifier } from "./auth.ts";
import { guestsAllowed } from "./config.ts";
import type { Connection, User } from "./connection.ts";
import type { Context } from "./context.ts";
import type { Presence } from "./core/presence.ts";
import { DAY_MS, type Roster, type SessionRecord, type Store } from "./engine.ts";
import { MEMBER_ID_PREFIX, MESSAGES, checkName, fail, nameKeys, ok, userRef, type Result } from "./protocol/rules.ts";
import { CLOSE, CLOSE_REASON, type HelloFrame, type UserRef } from "./protocol/wire.ts";
import type { RateGate } from "./rate.ts";

/** A restored session's expiry is pushed back at most this often (one write per hour at most). */
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

const newToken = () => randomBytes(SESSION_TOKEN_BYTES).toString("base64url");
const newUserId = () => randomBytes(USER_ID_BYTES).toString("base64url");
/** What storage keeps of a secret (a session token, an invite code): its SHA-256. */
export const hashSecret = (secret: string) => createHash("sha256").update(secret).digest("hex");

/** Compares two secrets in time that does not depend on where they differ. */
export function sameSecret(given: string, expected: string): boolean {
  const digest = (s: string) => createHash("sha256").update(s).digest();
  return timingSafeEqual(digest(given), digest(expected));
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
}

/** What a hello asks for, door-independent: a TCP user gives a name only. */
export type HelloAsk = Pick<HelloFrame, "name" | "session" | "token" | "adminToken">;

export class Users {
  readonly online = new Map<string, User>();
  /** Look-alike key → the online users holding a name with it. */
  private readonly holders = new Map<string, Set<string>>();

  constructor(
    private readonly ctx: Context,
    private readonly store: Store,
    private readonly roster: Roster,
    private readonly rate: RateGate,
    private readonly presence: Presence<Connection>,
    private readonly verifier: TokenVerifier | null,
  ) {}

  /**
   * Who `conn` is, by what its hello shows (§11.1): a member's token, a live session, or a guest
   * name. Nothing changes until the name is held on every instance and the session is stored,
   * so a failed hello leaves nothing half done.
   */
  async identify(conn: Connection, ask: HelloAsk): Promise<Result<Identity>> {
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
      if (this.heldByOther(session.keys, userId)) return fail("name_taken", MESSAGES.nameTaken);
      const reserved = await this.store.nameReservedBy(session.keys, now);
      if (reserved !== null && reserved !== userId) return fail("name_taken", MESSAGES.nameTaken);
    }
    // A server-wide ban of the user, or of its address, holds at every hello (§11.4).
    const ban = await this.store.serverBan(session.userId, conn.ip, now);
    if (ban) {
      const refused = fail("banned", "you are banned from this server");
      return { ...refused, ...(ban.until !== null ? { extra: { until: ban.until } } : {}), close: { code: CLOSE.banned, reason: CLOSE_REASON.banned } };
    }
    const guest = session.kind === "guest";
    const keys = guest ? session.keys : nameKeys(session.name);
    const token = reuse ? ask.session! : conn.transport === "ws" ? newToken() : null;
    // Checked again: with an engine behind a network, others may have moved meanwhile.
    if (conn.state !== "open" || conn.user) return fail("internal", "connection closed");
    if (guest && this.heldByOther(keys, session.userId)) return fail("name_taken", MESSAGES.nameTaken);
    // Unique on every instance: the roster holds the name (one process: the map above is all).
    try {
      if (!(await this.roster.claimName(keys, session.userId, guest))) return fail("name_taken", MESSAGES.nameTaken);
    } catch (error) {
      this.ctx.log("error", "storage", { error: String(error), op: "claimName" });
      return fail("internal", MESSAGES.internal);
    }
    const unclaim = () => {
      // The claim just made stands for nobody here: let it go, unless the user holds it already.
      if (!keys.every((key) => this.holders.get(key)?.has(session.userId))) this.roster.releaseName(keys, session.userId);
    };
    // A bot signs in with its token every time: its session is not kept, so a revoked bot's brings nothing back.
    if (token !== null && session.kind !== "bot") {
      const saved = await this.saveSession(token, session, reuse ? restored : null, now);
      if (!saved) {
        unclaim();
        return fail("internal", MESSAGES.internal);
      }
    }
    if (conn.state !== "open" || conn.user || (guest && this.heldByOther(keys, session.userId))) {
      unclaim();
      return fail("internal", "connection closed");
    }
    const user = userRef(session.userId, session.name);
    return ok({ user, keys, token, session: token === null ? null : hashSecret(token), admin: session.admin, rooms: session.rooms });
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
   * SESSION_REFRESH_MS, so a reconnect storm after a deploy writes nothing. False when storage failed.
   */
  private async saveSession(token: string, session: SessionRecord, before: SessionRecord | null, now: number): Promise<boolean> {
    const ttlMs = this.ctx.config.sessionTtlSeconds * 1000;
    const same =
      before !== null &&
      before.name === session.name &&
      before.admin === session.admin &&
      before.keys.join() === session.keys.join() &&
      before.rooms.join() === session.rooms.join();
    if (same && before.expiresAt - now >= ttlMs - SESSION_REFRESH_MS) return true;
    const fresh = before === null && session.kind === "guest";
    session.expiresAt = now + (fresh ? Math.min(ttlMs, NEW_SESSION_TTL_MS) : ttlMs);
    try {
      await this.store.saveSession(hashSecret(token), session);
      return true;
    } catch (error) {
      this.ctx.log("error", "storage", { error: String(error), op: "saveSession" });
      return false;
    }
  }

  /** Ends a session (signout): its token opens nothing and its name is free (§11.1). */
  revoke(sessionHash: string): Promise<void> {
    return this.store.revokeSession(sessionHash);
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
    let user = this.online.get(who.user.id);
    let oldName: string | null = null;
    if (!user) {
      user = this.newUser(who.user, who.keys);
      this.hold(who.keys, who.user.id);
    } else if (user.ref.name !== who.user.name) {
      oldName = user.ref.name;
      this.release(user.keys, user.ref.id);
      this.hold(who.keys, user.ref.id);
      user.ref.name = who.user.name;
      user.keys = who.keys;
    }
    user.conns.push(conn);
    conn.user = user;
    conn.session = who.session;
    conn.admin = who.admin;
    conn.claimRooms = who.rooms;
    return { user, oldName };
  }

  private newUser(ref: UserRef, keys: string[]): User {
    const user: User = { ref, keys, conns: [], typingAt: null, bucket: this.rate.userBuckets.get(ref.id, this.ctx.now()) };
    this.online.set(ref.id, user);
    return user;
  }

  /**
   * A member in grace is online (§4), so its name stays its own; its instance, which held it, is
   * gone. Held here until the grace ends (forgetIfOffline lets it go) or the user comes back.
   */
  holdInGrace(ref: UserRef): void {
    if (this.online.has(ref.id) || !ref.name) return;
    const user = this.newUser(ref, nameKeys(ref.name));
    this.hold(user.keys, ref.id);
    this.claimQuietly(user);
  }

  /**
   * The same user renamed itself on another instance: its connections here take the new name
   * too, for what they send from now on, and this instance's hold moves to the new name.
   */
  renamedElsewhere(renamed: UserRef): void {
    const local = this.online.get(renamed.id);
    if (!local || local.ref.name === renamed.name) return;
    this.release(local.keys, renamed.id);
    local.ref.name = renamed.name;
    local.keys = nameKeys(renamed.name);
    this.hold(local.keys, renamed.id);
    this.claimQuietly(local);
  }

  /** The user is gone when it has no connection and is in no room, not even in grace. */
  forgetIfOffline(user: User): void {
    if (user.conns.length > 0 || this.presence.isMember(user.ref.id)) return;
    this.online.delete(user.ref.id);
    this.release(user.keys, user.ref.id);
  }

  /** Claims the user's name on every instance without waiting (it holds it here already). */
  private claimQuietly(user: User): void {
    this.roster
      .claimName(user.keys, user.ref.id, user.ref.kind === undefined)
      .catch((error) => this.ctx.log("warn", "storage", { error: String(error), op: "claimName" }));
  }

  private hold(keys: readonly string[], userId: string): void {
    for (const key of keys) {
      let set = this.holders.get(key);
      if (!set) this.holders.set(key, (set = new Set()));
      set.add(userId);
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
