/**
 * The stable hash that maps an application key to a shard, written so any
 * language can compute it:
 *
 *   shard = fnv1a64(utf8(`${group}:${key}`)) mod shards
 *
 * with FNV-1a 64 (offset basis 0xcbf29ce484222325, prime 0x100000001b3, over
 * the UTF-8 bytes, unsigned 64-bit arithmetic) and `mod` on the unsigned
 * 64-bit result. Example: `shardOfKey('tenants', 'acme', 1024)` is the value
 * of `fnv1a64("tenants:acme") % 1024`.
 *
 * Written by hand (about 20 lines) because it must be exactly this function,
 * in plain 32-bit arithmetic (BigInt is ~50x slower and the rendezvous rule
 * hashes N x members strings on every membership change).
 */
export function fnv1a64(text: string): { hi: number; lo: number } {
  const bytes = Buffer.from(text, 'utf8');
  // 0xcbf29ce484222325 as two unsigned 32-bit halves.
  let hi = 0xcbf29ce4;
  let lo = 0x84222325;
  for (let i = 0; i < bytes.length; i++) {
    lo = (lo ^ bytes[i]!) >>> 0;
    // (hi:lo) * 0x100000001b3 mod 2^64 = (hi:lo) * 0x1b3 + ((hi:lo) << 40)
    const loProduct = lo * 0x1b3; // < 2^41: exact in a double
    const carry = Math.floor(loProduct / 0x1_0000_0000);
    hi = (Math.imul(hi, 0x1b3) + carry + ((lo << 8) >>> 0)) >>> 0;
    lo = loProduct >>> 0;
  }
  return { hi, lo };
}

/** The unsigned 64-bit FNV-1a hash as a BigInt (for documentation and cross-checks). */
export function fnv1a64BigInt(text: string): bigint {
  const { hi, lo } = fnv1a64(text);
  return (BigInt(hi) << 32n) | BigInt(lo);
}

/** `fnv1a64(`${group}:${key}`) mod shards`: the shard of an application key (see the file comment). */
export function shardOfKey(group: string, key: string, shards: number): number {
  const { hi, lo } = fnv1a64(`${group}:${key}`);
  // (hi * 2^32 + lo) mod n without BigInt: 2^32 mod n, then Horner with exact doubles (n < 2^20).
  const pow = 0x1_0000_0000 % shards;
  return ((hi % shards) * pow + (lo % shards)) % shards;
}

/** murmur3's 32-bit finaliser: spreads every input bit over the output (internal scores only). */
export function mix32(value: number): number {
  let h = value >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
