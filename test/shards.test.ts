// Membership and sharded ownership across separate processes (real etcd, outside observer):
// 3-4 instances share 64 shards; join, graceful leave (app close), SIGKILL, SIGSTOP past the TTL.
// The observer reads etcd directly (shard keys, member keys) and checks every worker's reported
// work: no shard was ever worked on by two owners at once, every shard owned again in bounded
// time, ownership matches the assignment rule exactly (so only the needed shards moved).
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Etcd3 } from 'etcd3';
import { etcdFixture } from './harness/etcd.js';
import type { NodeProcess } from './harness/processes.js';
import { delay, eventually, rawClient, uniqueNamespace } from './support/apps.js';
import { assertNoStrays, leaseSet } from './support/faults-observer.js';
import { spawnWorker } from './support/workers.js';
import { assignShards, ruleIds, type RuleMember } from '../lib/shards/assignment.js';

const TTL = 2;
const SHARDS = 64;
const GROUP = 'tenants';

/** What etcd says: per shard, its keys oldest first (lease hex); the live members (lease hex -> identity). */
async function readEtcd(client: Etcd3, ns: string) {
  const shardPrefix = `${ns}_coordination:shards:${GROUP}:`;
  const kvs = await client.getAll().prefix(shardPrefix).exec();
  const keys = new Map<number, Array<{ lease: string; rev: bigint }>>();
  for (const kv of kvs.kvs) {
    const [shard, lease] = kv.key.toString().slice(shardPrefix.length).split('/');
    const list = keys.get(Number(shard)) ?? [];
    list.push({ lease: lease!, rev: BigInt(kv.create_revision) });
    keys.set(Number(shard), list);
  }
  for (const list of keys.values()) list.sort((a, b) => (a.rev < b.rev ? -1 : 1));
  const memberPrefix = `${ns}_coordination:members/`;
  const members = new Map<string, string>();
  const records: RuleMember[] = [];
  for (const kv of (await client.getAll().prefix(memberPrefix).exec()).kvs) {
    const id = kv.key.toString().slice(memberPrefix.length);
    const identity = (JSON.parse(kv.value.toString()) as { identity: string }).identity;
    members.set(id, identity);
    records.push({ id, identity, revision: BigInt(kv.create_revision) });
  }
  return { keys, members, ruleIds: ruleIds(records) };
}

/** The last owned set a worker reported. */
function lastOwned(worker: NodeProcess): { shards: number[]; self: string | null } | undefined {
  const m = [...worker.messages].reverse().find((x) => x.type === 'owned');
  return m ? { shards: m.shards as number[], self: m.self as string | null } : undefined;
}

/**
 * Settled: every shard has exactly one key, held by a live member; the owners are exactly what
 * the rule assigns for the live members; each live worker reports exactly its shards in etcd.
 * Returns the owner (rule id: the identity) per shard.
 */
async function settled(client: Etcd3, ns: string, live: NodeProcess[]): Promise<string[] | undefined> {
  const { keys, members, ruleIds: ids } = await readEtcd(client, ns);
  if (members.size !== live.length) return undefined;
  const rule = assignShards(GROUP, SHARDS, [...ids.values()]);
  const sorted = [...ids.values()].sort();
  const owners: string[] = [];
  for (let s = 0; s < SHARDS; s++) {
    const list = keys.get(s);
    if (!list || list.length !== 1 || ids.get(list[0]!.lease) !== sorted[rule[s]!]) return undefined;
    owners.push(list[0]!.lease);
  }
  for (const worker of live) {
    const owned = lastOwned(worker);
    if (!owned?.self || !members.has(owned.self)) return undefined;
    const inEtcd = owners.flatMap((o, s) => (o === owned.self ? [s] : []));
    if (JSON.stringify(inEtcd) !== JSON.stringify(owned.shards)) return undefined;
  }
  // By rule id (the identity), so a member that renewed its session counts as the same owner.
  return owners.map((lease) => ids.get(lease)!);
}

