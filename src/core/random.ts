/**
 * Random ids, tokens and codes. From Web Crypto, a global: importing node:crypto cost ~12 ms of
 * the compiled binary's cold start, and this is all the server needs of it on its common paths.
 */

/** `bytes` random bytes, base64url: `randomId(9) // => "mG3vQ1x-Zk8c"` (12 characters). */
export function randomId(bytes: number): string {
  return Buffer.from(crypto.getRandomValues(new Uint8Array(bytes))).toString("base64url");
}
