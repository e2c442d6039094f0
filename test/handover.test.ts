// ElectionService.handover across three processes: to the next candidate and to a named one, with
// no overlap of leadership (outside observer: the workers' own timestamps on one machine clock) and
// the gap measured. Real etcd.
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { etcdFixture } from './harness/etcd.js';
import type { JsonMessage, NodeProcess } from './harness/processes.js';
import { closeApps, createApp, delay, eventually, keysUnder, rawClient, uniqueNamespace } from './support/apps.js';
import { spawnWorker } from './support/workers.js';
import { ElectionService, HandoverError, NotLeaderError } from '../lib/index.js';

const etcd = etcdFixture();
const isLeader = (w: NodeProcess) => w.messages.filter((m) => m.type === 'state').at(-1)?.isLeader === true;

/** Leadership intervals of each worker, from its own 'state' messages. */
function terms(workers: NodeProcess[]): Array<{ who: string; from: number; to: number }> {
  const out: Array<{ who: string; from: number; to: number }> = [];
  for (const w of workers) {
    let from: number | undefined;
    for (const m of w.messages) {
      if (m.type !== 'state') continue;
      if (m.isLeader === true && from === undefined) from = Number(m.at);
      if (m.isLeader !== true && from !== undefined) {
        out.push({ who: w.name, from, to: Number(m.at) });
        from = undefined;
      }
    }
    if (from !== undefined) out.push({ who: w.name, from, to: Infinity });
  }
  return out.sort((a, b) => a.from - b.from);
}

function assertNoOverlap(workers: NodeProcess[]): void {
  const sorted = terms(workers);
  for (let i = 1; i < sorted.length; i++) {
    assert.ok(sorted[i]!.from >= sorted[i - 1]!.to, `${sorted[i]!.who} led from ${sorted[i]!.from} while ${sorted[i - 1]!.who} led until ${sorted[i - 1]!.to}`);
  }
}

describe('leadership hand-over (real etcd, 3 processes)', () => {
  const workers: NodeProcess[] = [];
  after(async () => {
    await Promise.all(workers.map((w) => w.kill('SIGKILL').catch(() => undefined)));
    await closeApps();
  });

  it('hands over to the next candidate and to a named one: never two leaders, gap about one round trip', async () => {
    const ns = uniqueNamespace('handover');
    const start = (identity: string) => {
      const w = spawnWorker({ use: ['election'], hosts: etcd().endpoint, namespace: ns, identity, ttl: 5, election: 'leader', requestTimeout: 1_000, membership: true });
      workers.push(w);
      return w;
    };
    const a = start('a');
    await a.waitForMessage((m: JsonMessage) => m.type === 'state' && m.isLeader === true, 20_000);
    const b = start('b');
    await b.waitForMessage((m: JsonMessage) => m.type === 'state' && m.leader === 'a', 20_000);
    const c = start('c');
    await c.waitForMessage((m: JsonMessage) => m.type === 'state' && m.leader === 'a', 20_000);
    const trio = [a, b, c];

    // To the next: b.
    a.send({ type: 'handover' });
    const first = await a.waitForMessage('handed-over', 10_000);
    assert.equal(first.to, 'b');
    await eventually(() => isLeader(b), 5_000, 'b leads');
    await delay(300);
    // Queue now: b (leader), c, a (rejoined at the back).
    const gapNext = Number(b.messages.find((m) => m.type === 'state' && m.isLeader === true)!.at) - terms([a])[0]!.to;

    // To a named candidate past another: b hands to a; c stands before a and queues again.
    b.send({ type: 'handover', to: 'a' });
    const second = await b.waitForMessage('handed-over', 10_000);
    assert.equal(second.to, 'a');
    assert.equal(second.movedBack, 1);
    await eventually(() => isLeader(a), 5_000, 'a leads again');
    await delay(500);
    assert.deepEqual(trio.filter(isLeader).map((w) => w.name), ['a'], 'exactly one leader');
    const aTerms = terms([a]);
    const gapNamed = aTerms[1]!.from - terms([b])[0]!.to;
    assertNoOverlap(trio);
    console.log(`# hand-over gap: to the next ${gapNext} ms, to a named candidate ${gapNamed} ms`);
    assert.ok(gapNext >= 0 && gapNamed >= 0);

    // Refusals, with leadership kept: no such candidate; not the leader.
    a.send({ type: 'handover', to: 'nobody' });
    assert.equal((await a.waitForMessage((m: JsonMessage) => m.type === 'error', 5_000)).code, 'HANDOVER_REFUSED');
    assert.equal(isLeader(a), true);
    c.send({ type: 'handover' });
    assert.equal((await c.waitForMessage((m: JsonMessage) => m.type === 'error', 5_000)).code, 'NOT_LEADER');
    await Promise.all(trio.map((w) => w.kill('SIGTERM')));
    const client = rawClient(etcd().endpoint);
    try {
      await eventually(async () => (await keysUnder(client, ns)).length === 0, 10_000, 'nothing left in etcd');
    } finally {
      client.close();
    }
  });

  it('refuses to move a candidate that is not of this library (an etcdctl/Go candidate), changing nothing', async () => {
    const ns = uniqueNamespace('handover-foreign');
    const client = rawClient(etcd().endpoint);
    try {
      const app = await createApp({ hosts: etcd().endpoint, namespace: ns, identity: 'ours', election: 'main', membership: true });
      const elections = app.get(ElectionService);
      await eventually(() => elections.isLeader(), 10_000, 'we lead');
      // A foreign candidate (as etcdctl elect writes it: <election>/<lease hex>) and then one of ours.
      const lease = client.lease(30, { autoKeepAlive: false });
      await lease.put(`${ns}main/${BigInt(await lease.grant()).toString(16)}`).value('go-peer');
      const other = await createApp({ hosts: etcd().endpoint, namespace: ns, identity: 'other', election: 'main', membership: true });
      await delay(500);
      await assert.rejects(elections.handover(undefined, { to: 'other' }), (err: unknown) => err instanceof HandoverError && /not known to be of this library/.test(err.message));
      assert.equal(elections.isLeader(), true, 'leadership kept');
      assert.equal((await keysUnder(client, `${ns}main/`)).length, 3, 'nothing deleted');
      await assert.rejects(other.get(ElectionService).handover(), NotLeaderError);
      await lease.revoke();
    } finally {
      client.close();
    }
  });
});
