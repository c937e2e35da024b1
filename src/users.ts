/**
 * Who is online here: users, their names (unique by look-alike key, on every instance through
 * the roster) and the sessions that bring a user back (§4, §10). A user is online while it has
 * a live connection or is still in some room in grace.
 */
import { createHash, randomBytes } from "node:crypto";
import type { Connection, User } from "./connection.ts";
import type { Context } from "./context.ts";
import type { Presence } from "./core/presence.ts";
import { DAY_MS, type Roster, type Store } from "./engine.ts";
import { MESSAGES, checkName, fail, nameKey, ok, type Result } from "./protocol/rules.ts";
import type { UserRef } from "./protocol/wire.ts";
import type { RateGate } from "./rate.ts";

/** A restored session's expiry is pushed back at most this often (one write per hour at most). */
const SESSION_REFRESH_MS = 3_600_000;
/**
 * A new session lives this long (or SESSION_TTL_SECONDS, if shorter) until it is first used again;
 * that use refreshes it to the full TTL. A token nobody comes back with costs a day of disk, not 30.
 */
const NEW_SESSION_TTL_MS = DAY_MS;
/** Bytes of randomness in a session token (256 bits) and in a user id. */
const SESSION_TOKEN_BYTES = 32;
const USER_ID_BYTES = 9;

const newToken = () => randomBytes(SESSION_TOKEN_BYTES).toString("base64url");
const newUserId = () => randomBytes(USER_ID_BYTES).toString("base64url");
const hashToken = (token: string) => createHash("sha256").update(token).digest("hex");

/** Who a hello makes the connection: the user, its name and the session to hand back (none over TCP). */
export interface Identity {
  userId: string;
  name: string;
  /** The name's look-alike key (nameKey). */
  key: string;
  token: string | null;
}

export class Users {
  readonly online = new Map<string, User>();
  /** nameKey → user id, for every online user. */
  private readonly names = new Map<string, string>();

  constructor(
    private readonly ctx: Context,
    private readonly store: Store,
    private readonly roster: Roster,
    private readonly rate: RateGate,
    private readonly presence: Presence<Connection>,
  ) {}

  /**
   * Who `conn` is, by `rawName` and `session`: the session's user when it is live, else a new
   * one. Storage comes first and nothing here changes until the name is held on every instance,
   * so a failed hello leaves nothing half done. TCP users have no way to present a token: they
   * get none.
   */
  async identify(conn: Connection, rawName: string, session?: string): Promise<Result<Identity>> {
    const now = this.ctx.now();
    const name = checkName(rawName);
    if (!name) return fail("name_invalid", MESSAGES.nameInvalid);
    const key = nameKey(name);
    const ttlMs = this.ctx.config.sessionTtlSeconds * 1000;
    // An unknown or expired session is not an error: the client simply becomes a new user.
    const restored = session === undefined ? null : await this.store.findSession(hashToken(session), now);
    const userId = restored?.userId ?? newUserId();
    const token = restored ? session! : conn.transport === "ws" ? newToken() : null;
    if (this.nameHolder(key, userId)) return fail("name_taken", MESSAGES.nameTaken);
    // A new token must be on disk before the client holds it; a restored one is pushed back at
    // most every SESSION_REFRESH_MS, so a reconnect storm after a deploy writes nothing.
    if (token !== null && (!restored || restored.expiresAt - now < ttlMs - SESSION_REFRESH_MS)) {
      try {
        await this.store.saveSession(hashToken(token), userId, now + (restored ? ttlMs : Math.min(ttlMs, NEW_SESSION_TTL_MS)));
      } catch (error) {
        this.ctx.log("error", "storage", { error: String(error), op: "saveSession" });
        return fail("internal", MESSAGES.internal);
      }
    }
    // Checked again: with a storage engine behind a network, others may have moved meanwhile.
    if (conn.state !== "open" || conn.user) return fail("internal", "connection closed");
    if (this.nameHolder(key, userId)) return fail("name_taken", MESSAGES.nameTaken);
    // Unique on every instance too: the roster holds the name (one process: the map above is all).
    try {
      if (!(await this.roster.claimName(key, userId))) return fail("name_taken", MESSAGES.nameTaken);
    } catch (error) {
      this.ctx.log("error", "storage", { error: String(error), op: "claimName" });
      return fail("internal", MESSAGES.internal);
    }
    if (conn.state !== "open" || conn.user || this.nameHolder(key, userId)) {
      // The claim just made stands for nobody here: let it go, unless the user holds it already.
      if (this.names.get(key) !== userId) this.roster.releaseName(key, userId);
      return fail("internal", "connection closed");
    }
    return ok({ userId, name, key, token });
  }

