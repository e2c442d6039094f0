import { after, afterEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { firstValueFrom, toArray } from 'rxjs';
import { etcdFixture, resolveEtcdBinaries } from './harness/etcd.js';
import type { JsonMessage, NodeProcess } from './harness/processes.js';
import { startProxy } from './harness/proxy.js';
import { ElectionService, NotLeaderError, type LeaderInfo, type LeaderState } from '../lib/index.js';
import { closeApps, createApp, delay, eventually, keysUnder, leaseIds, rawClient, uniqueNamespace } from './support/apps.js';
import { spawnWorker } from './support/workers.js';

/** Resolves with the first message of `worker` after `since` (ms) matching `predicate`, without consuming it. */
async function seen(worker: NodeProcess, predicate: (m: JsonMessage) => boolean, since: number, timeoutMs: number): Promise<JsonMessage> {
  let found: JsonMessage | undefined;
  await eventually(() => {
    found = worker.messages.find((m) => Number(m.at ?? 0) >= since && predicate(m));
    return found !== undefined;
  }, timeoutMs, `${worker.name}: expected message`);
  return found!;
}

/** The latest leader$ state a worker reported. */
function latestState(worker: NodeProcess): JsonMessage | undefined {
  return [...worker.messages].reverse().find((m) => m.type === 'state');
}

describe('ElectionService (real etcd)', () => {
  const etcd = etcdFixture();
  afterEach(closeApps);
  const workers: NodeProcess[] = [];
  after(async () => {
    await Promise.all(workers.map((w) => w.kill('SIGKILL').catch(() => undefined)));
  });

  function startWorker(ns: string, identity: string, ttl = 2, endpoint = etcd().endpoint): NodeProcess {
    const worker = spawnWorker({ use: ['election'], hosts: endpoint, namespace: ns, identity, ttl, election: 'leader', requestTimeout: 1_000 });
    workers.push(worker);
    return worker;
  }

  async function observerApp(ns: string) {
    const app = await createApp({ hosts: etcd().endpoint, namespace: ns, identity: 'observer', election: false });
    return app.get(ElectionService);
  }

  it('three instances elect exactly one leader; observe() follows proclaim and resign', async () => {
    const ns = uniqueNamespace('three');
    const observer = await observerApp(ns);
    const observed: Array<string | null> = [];
    const subscription = observer.observe('leader').subscribe((l) => observed.push(l?.value ?? null));
    const trio = ['n1', 'n2', 'n3'].map((id) => startWorker(ns, id, 5));
    await Promise.all(trio.map((w) => w.waitForMessage('ready', 20_000)));
    await eventually(() => trio.filter((w) => latestState(w)?.isLeader === true).length === 1, 10_000, 'one leader');
    await delay(500);
    const leaders = trio.filter((w) => latestState(w)?.isLeader === true);
    assert.equal(leaders.length, 1, 'exactly one leader');
    const leader = leaders[0]!;
    const leaderName = leader.name;
    for (const w of trio) assert.equal(latestState(w)?.leader, leaderName, `${w.name} agrees on the leader`);
    assert.equal((await observer.leader('leader'))?.value, leaderName);

    leader.send({ type: 'proclaim', value: `${leaderName}-v2` });
    await leader.waitForMessage('proclaimed');
    await eventually(() => observed.includes(`${leaderName}-v2`), 5_000, 'proclamation observed');
    for (const w of trio) await w.waitForMessage((m) => m.type === 'state' && m.leader === `${leaderName}-v2`);

    leader.send({ type: 'resign', rejoin: false });
    await leader.waitForMessage('resigned');
    await eventually(() => trio.filter((w) => w !== leader && latestState(w)?.isLeader === true).length === 1, 5_000, 'successor');
    assert.equal(latestState(leader)?.isLeader, false);
    const successor = trio.find((w) => latestState(w)?.isLeader === true)!;
    await eventually(() => observed.at(-1) === successor.name, 5_000, 'observe shows the successor');
    // Subscribed before anyone campaigned: first "no leader", then the leader, its proclamation, the successor.
    assert.deepEqual(observed.slice(0, 3), [null, leaderName, `${leaderName}-v2`]);
    // Non-leaders cannot proclaim.
    const follower = trio.find((w) => w !== successor)!;
    follower.send({ type: 'proclaim', value: 'usurper' });
    assert.equal((await follower.waitForMessage((m) => m.type === 'error')).code, 'NOT_LEADER');
    subscription.unsubscribe();
    await Promise.all(trio.map((w) => w.kill('SIGTERM')));
  });

  it('hands over at once when the leader closes gracefully, and within TTL + 2 s when it is SIGKILLed', async () => {
    const ns = uniqueNamespace('failover');
    const ttl = 2;
    const a = startWorker(ns, 'a', ttl);
    await a.waitForMessage((m) => m.type === 'state' && m.isLeader === true, 20_000);
    const b = startWorker(ns, 'b', ttl);
    const c = startWorker(ns, 'c', ttl);
    await Promise.all([b, c].map((w) => w.waitForMessage((m) => m.type === 'state' && m.leader === 'a', 20_000)));

    const closedAt = Date.now();
    a.send({ type: 'close' });
    const isLeaderState = (m: JsonMessage) => m.type === 'state' && m.isLeader === true;
    await eventually(() => [b, c].some((w) => w.messages.some((m) => isLeaderState(m) && Number(m.at) >= closedAt)), 10_000, 'successor');
    const nextWorker = [b, c].find((w) => w.messages.some((m) => isLeaderState(m) && Number(m.at) >= closedAt))!;
    const next = { w: nextWorker, m: await seen(nextWorker, isLeaderState, closedAt, 0) };
    const graceful = Number(next.m.at) - closedAt;
    assert.ok(graceful < 1_000, `graceful handover took ${graceful} ms`);
    const exit = await Promise.race([a.exited, delay(8_000).then(() => 'still running' as const)]);
    assert.notEqual(exit, 'still running', 'a closed app keeps its process alive');

    const survivor = next.w === b ? c : b;
    const killedAt = Date.now();
    await next.w.kill('SIGKILL');
    const taken = await seen(survivor, isLeaderState, killedAt, 10_000);
    const crash = Number(taken.at) - killedAt;
    assert.ok(crash <= (ttl + 2) * 1000, `crash failover took ${crash} ms`);
    await survivor.kill('SIGTERM');
  });

  it('a leader cut off from etcd steps down before anyone else is elected (outside observer timestamps)', async () => {
    const ns = uniqueNamespace('cutoff');
    const proxy = await startProxy(etcd().endpoint);
    try {
      const observer = await observerApp(ns);
      const changes: Array<{ leader: LeaderInfo | null; at: number }> = [];
      const subscription = observer.observe('leader').subscribe((leader) => changes.push({ leader, at: Date.now() }));
      const cut = startWorker(ns, 'cut', 2, proxy.endpoint);
      await cut.waitForMessage((m) => m.type === 'state' && m.isLeader === true, 20_000);
      const other = startWorker(ns, 'other', 2);
      await other.waitForMessage((m) => m.type === 'state' && m.leader === 'cut', 20_000);
      proxy.setMode({ kind: 'blackhole' });
      await eventually(() => changes.some((c) => c.leader?.value === 'other'), 15_000, 'other elected');
      const electedAt = changes.find((c) => c.leader?.value === 'other')!.at;
      const steppedDown = await cut.waitForMessage((m) => m.type === 'state' && m.isLeader === false, 1_000);
      const aborted = await cut.waitForMessage('leadership-aborted', 1_000);
      assert.ok(Number(steppedDown.at) < electedAt, `stepped down at ${steppedDown.at}, other elected at ${electedAt}`);
      assert.ok(Number(aborted.at) < electedAt, `signal aborted at ${aborted.at}, other elected at ${electedAt}`);
      subscription.unsubscribe();
      // When the network heals, the cut-off instance re-campaigns and follows the new leader.
      proxy.setMode({ kind: 'reset' });
      await delay(100);
      proxy.setMode({ kind: 'pass' });
      await cut.waitForMessage((m) => m.type === 'state' && m.isLeader === false && m.leader === 'other', 20_000);
      await Promise.all([cut.kill('SIGTERM'), other.kill('SIGTERM')]);
    } finally {
      await proxy.close();
    }
  });

  describe('interop with etcdctl elect', () => {
    const { etcdctl } = resolveEtcdBinaries();
    const children: ReturnType<typeof spawn>[] = [];
    after(() => children.forEach((c) => c.kill('SIGKILL')));
    const run = (args: string[]) => {
      const child = spawn(etcdctl, ['--endpoints', etcd().endpoint, ...args], { env: { ...process.env, ETCDCTL_API: '3' }, stdio: ['ignore', 'pipe', 'pipe'] });
      children.push(child);
      let out = '';
      child.stdout!.on('data', (d) => (out += d));
      return { child, output: () => out };
    };

    it('etcdctl elect -l sees our leader, and its proclamations', async () => {
      const ns = uniqueNamespace('ctl-l');
      const app = await createApp({ hosts: etcd().endpoint, namespace: ns, identity: 'ours', election: 'leader' });
      const elections = app.get(ElectionService);
      await eventually(() => elections.isLeader(), 10_000, 'we lead');
      const listener = run(['elect', '-l', `${ns}leader`]);
      await eventually(() => listener.output().includes('ours'), 10_000, 'etcdctl saw our leader');
      assert.ok(listener.output().includes(`${ns}leader/`), listener.output());
      await elections.proclaim('ours-v2');
      await eventually(() => listener.output().includes('ours-v2'), 10_000, 'etcdctl saw the proclamation');
      listener.child.kill('SIGINT');
    });

    it('a leader elected by etcdctl elect is observed by us and makes our candidates wait', async () => {
      const ns = uniqueNamespace('ctl-c');
      const campaigner = run(['elect', `${ns}leader`, 'go-style-leader']);
      await eventually(() => campaigner.output().includes('go-style-leader'), 10_000, 'etcdctl elected');
      const app = await createApp({ hosts: etcd().endpoint, namespace: ns, identity: 'ours', election: 'leader' });
      const elections = app.get(ElectionService);
      const first = await firstValueFrom(elections.leader$);
      assert.deepEqual([first.isLeader, first.leader?.value], [false, 'go-style-leader']);
      assert.equal((await elections.leader())?.value, 'go-style-leader');
      await delay(500);
      assert.equal(elections.isLeader(), false, 'must wait behind the etcdctl leader');
      campaigner.child.kill('SIGINT'); // etcdctl resigns on interrupt
      await eventually(() => elections.isLeader(), 10_000, 'we lead after etcdctl resigned');
    });
  });

  it('campaign/proclaim/resign on a named election; leader$ replays and completes; shutdown leaves nothing', async () => {
    const ns = uniqueNamespace('api');
    const client = rawClient(etcd().endpoint);
    try {
      const leasesBefore = new Set(await leaseIds(client));
      const app = await createApp({ hosts: etcd().endpoint, namespace: ns, identity: 'solo', election: 'main' });
      const elections = app.get(ElectionService);
      assert.equal(await elections.leader('jobs'), null);
      await assert.rejects(elections.proclaim('x', 'jobs'), NotLeaderError);
      await assert.rejects(elections.campaign('bad/name'), { code: 'INVALID_NAME' });
      const leadership = await elections.campaign('jobs', { value: 'solo-jobs' });
      assert.equal(elections.isLeader('jobs'), true);
      assert.equal((await elections.leader('jobs'))?.revision, leadership.fencingToken);
      await elections.proclaim('solo-jobs-2', 'jobs');
      assert.equal((await elections.leader('jobs'))?.value, 'solo-jobs-2');
      await elections.resign('jobs');
      assert.equal(leadership.signal.aborted, true);
      assert.equal(elections.isLeader('jobs'), false);
      assert.equal(await elections.leader('jobs'), null);

      await eventually(() => elections.isLeader(), 10_000, 'default election won');
      const late: LeaderState[] = [];
      const all = firstValueFrom(elections.leader$.pipe(toArray()));
      elections.leader$.subscribe((s) => late.push(s));
      assert.deepEqual(late.map((s) => s.isLeader), [true], 'replays the current state once');
      await app.close();
      const states = await all;
      assert.equal(states.at(-1)!.isLeader, false, 'last state before completion is not leader');
      assert.deepEqual(await keysUnder(client, ns), []);
      assert.deepEqual((await leaseIds(client)).filter((id) => !leasesBefore.has(id)), []);
    } finally {
      client.close();
    }
  });
});
