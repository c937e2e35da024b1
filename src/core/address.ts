/**
 * The key every per-address rule counts by (§6, §10, §11.4): connection caps, hello and
 * room-start buckets, address bans. An IPv4 address is one; an IPv6 host owns a whole /64 and
 * changes its address within it at will (privacy addresses, RFC 8981), so the /64 is one.
 */

/** The bits of an IPv6 address that name its host's network: what one IPv6 client owns. */
const IPV6_PREFIX_BITS = 64;
/** 16-bit groups of an IPv6 address, and of its /64 prefix. */
const IPV6_GROUPS = 8;
const PREFIX_GROUPS = IPV6_PREFIX_BITS / 16;
/** The group before an IPv4-mapped address's last two (::ffff:a.b.c.d): RFC 4291 §2.5.5.2. */
const IPV4_MAPPED_MARK = 0xffff;

/** An IPv4 address as node:net's isIP takes one: four decimal numbers 0–255, no leading zeros. */
export const IPV4 = /^(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
/** One written group of an IPv6 address. */
const HEX_GROUP = /^[0-9a-f]{1,4}$/i;

/** An IPv4 address's two 16-bit groups; null if it is not one. */
function ipv4Groups(s: string): number[] | null {
  if (!IPV4.test(s)) return null;
  const [a, b, c, d] = s.split(".").map(Number) as [number, number, number, number];
  return [(a << 8) | b, (c << 8) | d];
}

/** Groups written out, `1:2` → [1, 2]; the last may be an embedded IPv4 address. Null if one is malformed. */
function groupsOf(part: string, last: boolean): number[] | null {
  if (part === "") return [];
  const out: number[] = [];
  const written = part.split(":");
  for (const [i, group] of written.entries()) {
    if (HEX_GROUP.test(group)) out.push(parseInt(group, 16));
    else if (last && i === written.length - 1 && ipv4Groups(group)) out.push(...ipv4Groups(group)!);
    else return null;
  }
  return out;
}

/**
 * An IPv6 address's eight 16-bit groups, any zone (`%eth0`) left off; null if it is not one.
 *   ipv6Groups("2001:db8::1") // => [0x2001, 0xdb8, 0, 0, 0, 0, 0, 1]
 */
function ipv6Groups(s: string): number[] | null {
  const address = s.split("%")[0]!;
  const halves = address.split("::");
  if (halves.length > 2) return null;
  if (halves.length === 1) {
    const groups = groupsOf(address, true);
    return groups?.length === IPV6_GROUPS ? groups : null;
  }
  const head = groupsOf(halves[0]!, false);
  const tail = groupsOf(halves[1]!, true);
  if (!head || !tail || head.length + tail.length > IPV6_GROUPS - 1) return null;
  return [...head, ...Array<number>(IPV6_GROUPS - head.length - tail.length).fill(0), ...tail];
}

/**
 * The key a client address counts under: IPv4 as it is; an IPv4-mapped IPv6 address as its IPv4
 * (a dual-stack socket reports IPv4 clients so); other IPv6 as its /64, in RFC 5952's form; anything
 * else (`unknown`) as it is.
 *   addressKey("192.0.2.7") // => "192.0.2.7"
 *   addressKey("::ffff:c000:207") // => "192.0.2.7"
 *   addressKey("2001:DB8:1:2:a:b:c:d") // => "2001:db8:1:2::/64"
 *   addressKey("2001:db8::1") // => "2001:db8::/64"
 */
export function addressKey(ip: string): string {
  if (!ip.includes(":")) return ip;
  const groups = ipv6Groups(ip);
  if (!groups) return ip;
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === IPV4_MAPPED_MARK) {
    return [groups[6]! >> 8, groups[6]! & 0xff, groups[7]! >> 8, groups[7]! & 0xff].join(".");
  }
  // The host half is all zeros, so the longest run of zero groups is the one that ends the
  // address (RFC 5952 §4.2.3): the prefix's own trailing zeros join it.
  const prefix = groups.slice(0, PREFIX_GROUPS);
  while (prefix.at(-1) === 0) prefix.pop();
  return `${prefix.map((g) => g.toString(16)).join(":")}::/${IPV6_PREFIX_BITS}`;
}
