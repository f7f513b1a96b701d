import { isIPv4, isIPv6 } from 'node:net';

/**
 * The key per-address limits count a request under, from `req.ip` (which honours X-Forwarded-For
 * only as far as TRUST_PROXY allows). IPv4 addresses count one by one; an IPv6 address counts
 * under its /64, the smallest block a site is usually given, so a client cannot step around its
 * limit by hopping between the addresses of its own network. IPv4-mapped IPv6 counts as IPv4.
 */
export function addressKey(ip: string | undefined): string {
  if (!ip) return 'unknown';
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped?.[1] && isIPv4(mapped[1])) return mapped[1];
  if (isIPv4(ip)) return ip;
  const address = ip.split('%')[0] ?? ip;
  if (!isIPv6(address)) return ip.slice(0, 64);
  return `${ipv6Groups(address.toLowerCase()).slice(0, 4).join(':')}::/64`;
}

/** The eight 16-bit groups of an IPv6 address, `::` expanded, leading zeros dropped. */
function ipv6Groups(address: string): string[] {
  const groups = (part: string) => (part === '' ? [] : part.split(':').flatMap((g) => (g.includes('.') ? ['0', '0'] : [g])));
  const [head = '', tail] = address.split('::');
  const left = groups(head);
  const right = tail === undefined ? [] : groups(tail);
  const all = tail === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  return all.map((g) => g.replace(/^0+(?=.)/, ''));
}
