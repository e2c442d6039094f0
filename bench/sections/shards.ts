// 7. Sharded ownership: 100 members x 1,024 shards. Members are application instances
// (own Nest app, etcd client and session each) packed into a few processes to fit 2 cores.
// An outside client polls etcd until the group is settled (every shard has exactly one key,
// held by the member the rule assigns it to for the live member list), and etcd's own
// metrics count the requests and watch events of each phase.
import { Etcd3 } from 'etcd3';
import { spawnNodeScript, type NodeProcess } from '../../test/harness/processes.js';
import { assignShards, ruleIds } from '../../lib/shards/assignment.js';
import type { BenchContext } from '../context.js';
import { counterDelta, etcdCounters, type EtcdCounters } from '../metrics.js';
import { round } from '../stats.js';

export interface ShardPhase {
  /** ms from the event (group opened by every member / close sent / SIGKILL) to settled, as polled from outside. */
  settleMs: number;
  /** Shards whose owner changed. */
  moved: number;
  /** etcd unary requests in the phase (the observer's own polling subtracted), and per moved shard. */
  etcdRequests: number;
  requestsPerMove: number;
  /** Watch events etcd sent in the phase (all watchers, member-list watches included), and per moved shard. */
  watchEvents: number;
  watchEventsPerMove: number;
}

export interface ShardsResult {
  method: string;
  members: number;
  shards: number;
  ttlSeconds: number;
  /** Most shards one member owned once settled (bound: ceil(shards / members) + 1). */
  maxPerMember: number;
  start: ShardPhase & { fromFirstStartMs: number };
  gracefulLeave: ShardPhase;
  crash: ShardPhase;
}

const GROUP = 'bench';

let lastProblem = '';
/** Range requests the observer sent (subtracted from etcd's counts). */
let observerReads = 0;

/** Owner (rule id: the identity) per shard when settled, else undefined (the reason in lastProblem). Two reads. */
async function settledOwners(client: Etcd3, ns: string, shards: number, members: number): Promise<string[] | undefined> {
  const memberPrefix = `${ns}_coordination:members/`;
  observerReads++;
  const records = (await client.getAll().prefix(memberPrefix).exec()).kvs.map((kv) => ({
    id: kv.key.toString().slice(memberPrefix.length),
    identity: (JSON.parse(kv.value.toString()) as { identity: string }).identity,
    revision: BigInt(kv.create_revision),
  }));
  const byLease = ruleIds(records);
  const ids = [...byLease.values()];
  if (ids.length !== members) {
    const extra = records.filter((r) => records.some((o) => o !== r && o.identity === r.identity)).map((r) => r.identity);
    return void (lastProblem = `${ids.length} members of ${members} (member-0 ${records.some((r) => r.identity === 'member-0') ? 'still listed' : 'gone'}; duplicates: ${extra.join(',') || 'none'})`);
  }
  const shardPrefix = `${ns}_coordination:shards:${GROUP}:`;
  observerReads++;
  const keys = await client.getAll().prefix(shardPrefix).keys();
  if (keys.length !== shards) return void (lastProblem = `${keys.length} shard keys for ${shards} shards`);
  const owners = new Array<string>(shards);
  for (const key of keys) {
    const [shard, lease] = key.slice(shardPrefix.length).split('/');
    if (owners[Number(shard)] !== undefined) return void (lastProblem = `shard ${shard} has two keys`);
    owners[Number(shard)] = lease!;
  }
  const sorted = [...ids].sort();
  const rule = assignShards(GROUP, shards, ids);
  const wrong = owners.filter((o, s) => byLease.get(o) !== sorted[rule[s]!]).length;
  if (wrong > 0) return void (lastProblem = `${wrong} shards not (yet) with the member the rule assigns`);
  // By rule id (identity): a member that renewed its session still owns "the same" shards.
  return owners.map((o) => byLease.get(o)!);
}