async function waitSettled(client: Etcd3, ns: string, live: NodeProcess[], timeoutMs: number, what: string): Promise<{ owners: string[]; ms: number }> {
  const start = Date.now();
  let owners: string[] | undefined;
  await eventually(async () => (owners = await settled(client, ns, live)) !== undefined, timeoutMs, `settled after ${what}`);
  return { owners: owners!, ms: Date.now() - start };
}

/** Per shard, the work intervals every worker reported; two different tokens must never overlap. */
function assertNoOverlap(workers: NodeProcess[]): number {
  const byShard = new Map<number, Array<{ worker: string; token: string; start: number; end: number }>>();
  for (const worker of workers) {
    for (const m of worker.messages) {
      if (m.type !== 'work') continue;
      for (const [shard, token, start, end] of m.runs as Array<[number, string, number, number]>) {
        const list = byShard.get(shard) ?? [];
        list.push({ worker: worker.name, token, start, end });
        byShard.set(shard, list);
      }
    }
  }
  let runs = 0;
  for (const [shard, list] of byShard) {
    list.sort((a, b) => a.start - b.start);
    runs += list.length;
    let latest = list[0]!;
    for (const run of list.slice(1)) {
      if (run.token !== latest.token) {
        assert.ok(run.start >= latest.end, `shard ${shard}: ${run.worker} (token ${run.token}) worked from ${run.start} while ${latest.worker} (token ${latest.token}) worked until ${latest.end}`);
        assert.ok(BigInt(run.token) > BigInt(latest.token), `shard ${shard}: fencing tokens grow from owner to owner`);
      }
      if (run.end >= latest.end) latest = run;
    }
  }
  return runs;
}

const movedBetween = (a: string[], b: string[]) => a.filter((owner, s) => owner !== b[s]).length;

