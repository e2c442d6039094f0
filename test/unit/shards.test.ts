// The pure parts of sharded ownership: the documented key-to-shard hash and the assignment rule
// (deterministic, balanced, sticky).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { fnv1a64BigInt, shardOfKey } from '../../lib/shards/shard-hash.js';
import { assignShards, ruleIds, shardsAssignedTo } from '../../lib/shards/assignment.js';

/** The reference FNV-1a 64 in BigInt, straight from the definition. */
function referenceFnv(text: string): bigint {
  let h = 0xcbf29ce484222325n;
  for (const byte of Buffer.from(text, 'utf8')) {
    h ^= BigInt(byte);
    h = (h * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return h;
}

const ids = (n: number, prefix = 'm') => Array.from({ length: n }, (_, i) => `${prefix}${(i * 7919 + 13).toString(16)}`);

function counts(owners: Int32Array, members: number): number[] {
  const c = new Array<number>(members).fill(0);
  for (const o of owners) c[o]!++;
  return c;
}

/** Shards whose owner (by id) differs between two assignments. */
function moved(a: Int32Array, aIds: string[], b: Int32Array, bIds: string[]): number {
  const sa = [...aIds].sort();
  const sb = [...bIds].sort();
  let n = 0;
  for (let s = 0; s < a.length; s++) if (sa[a[s]!] !== sb[b[s]!]) n++;
  return n;
}

describe('key-to-shard hash (FNV-1a 64, documented)', () => {
  it('matches the published FNV-1a 64 test vectors and a BigInt reference', () => {
    assert.equal(fnv1a64BigInt(''), 0xcbf29ce484222325n);
    assert.equal(fnv1a64BigInt('a'), 0xaf63dc4c8601ec8cn);
    assert.equal(fnv1a64BigInt('foobar'), 0x85944171f73967e8n);
    for (const text of ['tenants:acme', 'tenants:é中🙂', 'x'.repeat(300), 'g:12345']) assert.equal(fnv1a64BigInt(text), referenceFnv(text));
  });

  it('shard = hash mod N, for N up to a few thousand', () => {
    for (const n of [1, 7, 64, 1000, 1024, 4096]) {
      for (const key of ['acme', 'tenant-17', '', 'ünïcode']) {
        assert.equal(shardOfKey('tenants', key, n), Number(referenceFnv(`tenants:${key}`) % BigInt(n)));
      }
    }
  });
});

describe('assignment rule (rendezvous with bounded loads)', () => {
  it('is deterministic and independent of the order of the member list', () => {
    const members = ids(5);
    const a = assignShards('tenants', 64, members);
    const b = assignShards('tenants', 64, [...members].reverse());
    assert.deepEqual([...a], [...b]);
    assert.ok(a.every((o) => o >= 0));
  });

  it('no member gets more than ceil(N / members); every shard has one', () => {
    for (const [n, m] of [[64, 3], [64, 5], [1024, 100], [1024, 7], [100, 1], [10, 20]] as const) {
      const owners = assignShards('g', n, ids(m));
      assert.ok(owners.every((o) => o >= 0 && o < m), `${n}x${m}: every shard assigned`);
      assert.ok(Math.max(...counts(owners, m)) <= Math.ceil(n / m), `${n}x${m}: balanced`);
    }
  });

  it('moves about N / members shards on a join or a leave (sticky)', () => {
    for (const [n, m] of [[64, 3], [64, 5], [1024, 10], [1024, 100]] as const) {
      const before = ids(m);
      const joined = [...before, 'newcomer'];
      const left = before.slice(1);
      const a = assignShards('tenants', n, before);
      const onJoin = moved(a, before, assignShards('tenants', n, joined), joined);
      const onLeave = moved(a, before, assignShards('tenants', n, left), left);
      const ideal = n / (m + 1);
      // What must move: the newcomer's share on a join, the leaver's shards on a leave.
      assert.ok(onJoin >= Math.floor(ideal), `${n}x${m} join moved ${onJoin}`);
      assert.ok(onJoin <= 2 * Math.ceil(n / m) + 2, `${n}x${m} join moved ${onJoin} (ideal ${ideal.toFixed(1)})`);
      assert.ok(onLeave <= 2 * Math.ceil(n / m) + 2, `${n}x${m} leave moved ${onLeave} (ideal ${(n / m).toFixed(1)})`);
    }
  });

  it('gives one member its own shards only (the set view)', () => {
    const members = ids(4);
    const owners = assignShards('g', 64, members);
    const sorted = [...members].sort();
    const mine = shardsAssignedTo('g', 64, members, sorted[2]!);
    assert.deepEqual([...mine].sort((x, y) => x - y), [...owners.keys()].filter((s) => owners[s] === 2));
    assert.equal(shardsAssignedTo('g', 64, members, 'stranger').size, 0);
  });

  it('computes 1,024 shards over 100 members quickly enough to run on every change', () => {
    const start = performance.now();
    assignShards('bench', 1024, ids(100));
    // Not a speed assertion: a sanity bound far above the measured ~20 ms, against accidental O(n^3).
    assert.ok(performance.now() - start < 5_000);
  });
});

describe('rule ids (identity, stable across a session renewal)', () => {
  it('uses the identity; of two records with one identity the newest keeps it', () => {
    const ids = ruleIds([
      { id: 'a1', identity: 'a', revision: 5n },
      { id: 'b1', identity: 'b', revision: 6n },
      { id: 'a2', identity: 'a', revision: 9n },
    ]);
    assert.deepEqual([...ids], [['a1', 'a#a1'], ['b1', 'b'], ['a2', 'a']]);
  });

  it('a member that renews its session keeps its shards once the old record is gone', () => {
    const before = assignShards('tenants', 64, [...ruleIds([{ id: 'x1', identity: 'x', revision: 1n }, { id: 'y1', identity: 'y', revision: 2n }]).values()]);
    const after = assignShards('tenants', 64, [...ruleIds([{ id: 'y1', identity: 'y', revision: 2n }, { id: 'x2', identity: 'x', revision: 7n }]).values()]);
    assert.deepEqual([...after], [...before]);
  });
});
