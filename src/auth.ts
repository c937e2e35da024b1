/**
 * Sign-in by the host application (§11.1): verifies a member's JWT with the configured key — an
 * HS256 secret, a PEM public key, or a JWKS fetched over HTTP(S) — and reads its claims by the
 * protocol's rules. Verification is jose's; which algorithms a key allows, the claim rules and
 * the JWKS cache (keys known keep working while the JWKS URL is down) are ours.
 */
import type { JSONWebKeySet, JWTVerifyGetKey, JWTVerifyOptions, jwtVerify } from "jose";
import type { Config } from "./config.ts";
import type { Log } from "./metrics.ts";
import { checkName } from "./protocol/rules.ts";
import { TOKEN_MAX_BYTES, isRoom } from "./protocol/wire.ts";
import { pemText, publicKeyAlgorithm } from "./config.ts";

/** jose, loaded by the first openVerifier that needs it: a server without sign-in never loads it (~10 ms of start). */
let jose: typeof import("jose");

/** Tokens may be this far out of date (exp) or early (nbf), in seconds: clocks differ (§11.1). */
const CLOCK_SKEW_SECONDS = 60;
/** A JWKS is fetched again for a token whose `kid` it lacks at most this often (§11.1). */
const JWKS_REFETCH_MIN_MS = 30_000;
/** A JWKS is fetched again in the background this often, so removed keys stop working. */
const JWKS_REFRESH_MS = 600_000;
/** Bounds one JWKS fetch, in ms (and half of HELLO_TIMEOUT_MS, so a hello waiting on it is answered in time). */
const JWKS_FETCH_TIMEOUT_MS = 5_000;
/** Bounds a JWKS's body, in bytes: a key set is a few KB; a larger one is refused as a failed fetch. */
const JWKS_MAX_BYTES = 256 * 1024;
/** A member's `sub`: 1–64 of these (§11.1). */
const SUB_PATTERN = /^[A-Za-z0-9_.@+-]{1,64}$/;

/** Who a verified token says its holder is. */
export interface MemberClaims {
  sub: string;
  /** The display name: the `name` claim, else `sub`; valid by the name rules. */
  name: string;
  admin: boolean;
  /** Private rooms the member may join. */
  rooms: string[];
}

export type Verified = { ok: true; claims: MemberClaims } | { ok: false; why: string };

/** Checks members' tokens; null verifier when no AUTH_* key is set (then every token is refused). */
export interface TokenVerifier {
  verify(token: string, now: number): Promise<Verified>;
  close(): void;
}

/**
 * A JWKS kept in memory: fetched at start, again in the background, and again (at most every
 * JWKS_REFETCH_MIN_MS) when a token names a key it lacks. A failed fetch keeps the keys known.
 */
class JwksCache {
  private keys: JWTVerifyGetKey | null = null;
  private lastFetch = -Infinity;
  private fetching: Promise<void> | null = null;
  private readonly timer: ReturnType<typeof setInterval>;

  constructor(
    private readonly url: string,
    private readonly timeoutMs: number,
    private readonly log: Log,
    /** The server's clock (ms): tests move it past JWKS_REFETCH_MIN_MS. */
    private readonly now: () => number,
  ) {
    void this.refetch();
    this.timer = setInterval(() => void this.refetch(), JWKS_REFRESH_MS);
    this.timer.unref?.();
  }

  private refetch(): Promise<void> {
    this.lastFetch = this.now();
    this.fetching ??= (async () => {
      try {
        const response = await fetch(this.url, { signal: AbortSignal.timeout(this.timeoutMs) });
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        const jwks = JSON.parse(await cappedText(response, JWKS_MAX_BYTES)) as JSONWebKeySet;
        if (!Array.isArray(jwks?.keys)) throw new Error("no keys array");
        // A set with no key to sign with is no better than none: the keys known keep working.
        const usable = jwks.keys.filter((k) => typeof k?.kty === "string" && (k.use === undefined || k.use === "sig"));
        if (usable.length === 0) throw new Error("no usable signing key in the set");
        this.keys = jose.createLocalJWKSet({ keys: usable });
        this.log("debug", "jwks_fetched", { keys: jwks.keys.length });
      } catch (error) {
        this.log("warn", "jwks_unavailable", { error: String(error) });
      } finally {
        this.fetching = null;
      }
    })();
    return this.fetching;
  }

  /** jose's key lookup, fetching the JWKS again (rate-limited) for an unknown key. */
  readonly getKey: JWTVerifyGetKey = async (header, token) => {
    if (!this.keys) await (this.fetching ?? this.refetchIfDue());
    if (!this.keys) throw new Error("the JWKS could not be fetched");
    try {
      return await this.keys(header, token);
    } catch (error) {
      if (!(error instanceof jose.errors.JWKSNoMatchingKey)) throw error;
      await (this.fetching ?? this.refetchIfDue());
      return this.keys(header, token);
    }
  };

  private refetchIfDue(): Promise<void> {
    return this.now() - this.lastFetch >= JWKS_REFETCH_MIN_MS ? this.refetch() : Promise.resolve();
  }

  close(): void {
    clearInterval(this.timer);
  }
}

