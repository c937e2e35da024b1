/**
 * Bots (§11.6): made, listed and revoked by admins (the HTTP API, or `bun run server.ts bots …`
 * from a shell), each a user of kind "bot" with an id of its own (`b:` + random) and a token
 * (`bot_` + 256 random bits) whose hash alone is stored. A revoked token signs in nobody at once;
 * its live connections close with 4003 within BOT_RECHECK_MS, on every instance, whoever revoked
 * it (this server, another instance, or the command line).
 */
import { randomId } from "./core/random.ts";
import type { Conns } from "./conns.ts";
import type { Context } from "./context.ts";
import type { BotRecord, Store } from "./engine.ts";
import type { Membership } from "./membership.ts";
import { BOT_ID_PREFIX, checkName, fail, ok, type Result } from "./protocol/rules.ts";
import { CLOSE, CLOSE_REASON, type UserRef } from "./protocol/wire.ts";
import { ADMIN_BEARER, type Actor } from "./authority.ts";
import { bannedFromServer, hashSecret, sameSecret } from "./users.ts";

/** Bytes of randomness in a bot token (256 bits; §11.6 asks at least 128) and in a bot's id. */
const BOT_TOKEN_BYTES = 32;
const BOT_ID_BYTES = 9;
/** How often the bots online here are checked against storage for a revocation made elsewhere. */
export const BOT_RECHECK_MS = 1000;

/** A bot as the API shows it. */
export const botRef = (bot: BotRecord): UserRef => ({ id: bot.id, name: bot.name, kind: "bot" });

/** Makes a bot: its record and its token, shown once. One rule for the HTTP API and the command line. */
export async function createBot(store: Store, rawName: string, now: number): Promise<Result<{ bot: BotRecord; token: string }>> {
  const name = checkName(rawName);
  if (!name) return fail("bad_request", "a bot's name follows the name rules: 1 to 32 letters, digits, spaces, _ - .");
  const bot: BotRecord = { id: BOT_ID_PREFIX + randomId(BOT_ID_BYTES), name, createdAt: now, revoked: false };
  const token = `bot_${randomId(BOT_TOKEN_BYTES)}`;
  await store.createBot(bot, hashSecret(token));
  return ok({ bot, token });
}

export class Bots {
  private readonly timer: ReturnType<typeof setInterval>;

  constructor(
    private readonly ctx: Context,
    private readonly store: Store,
    private readonly conns: Conns,
    private readonly membership: Membership,
  ) {
    this.timer = setInterval(() => void this.recheck(), BOT_RECHECK_MS);
    this.timer.unref?.();
  }

  /**
   * Who a bearer token, sent from `ip`, acts as (§11.6): the admin for ADMIN_TOKEN (compared in
   * constant time), a bot for its live token, else `auth_invalid`. Unknown and wrong bot tokens
   * take the same way: a hash lookup. A bot banned from the server, or calling from a banned
   * address, is refused `banned` as its hello is (§11.4): a ban holds at every door.
   */
  async actorFor(token: string, ip: string): Promise<Result<Actor>> {
    const admin = this.ctx.config.adminToken;
    if (admin !== null && sameSecret(token, admin)) return ok(ADMIN_BEARER);
    const bot = token.startsWith("bot_") ? await this.store.botByToken(hashSecret(token)) : null;
    if (!bot) return fail("auth_invalid", "unknown or revoked token");
    const ban = await this.store.serverBan(bot.id, ip, this.ctx.now());
    return ban ? bannedFromServer(ban) : ok({ ref: botRef(bot), admin: false, claimRooms: [] });
  }

  create(name: string): Promise<Result<{ bot: BotRecord; token: string }>> {
    return createBot(this.store, name, this.ctx.now());
  }

  list(): Promise<BotRecord[]> {
    return this.store.bots();
  }

  /** Revokes a bot and closes its connections here at once (other instances within BOT_RECHECK_MS). */
  async revoke(id: string): Promise<Result<BotRecord>> {
    const bot = (await this.store.bots()).find((b) => b.id === id);
    if (!bot || !(await this.store.revokeBot(id))) return fail("not_found", "no such bot");
    this.close(new Set([id]));
    return ok({ ...bot, revoked: true });
  }

  /** Closes the connections of the revoked bots online here; nothing to ask while no bot is. */
  private async recheck(): Promise<void> {
    const online = new Set(this.conns.all().flatMap((c) => (c.user?.ref.kind === "bot" ? [c.user.ref.id] : [])));
    if (online.size === 0) return;
    try {
      const revoked = new Set((await this.store.bots()).filter((b) => b.revoked && online.has(b.id)).map((b) => b.id));
      if (revoked.size) this.close(revoked);
    } catch (error) {
      this.ctx.log("warn", "storage", { error: String(error), op: "bots" });
    }
  }

  private close(ids: ReadonlySet<string>): void {
    for (const conn of this.conns.all()) {
      if (!conn.user || !ids.has(conn.user.ref.id)) continue;
      this.membership.drop(conn, true);
      conn.close(CLOSE.banned, CLOSE_REASON.revoked);
    }
  }

  dispose(): void {
    clearInterval(this.timer);
  }
}