  /** The user's live connections, oldest first (none when it is not online). */
  connections(userId: string): readonly Connection[] {
    return this.online.get(userId)?.conns ?? [];
  }

  /**
   * Makes `conn` a connection of the identified user, online from now on. Returns the user and,
   * when the session came back with another name, the name it had (the caller announces it).
   */
  attach(conn: Connection, who: Identity): { user: User; oldName: string | null } {
    let user = this.online.get(who.userId);
    let oldName: string | null = null;
    if (!user) {
      user = this.newUser({ id: who.userId, name: who.name });
      this.names.set(who.key, who.userId);
    } else if (user.ref.name !== who.name) {
      oldName = user.ref.name;
      this.releaseName(nameKey(oldName), user.ref.id);
      this.names.set(who.key, user.ref.id);
      user.ref.name = who.name;
    }
    user.conns.push(conn);
    conn.user = user;
    return { user, oldName };
  }

  private newUser(ref: UserRef): User {
    const user: User = { ref, conns: [], typingAt: null, bucket: this.rate.userBuckets.get(ref.id, this.ctx.now()) };
    this.online.set(ref.id, user);
    return user;
  }

  /**
   * A member in grace is online (§4), so its name stays its own; its instance, which held it, is
   * gone. Held here until the grace ends (forgetIfOffline lets it go) or the user comes back.
   */
  holdInGrace(ref: UserRef): void {
    if (this.online.has(ref.id) || !ref.name) return;
    this.newUser(ref);
    this.holdName(nameKey(ref.name), ref.id);
  }

  /**
   * The same user renamed itself on another instance: its connections here take the new name
   * too, for what they send from now on, and this instance's hold moves to the new name.
   */
  renamedElsewhere(renamed: UserRef): void {
    const local = this.online.get(renamed.id);
    if (!local || local.ref.name === renamed.name) return;
    this.releaseName(nameKey(local.ref.name), renamed.id);
    this.holdName(nameKey(renamed.name), renamed.id);
    local.ref.name = renamed.name;
  }

  /** The user is gone when it has no connection and is in no room, not even in grace. */
  forgetIfOffline(user: User): void {
    if (user.conns.length > 0 || this.presence.isMember(user.ref.id)) return;
    this.online.delete(user.ref.id);
    this.releaseName(nameKey(user.ref.name), user.ref.id);
  }

  /** Holds a name for `userId` here and, without waiting, on every instance. */
  private holdName(key: string, userId: string): void {
    this.names.set(key, userId);
    this.roster.claimName(key, userId).catch((error) => this.ctx.log("warn", "storage", { error: String(error), op: "claimName" }));
  }

  /** The one way a user lets go of a name: here, and on every instance. */
  private releaseName(key: string, userId: string): void {
    if (this.names.get(key) !== userId) return;
    this.names.delete(key);
    this.roster.releaseName(key, userId);
  }

  /** Whether another online user holds the name whose look-alike key is `key`. */
  private nameHolder(key: string, userId: string): boolean {
    const holder = this.names.get(key);
    return holder !== undefined && holder !== userId;
  }
}