/** A response's body as text, refused past `maxBytes` (as it says, or as it comes). */
async function cappedText(response: Response, maxBytes: number): Promise<string> {
  if (Number(response.headers.get("content-length") ?? 0) > maxBytes) throw new Error(`the body is over ${maxBytes} bytes`);
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of response.body ?? []) {
    size += chunk.byteLength;
    if (size > maxBytes) throw new Error(`the body is over ${maxBytes} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/** Reads the claims of a verified token by §11.1's rules; why not, when one breaks them. */
export function readClaims(payload: Record<string, unknown>): Verified {
  const { sub, name, admin, rooms } = payload;
  if (typeof sub !== "string" || !SUB_PATTERN.test(sub)) return { ok: false, why: "sub must be 1 to 64 of A-Z a-z 0-9 _ . @ + -" };
  const shown = checkName(typeof name === "string" ? name : sub);
  if (name !== undefined && typeof name !== "string") return { ok: false, why: "name must be a string" };
  if (!shown) return { ok: false, why: "the name (or sub, without a name claim) breaks the name rules" };
  if (admin !== undefined && typeof admin !== "boolean") return { ok: false, why: "admin must be a boolean" };
  if (rooms !== undefined && !(Array.isArray(rooms) && rooms.every((r) => typeof r === "string" && isRoom(r)))) {
    return { ok: false, why: "rooms must be an array of room names" };
  }
  return { ok: true, claims: { sub, name: shown, admin: admin === true, rooms: (rooms as string[] | undefined) ?? [] } };
}

/** What a jose failure says, for the auth_invalid message. */
function whyRefused(error: unknown): string {
  if (error instanceof jose.errors.JWTExpired) return "the token has expired";
  if (error instanceof jose.errors.JWTClaimValidationFailed) {
    if (error.claim === "nbf") return "the token is not valid yet";
    if (error.claim === "aud") return "the token is for another audience";
    if (error.claim === "iss") return "the token is from another issuer";
    return `the token's ${error.claim} claim is missing or invalid`;
  }
  if (error instanceof jose.errors.JOSEAlgNotAllowed) return "the token's algorithm is not the key's";
  if (error instanceof jose.errors.JWSSignatureVerificationFailed) return "the token's signature does not verify";
  if (error instanceof jose.errors.JWKSNoMatchingKey) return "no key matches the token";
  if (error instanceof jose.errors.JWSInvalid || error instanceof jose.errors.JWTInvalid) return "the token is malformed";
  return `the token could not be verified (${(error as Error)?.message ?? String(error)})`;
}

/** The configured verifier, or null when no AUTH_JWT_SECRET, AUTH_JWT_PUBLIC_KEY or AUTH_JWKS_URL is set. */
export async function openVerifier(config: Config, log: Log, now: () => number): Promise<TokenVerifier | null> {
  if (config.authJwtSecret === null && config.authJwtPublicKey === null && config.authJwksUrl === null) return null;
  jose ??= await import("jose");
  let key: Parameters<typeof jwtVerify>[1];
  let algorithms: string[];
  let jwks: JwksCache | null = null;
  if (config.authJwtSecret !== null) {
    key = new TextEncoder().encode(config.authJwtSecret);
    algorithms = ["HS256"];
  } else if (config.authJwtPublicKey !== null) {
    const alg = publicKeyAlgorithm(config.authJwtPublicKey)!;
    key = await jose.importSPKI(pemText(config.authJwtPublicKey), alg);
    algorithms = [alg];
  } else {
    jwks = new JwksCache(config.authJwksUrl!, Math.min(JWKS_FETCH_TIMEOUT_MS, Math.floor(config.helloTimeoutMs / 2)), log, now);
    key = jwks.getKey;
    algorithms = ["RS256", "ES256", "EdDSA"];
  }
  const options: JWTVerifyOptions = {
    algorithms,
    clockTolerance: CLOCK_SKEW_SECONDS,
    requiredClaims: ["exp", "sub"],
    ...(config.authJwtIssuer !== null ? { issuer: config.authJwtIssuer } : {}),
    ...(config.authJwtAudience !== null ? { audience: config.authJwtAudience } : {}),
  };
  return {
    async verify(token, now) {
      if (Buffer.byteLength(token) > TOKEN_MAX_BYTES) return { ok: false, why: `a token is at most ${TOKEN_MAX_BYTES} bytes` };
      const verifyWith = async (k: typeof key) => (await jose.jwtVerify(token, k as never, { ...options, currentDate: new Date(now) })).payload;
      try {
        return readClaims(await verifyWith(key));
      } catch (error) {
        // A token with no `kid` while the JWKS holds several keys of its kind (a rotation): each is tried.
        if (error instanceof jose.errors.JWKSMultipleMatchingKeys) {
          for await (const candidate of error) {
            try {
              return readClaims(await verifyWith(candidate));
            } catch (failure) {
              // Another key's signature: try the next; the right key's other failure (expired, say) is the answer.
              if (!(failure instanceof jose.errors.JWSSignatureVerificationFailed)) return { ok: false, why: whyRefused(failure) };
            }
          }
          return { ok: false, why: "the token's signature does not verify" };
        }
        return { ok: false, why: whyRefused(error) };
      }
    },
    close() {
      jwks?.close();
    },
  };
}