describe('membership and shards across processes (real etcd)', () => {
  const etcd = etcdFixture();
  const workers: NodeProcess[] = [];
  after(async () => {
    await Promise.all(workers.map((w) => w.kill('SIGKILL').catch(() => undefined)));
  });

  function start(ns: string, identity: string): NodeProcess {
    const worker = spawnWorker({ use: ['shards'], hosts: etcd().endpoint, namespace: ns, identity, ttl: TTL, election: 'leader', shards: SHARDS, requestTimeout: 1_000 });
    workers.push(worker);
    return worker;
  }

  it('spreads 64 shards over 3-4 instances, rebalances on join, graceful leave, SIGKILL and SIGSTOP without two owners at once', async (t) => {
    const ns = uniqueNamespace('shards');
    const client = rawClient(etcd().endpoint);
    try {
      const leasesBefore = await leaseSet(client);
      const [a, b, c] = ['a', 'b', 'c'].map((id) => start(ns, id));
      await Promise.all([a, b, c].map((w) => w!.waitForMessage('ready', 30_000)));
      let live = [a!, b!, c!];
      let { owners, ms } = await waitSettled(client, ns, live, 30_000, 'start');
      t.diagnostic(`3 instances: settled ${ms} ms after the last was ready`);
      const perMember = new Map<string, number>();
      for (const o of owners) perMember.set(o, (perMember.get(o) ?? 0) + 1);
      assert.ok(Math.max(...perMember.values()) <= Math.ceil(SHARDS / 3) + 1, `balanced: ${[...perMember.values()]}`);

      // Membership and candidates, as a worker sees them, match etcd.
      a!.send({ type: 'members' });
      const listed = await a!.waitForMessage('members', 10_000);
      const { members } = await readEtcd(client, ns);
      assert.deepEqual(new Set((listed.members as Array<{ id: string }>).map((m) => m.id)), new Set(members.keys()));
      assert.deepEqual((listed.members as Array<{ identity: string }>).map((m) => m.identity).sort(), ['a', 'b', 'c']);
      a!.send({ type: 'set-value', value: { zone: 'eu-1' } });
      await a!.waitForMessage('value-set', 10_000);
      b!.send({ type: 'members' });
      const withValue = await b!.waitForMessage('members', 10_000);
      assert.deepEqual((withValue.members as Array<{ identity: string; value: unknown }>).find((m) => m.identity === 'a')?.value, { zone: 'eu-1' });
      c!.send({ type: 'candidates' });
      const cands = (await c!.waitForMessage('candidates', 10_000)).candidates as Array<{ key: string; identity: string }>;
      const inEtcd = await client.getAll().prefix(`${ns}leader/`).sort('Create', 'Ascend').keys();
      assert.deepEqual(cands.map((x) => x.key), inEtcd, 'candidates in queue order, leader first');
      assert.equal(cands.length, 3);

      // Join: only the shards the rule moves, move.
      const d = start(ns, 'd');
      await d.waitForMessage('ready', 30_000);
      live = [a!, b!, c!, d];
      const joined = await waitSettled(client, ns, live, 30_000, 'join');
      const movedOnJoin = movedBetween(owners, joined.owners);
      t.diagnostic(`join: settled in ${joined.ms} ms, ${movedOnJoin} shards moved (ideal ${SHARDS / 4})`);
      assert.ok(movedOnJoin <= 2 * Math.ceil(SHARDS / 4) + 2, `moved ${movedOnJoin}`);
      owners = joined.owners;

      // Graceful leave: app close withdraws the member, drains, releases; no TTL wait.
      d.send({ type: 'close' });
      const leaveAt = Date.now();
      live = [a!, b!, c!];
      const left = await waitSettled(client, ns, live, 30_000, 'graceful leave');
      t.diagnostic(`graceful leave: settled ${Date.now() - leaveAt} ms after close was sent, ${movedBetween(owners, left.owners)} shards moved`);
      assert.ok(Date.now() - leaveAt < TTL * 1000 + 5_000, 'graceful leave does not wait for a lease to expire (loose bound for a loaded machine)');
      owners = left.owners;

      // SIGKILL: the victim's shards move once its lease expired.
      const killedAt = Date.now();
      await c!.kill('SIGKILL');
      live = [a!, b!];
      const afterKill = await waitSettled(client, ns, live, (TTL + 15) * 1000, 'SIGKILL');
      const killMs = Date.now() - killedAt;
      t.diagnostic(`SIGKILL: every shard owned again ${killMs} ms after the kill (TTL ${TTL} s), ${movedBetween(owners, afterKill.owners)} moved`);
      assert.ok(killMs >= TTL * 1000 - 600, `shards moved ${killMs} ms after the kill: before the lease could expire?`);
      owners = afterKill.owners;

      // SIGSTOP past the TTL: b is frozen, a takes everything; b learns on resume and rejoins.
      const e = start(ns, 'e');
      await e.waitForMessage('ready', 30_000);
      live = [a!, b!, e];
      owners = (await waitSettled(client, ns, live, 30_000, 'join of e')).owners;
      process.kill(b!.pid!, 'SIGSTOP');
      const frozenAt = Date.now();
      try {
        await waitSettled(client, ns, [a!, e], (TTL + 15) * 1000, 'SIGSTOP');
        t.diagnostic(`SIGSTOP: every shard owned again ${Date.now() - frozenAt} ms after the freeze`);
      } finally {
        process.kill(b!.pid!, 'SIGCONT');
      }
      const resumedAt = Date.now();
      const back = await waitSettled(client, ns, live, 30_000, 'resume of b');
      t.diagnostic(`resume: b back in the rotation ${Date.now() - resumedAt} ms after SIGCONT (${movedBetween(owners, back.owners)} shards differ from before the freeze)`);
      const lostOnResume = b!.messages.find((m) => m.type === 'owned' && Number(m.at) >= resumedAt && (m.shards as number[]).length === 0);
      assert.ok(lostOnResume, 'the frozen worker reported its shards lost on resume');

      // Close everything; nothing of ours left in etcd; no two owners ever worked on one shard at once.
      for (const w of live) w.send({ type: 'close' });
      await Promise.all(live.map((w) => w.waitForMessage('closed', 20_000)));
      await delay(100);
      const runs = assertNoOverlap(workers.filter((w) => w.name !== undefined));
      t.diagnostic(`${runs} work runs checked for overlap`);
      assert.ok(runs > 1000, 'enough work was observed to mean something');
      await assertNoStrays(client, ns, leasesBefore, (TTL + 5) * 1000);
    } finally {
      client.close();
    }
  });
});