export async function shardsSection(ctx: BenchContext): Promise<ShardsResult> {
  const members = ctx.quick ? 20 : 100;
  const shards = 1024;
  const ttl = 5;
  const ns = `bench-shards-${process.pid}/`;
  const client = new Etcd3({ hosts: ctx.etcd.endpoint });
  const hosts: NodeProcess[] = [];
  let polls = 0;
  const waitSettled = async (expected: number, timeoutMs: number): Promise<string[]> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      polls++;
      const owners = await settledOwners(client, ns, shards, expected);
      if (owners) return owners;
      if (Date.now() > deadline) throw new Error(`shards not settled over ${expected} members within ${timeoutMs} ms (last seen: ${lastProblem})`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  const waitMembers = async (expected: number, timeoutMs: number) => {
    const prefix = `${ns}_coordination:members/`;
    const deadline = Date.now() + timeoutMs;
    while ((observerReads++, (await client.getAll().prefix(prefix).keys()).length) !== expected) {
      if (Date.now() > deadline) throw new Error(`${expected} members not registered within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  const phase = async (before: EtcdCounters, pollsBefore: number, settleMs: number, moved: number): Promise<ShardPhase> => {
    const delta = counterDelta(before, await etcdCounters(ctx.etcd.clientUrl));
    // The observer's own reads (and the one of etcdCounters' metrics scrape is HTTP, not gRPC).
    const etcdRequests = delta.unaryTotal - (observerReads - pollsBefore);
    return {
      settleMs: round(settleMs, 0),
      moved,
      etcdRequests,
      requestsPerMove: round(etcdRequests / Math.max(1, moved), 2),
      watchEvents: delta.watchEventsSent,
      watchEventsPerMove: round(delta.watchEventsSent / Math.max(1, moved), 2),
    };
  };
  const spawnHost = (first: number, count: number) => {
    const host = spawnNodeScript('bench/shards-worker.js', {
      args: [ctx.etcd.endpoint, ns, String(first), String(count), String(shards), String(ttl)],
      name: `shards-${first}`,
    });
    hosts.push(host);
    return host;
  };
  try {
    // Three hosts of (members-1)/3 apps, and the crash victim alone in its own process.
    const bulk = members - 1;
    const per = Math.ceil(bulk / 3);
    let before = await etcdCounters(ctx.etcd.clientUrl);
    let pollsBefore = observerReads;
    const startedAt = Date.now();
    const starting = [0, 1, 2].map((k) => spawnHost(k * per, Math.min(per, bulk - k * per)));
    const victim = spawnHost(bulk, 1);
    await Promise.all([...starting, victim].map((h) => h.waitForMessage('ready', 300_000)));
    await waitMembers(members, 120_000);
    before = await etcdCounters(ctx.etcd.clientUrl);
    pollsBefore = observerReads;
    const readyAt = Date.now();
    for (const host of [...starting, victim]) host.send({ type: 'open' });
    let owners = await waitSettled(members, 120_000);
    const start = { ...(await phase(before, pollsBefore, Date.now() - readyAt, shards)), fromFirstStartMs: Date.now() - startedAt };
    const counts = new Map<string, number>();
    for (const o of owners) counts.set(o, (counts.get(o) ?? 0) + 1);
    const maxPerMember = Math.max(...counts.values());
    ctx.log(`start: settled ${start.settleMs} ms after every member opened the group (${start.fromFirstStartMs} ms from the first process start); max ${maxPerMember} shards per member`);

    before = await etcdCounters(ctx.etcd.clientUrl);
    pollsBefore = observerReads;
    const leaveAt = Date.now();
    starting[0]!.send({ type: 'close', index: 0 });
    let next = await waitSettled(members - 1, 60_000);
    const gracefulLeave = await phase(before, pollsBefore, Date.now() - leaveAt, next.filter((o, s) => o !== owners[s]).length);
    ctx.log(`graceful leave: settled in ${gracefulLeave.settleMs} ms, ${gracefulLeave.moved} moved, ${gracefulLeave.requestsPerMove} requests and ${gracefulLeave.watchEventsPerMove} watch events per move`);
    await starting[0]!.waitForMessage('closed', 30_000);
    owners = next;

    before = await etcdCounters(ctx.etcd.clientUrl);
    pollsBefore = observerReads;
    const killAt = Date.now();
    await victim.kill('SIGKILL');
    next = await waitSettled(members - 2, (ttl + 30) * 1000);
    const crash = await phase(before, pollsBefore, Date.now() - killAt, next.filter((o, s) => o !== owners[s]).length);
    ctx.log(`crash: settled in ${crash.settleMs} ms (TTL ${ttl} s), ${crash.moved} moved, ${crash.requestsPerMove} requests and ${crash.watchEventsPerMove} watch events per move`);

    for (const host of starting) host.send({ type: 'close-all' });
    await Promise.all(starting.map((h) => h.waitForMessage('all-closed', 120_000)));
    return {
      method:
        `${members} members (Nest apps with their own etcd client and session, in 4 processes) x ${shards} shards, TTL ${ttl} s. ` +
        'Settled = polled from an outside client: every shard has exactly one key, held by the member the rule assigns it for the live members. ' +
        'Requests = etcd unary calls (grpc_server_handled_total) minus the observer\'s reads; watch events = etcd_debugging_mvcc_events_total ' +
        '(every member watches the member list, so a member change costs about one event per member on top of the shard moves).',
      members,
      shards,
      ttlSeconds: ttl,
      maxPerMember,
      start,
      gracefulLeave,
      crash,
    };
  } finally {
    await Promise.all(hosts.map((h) => h.kill('SIGKILL').catch(() => undefined)));
    client.close();
  }
}
