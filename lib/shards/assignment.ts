import { fnv1a64, mix32 } from './shard-hash.js';

/**
 * The assignment rule of a shard group: rendezvous (highest random weight)
 * hashing with bounded loads, decided from the member list alone, so every
 * member computes the same answer without talking to the others.
 *
 * - Every (shard, member) pair gets a pseudo-random score from the group
 *   name, the shard number and the member id.
 * - Pairs are taken in descending score order; a pair is kept when its shard
 *   has no member yet and its member has fewer than ceil(N / members) shards.
 *
 * Deterministic (ties broken by member id), balanced (no member gets more
 * than ceil(N / members)), and sticky: a pair's score never changes, so a join
 * takes for the new member mostly its own best pairs and a leave hands the
 * leaver's shards to their next best members; the unit tests measure the
 * moves (about N / members per join or leave, plus a small cascade from the
 * capacity bound). Plain rendezvous hashing would move exactly N / members
 * but lets one member of 100 get ~2x its share, over the ceil(N/M)+1 bound.
 *
 * Scores are internal: other languages need only the key-to-shard hash
 * ({@link shardOfKey}) and read who owns a shard from etcd.
 */
export function assignShards(group: string, shards: number, memberIds: readonly string[]): Int32Array {
  const owners = new Int32Array(shards).fill(-1);
  const ids = [...new Set(memberIds)].sort();
  const m = ids.length;
  if (m === 0) return owners;
  const capacity = Math.ceil(shards / m);
  const memberHashes = ids.map((id) => fnv1a64(`${group}:${id}`));
  // Pack (score, pair index) in one double: score * 2^21 + index, index < 2^21 pairs.
  const pairs = shards * m;
  if (pairs >= 2 ** 21) return assignLarge(owners, shards, memberHashes, capacity);
  const packed = new Float64Array(pairs);
  for (let s = 0; s < shards; s++) {
    const shardSalt = mix32(Math.imul(s + 1, 0x9e3779b1));
    for (let i = 0; i < m; i++) {
      const { hi, lo } = memberHashes[i]!;
      const score = mix32(mix32(lo ^ shardSalt) ^ hi);
      packed[s * m + i] = score * 2 ** 21 + (s * m + i);
    }
  }
  packed.sort();
  const load = new Int32Array(m);
  let assigned = 0;
  for (let k = pairs - 1; k >= 0 && assigned < shards; k--) {
    const index = packed[k]! % 2 ** 21;
    const s = Math.floor(index / m);
    const i = index - s * m;
    if (owners[s] !== -1 || load[i]! >= capacity) continue;
    owners[s] = i;
    load[i]!++;
    assigned++;
  }
  return owners;
}

/** The same rule for more than 2^21 pairs (e.g. 4096 shards x 600 members): sort pair objects. */
function assignLarge(owners: Int32Array, shards: number, memberHashes: { hi: number; lo: number }[], capacity: number): Int32Array {
  const m = memberHashes.length;
  const scored: { score: number; s: number; i: number }[] = [];
  for (let s = 0; s < shards; s++) {
    const shardSalt = mix32(Math.imul(s + 1, 0x9e3779b1));
    for (let i = 0; i < m; i++) {
      const { hi, lo } = memberHashes[i]!;
      scored.push({ score: mix32(mix32(lo ^ shardSalt) ^ hi), s, i });
    }
  }
  scored.sort((a, b) => b.score - a.score || a.s * m + a.i - (b.s * m + b.i));
  const load = new Int32Array(m);
  for (const { s, i } of scored) {
    if (owners[s] !== -1 || load[i]! >= capacity) continue;
    owners[s] = i;
    load[i]!++;
  }
  return owners;
}

/**
 * The shards `memberId` is assigned by {@link assignShards}. The last answer per group is
 * shared by every application of the process (the bench runs 100 members in a few processes).
 */
const lastByGroup = new Map<string, { key: string; ids: string[]; owners: Int32Array }>();

export function shardsAssignedTo(group: string, shards: number, memberIds: readonly string[], memberId: string): Set<number> {
  const ids = [...new Set(memberIds)].sort();
  const key = ids.join(',');
  const cacheKey = `${group}\u0000${shards}`;
  let last = lastByGroup.get(cacheKey);
  if (last?.key !== key) {
    last = { key, ids, owners: assignShards(group, shards, ids) };
    lastByGroup.set(cacheKey, last);
  }
  const index = last.ids.indexOf(memberId);
  const mine = new Set<number>();
  if (index < 0) return mine;
  last.owners.forEach((owner, shard) => {
    if (owner === index) mine.add(shard);
  });
  return mine;
}

/** What the rule needs of a member record (a subset of `MemberInfo`). */
export interface RuleMember {
  /** Lease hex of the member's session. */
  readonly id: string;
  readonly identity: string;
  /** Create revision of the member record. */
  readonly revision: bigint;
}

/**
 * The id each member has in the rule, by lease hex: its identity, so a
 * member that renews its session (a new lease) keeps its shards' assignment.
 * When two live records share an identity (a renewed session whose old
 * record has not expired yet, or two instances configured alike), the newest
 * keeps the identity and the others become `identity#leaseHex`: every member
 * still gets its own share, and every member computes the same ids.
 */
export function ruleIds(members: readonly RuleMember[]): Map<string, string> {
  const newest = new Map<string, RuleMember>();
  for (const member of members) {
    const seen = newest.get(member.identity);
    if (!seen || member.revision > seen.revision) newest.set(member.identity, member);
  }
  const ids = new Map<string, string>();
  for (const member of members) ids.set(member.id, newest.get(member.identity) === member ? member.identity : `${member.identity}#${member.id}`);
  return ids;
}
