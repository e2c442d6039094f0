// The hand-off without a re-check read (docs/handoff.md) and the held-key watch: someone else
// deleting a held or waiting key. Real etcd; three applications with their own clients and sessions,
// all in this process so one clock orders what each believed.
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import type { INestApplicationContext } from '@nestjs/common';
import { ElectionService, HoldLostError, LockService, type CoordinationHold } from '../lib/index.js';
import { EtcdOps } from '../lib/etcd/etcd-ops.js';
import { EtcdWatches } from '../lib/etcd/watch.js';
import { etcdFixture } from './harness/etcd.js';
import { closeApps, createApp, delay, eventually, keysExceptMembers, keysUnder, rawClient, uniqueNamespace } from './support/apps.js';

const etcd = etcdFixture();

/** Who believes it holds, when: any two overlapping intervals are a double holder. */
class Intervals {
  private readonly open = new Map<string, number>();
  readonly overlaps: string[] = [];
  readonly order: string[] = [];

  track(who: string, hold: CoordinationHold): void {
    const now = performance.now();
    for (const [other] of this.open) this.overlaps.push(`${who} acquired while ${other} held`);
    this.open.set(who, now);
    this.order.push(who);
    hold.signal.addEventListener('abort', () => this.open.delete(who), { once: true });
  }
}

async function apps(ns: string, count: number): Promise<INestApplicationContext[]> {
  const made: INestApplicationContext[] = [];
  for (let i = 0; i < count; i++) made.push(await createApp({ hosts: etcd().endpoint, namespace: ns, identity: `app-${i}` }));
  return made;
}

/** Waits until `count` keys are queued under `prefix` (the waiters have claimed). */
async function queued(ns: string, prefix: string, count: number): Promise<string[]> {
  const client = rawClient(etcd().endpoint);
  try {
    let keys: string[] = [];
    await eventually(async () => (keys = await keysUnder(client, `${ns}${prefix}`)).length === count, 10_000, `${count} keys under ${prefix}`);
    return keys;
  } finally {
    client.close();
  }
}

describe('hand-off and keys deleted by someone else (real etcd)', () => {
  after(() => closeApps());

  it('a waiter in the middle that gives up does not hand its successor the lock while the holder holds', async () => {
    // The case the re-check-free hand-off must NOT cover: C's predecessor B is a waiter, so
    // B's deletion says nothing about A. Applying the rule here would make C a second holder.
    const ns = uniqueNamespace('handoff-middle');
    const [a, b, c] = await apps(ns, 3);
    const seen = new Intervals();
    const holdA = await a!.get(LockService).acquire('job');
    seen.track('A', holdA);
    const giveUp = new AbortController();
    const waitB = b!.get(LockService).acquire('job', { signal: giveUp.signal });
    await queued(ns, 'job/', 2);
    const waitC = c!.get(LockService).acquire('job').then((hold) => (seen.track('C', hold), hold));
    await queued(ns, 'job/', 3);
    giveUp.abort();
    await assert.rejects(waitB, (err: unknown) => (err as { code?: string }).code === 'LOCK_ABORTED');
    await delay(300); // C has seen B's deletion and re-checked
    assert.deepEqual(seen.order, ['A'], 'C must still wait for A');
    await holdA.release();
    const holdC = await waitC;
    assert.deepEqual(seen.overlaps, []);
    assert.deepEqual(seen.order, ['A', 'C']);
    await holdC.release();
  });

  it('a waiter deep in the queue (more older keys than it reads) re-checks when its predecessor gives up, then follows the rest', async () => {
    // D claims behind A (holder), B and C (waiters): it reads two older keys and learns there are
    // more, so it may only watch C and re-check. C gives up: D's re-check shows B and A (all of
    // them now), so it follows their deletions. B gives up: A still holds, D must keep waiting.
    const ns = uniqueNamespace('handoff-deep');
    const [a, b, c, d] = await apps(ns, 4);
    const seen = new Intervals();
    const holdA = await a!.get(LockService).acquire('job');
    seen.track('A', holdA);
    const giveUpB = new AbortController();
    const giveUpC = new AbortController();
    const waitB = b!.get(LockService).acquire('job', { signal: giveUpB.signal });
    await queued(ns, 'job/', 2);
    const waitC = c!.get(LockService).acquire('job', { signal: giveUpC.signal });
    await queued(ns, 'job/', 3);
    const waitD = d!.get(LockService).acquire('job').then((hold) => (seen.track('D', hold), hold));
    await queued(ns, 'job/', 4);
    giveUpC.abort();
    await assert.rejects(waitC);
    await delay(300);
    giveUpB.abort();
    await assert.rejects(waitB);
    await delay(300);
    assert.deepEqual(seen.order, ['A'], 'D must still wait for A');
    await holdA.release();
    const holdD = await waitD;
    assert.deepEqual(seen.overlaps, []);
    await holdD.release();
  });

  it('a waiter that saw every older key (the holder and one waiter) takes its turn on their deletions, with no read', async () => {
    // The third candidate of a three-replica election: C claims behind A (leader) and B.
    const ns = uniqueNamespace('handoff-second');
    const [a, b, c] = await apps(ns, 3);
    const opsC = c!.get(EtcdOps);
    const original = EtcdOps.prototype.checkOlder;
    let checksByC = 0;
    EtcdOps.prototype.checkOlder = function (this: EtcdOps, ...args: Parameters<EtcdOps['checkOlder']>) {
      if (this === opsC) checksByC++;
      return original.apply(this, args);
    };
    try {
      const seen = new Intervals();
      const leaderA = await a!.get(ElectionService).campaign('elect');
      seen.track('A', leaderA);
      const waitB = b!.get(ElectionService).campaign('elect').then((hold) => (seen.track('B', hold), hold));
      await queued(ns, 'elect/', 2);
      const waitC = c!.get(ElectionService).campaign('elect').then((hold) => (seen.track('C', hold), hold));
      await queued(ns, 'elect/', 3);
      await leaderA.release();
      const leaderB = await waitB;
      await delay(100);
      assert.deepEqual(seen.order, ['A', 'B'], 'C waits for B');
      await leaderB.release();
      const leaderC = await waitC;
      assert.deepEqual(seen.overlaps, []);
      assert.equal(checksByC, 0, 'C knew both older keys: each deletion was applied without a read');
      await leaderC.release();
    } finally {
      EtcdOps.prototype.checkOlder = original;
    }
  });

  /** Runs `before` once, just before the next watch `app` creates (after its read, before its watch exists). */
  function beforeNextWatch(app: INestApplicationContext, before: () => Promise<void>): void {
    const watches = app.get(EtcdWatches);
    const original = watches.follow.bind(watches);
    let armed = true;
    watches.follow = async (...args: Parameters<EtcdWatches['follow']>) => {
      if (armed) {
        armed = false;
        await before();
      }
      return original(...args);
    };
  }

  it('a release between a waiter\'s read and its watch is not missed: the watch starts from now and a catch-up read covers the gap', async () => {
    // A watch from "now" does not replay what happened since the read; the catch-up read must.
    // With a session TTL of 60 s the periodic re-check is a minute away: only the catch-up can hand B the lock soon.
    const ns = uniqueNamespace('handoff-gap');
    const a = await createApp({ hosts: etcd().endpoint, namespace: ns, identity: 'a' });
    const b = await createApp({ hosts: etcd().endpoint, namespace: ns, identity: 'b', sessionTtl: 60 });
    const holdA = await a.get(LockService).acquire('job');
    beforeNextWatch(b, () => holdA.release());
    const started = performance.now();
    const holdB = await b.get(LockService).acquire('job');
    const tookMs = performance.now() - started;
    assert.ok(tookMs < 20_000, `B held after ${tookMs.toFixed(0)} ms: it found the release, not the next re-check`);
    assert.equal(holdA.isHeld(), false);
    await holdB.release();
  });

  it('a waiting key deleted between its read and its watch: the catch-up read finds it gone, and no two holders follow', async () => {
    const ns = uniqueNamespace('handoff-gap-own');
    const [a, b, c] = await apps(ns, 3);
    const client = rawClient(etcd().endpoint);
    const seen = new Intervals();
    try {
      const holdA = await a!.get(LockService).acquire('job');
      seen.track('A', holdA);
      let waitC: Promise<CoordinationHold> | undefined;
      beforeNextWatch(b!, async () => {
        // B has claimed and read (A holds, B is next); before its watch exists its key is deleted
        // and C queues, also right behind A.
        const keys = await queued(ns, 'job/', 2);
        await client.delete().key(keys.find((key) => key !== holdA.key)!);
        waitC = c!.get(LockService).acquire('job').then((hold) => (seen.track('C', hold), hold));
        await queued(ns, 'job/', 2);
      });
      const waitB = b!.get(LockService).acquire('job').then((hold) => (seen.track('B', hold), hold));
      await eventually(() => waitC !== undefined, 10_000, 'C queued');
      // B's watch exists now (from "now": it will see A's release). Without the catch-up read B
      // would take that release as its turn, next to C.
      await delay(300);
      await holdA.release();
      const holdC = await waitC!;
      await delay(200);
      assert.deepEqual(seen.order, ['A', 'C'], 'B lost its place: it must not take the turn on A\'s release');
      await holdC.release();
      const holdB = await waitB;
      assert.deepEqual(seen.overlaps, []);
      await holdB.release();
    } finally {
      client.close();
    }
  });

  it('the same for a semaphore: the second waiter, behind a waiter that gives up, keeps waiting for a permit', async () => {
    const ns = uniqueNamespace('handoff-sem');
    const [a, b, c] = await apps(ns, 3);
    const sem = (app: INestApplicationContext) => app.get(LockService).semaphore('pool', 2);
    const first = await sem(a!).acquire();
    const second = await sem(a!).acquire();
    const giveUp = new AbortController();
    const waitB = sem(b!).acquire({ signal: giveUp.signal });
    await queued(ns, 'pool/', 3);
    let cHolds = false;
    const waitC = sem(c!).acquire().then((hold) => ((cHolds = true), hold));
    await queued(ns, 'pool/', 4);
    giveUp.abort();
    await assert.rejects(waitB);
    await delay(300);
    assert.equal(cHolds, false, 'both permits are still held');
    await first.release();
    const holdC = await waitC;
    assert.equal(second.isHeld(), true);
    await Promise.all([holdC.release(), second.release()]);
  });

  it('a held key deleted by someone else: the holder is told at once (signal, isHeld, HoldLostError) and nothing is left', async () => {
    const ns = uniqueNamespace('handoff-held');
    const [a] = await apps(ns, 1);
    const client = rawClient(etcd().endpoint);
    try {
      for (const [round, acquire] of [
        () => a!.get(LockService).acquire('job'),
        () => a!.get(LockService).readWriteLock('rw').read.acquire(),
        () => a!.get(LockService).readWriteLock('rw2').write.acquire(),
        () => a!.get(LockService).semaphore('pool', 3).acquire(),
        () => a!.get(ElectionService).campaign('elect'),
      ].entries()) {
        const hold: CoordinationHold = await acquire();
        // The key watch starts shortly after the hold (short holds never need one): a deletion before
        // it exists is replayed from the revision the hold was known at; after, it is seen live.
        if (round % 2 === 1) await delay(400);
        const deleted = performance.now();
        await client.delete().key(hold.key); // an operator's etcdctl del
        await eventually(() => hold.signal.aborted, 5_000, `${hold.mode} "${hold.name}" told of the deletion`);
        const toldAfter = performance.now() - deleted;
        assert.equal(hold.isHeld(), false);
        assert.ok(hold.signal.reason instanceof HoldLostError, String(hold.signal.reason));
        assert.match((hold.signal.reason as Error).message, /deleted by someone else/);
        assert.ok(toldAfter < 2_000, `told after ${toldAfter.toFixed(0)} ms, within one watch delivery`);
        await hold.release(); // a no-op now
      }
      // A key re-created on another lease (or none) is not ours either.
      const hold = await a!.get(LockService).acquire('job2');
      await delay(100);
      await client.put(hold.key).value('someone else');
      await eventually(() => hold.signal.aborted, 5_000, 'told of the replacement');
      assert.match((hold.signal.reason as Error).message, /moved off our session lease/);
      await hold.release();
      assert.deepEqual(await keysExceptMembers(client, ns), [], 'nothing left behind');
    } finally {
      client.close();
    }
  });

  it('a waiting key deleted by someone else: that waiter queues again, and no two holders ever follow', async () => {
    const ns = uniqueNamespace('handoff-waiting');
    const [a, b, c] = await apps(ns, 3);
    const client = rawClient(etcd().endpoint);
    const seen = new Intervals();
    try {
      const holdA = await a!.get(LockService).acquire('job');
      seen.track('A', holdA);
      const waitB = b!.get(LockService).acquire('job').then((hold) => (seen.track('B', hold), hold));
      const keyB = (await queued(ns, 'job/', 2)).find((key) => key !== holdA.key);
      const waitC = c!.get(LockService).acquire('job').then((hold) => (seen.track('C', hold), hold));
      await queued(ns, 'job/', 3);
      await client.delete().key(keyB!); // B is next in line: it watches A and its own key on one watch
      await eventually(async () => (await keysUnder(client, `${ns}job/`)).length === 3, 10_000, 'B queued again, behind C');
      await delay(200);
      assert.deepEqual(seen.order, ['A']);
      await holdA.release();
      const holdC = await waitC;
      await delay(200);
      assert.deepEqual(seen.order, ['A', 'C'], 'C, then B (who lost its place)');
      await holdC.release();
      const holdB = await waitB;
      assert.deepEqual(seen.overlaps, []);
      await holdB.release();
      assert.deepEqual(await keysExceptMembers(client, ns), []);
    } finally {
      client.close();
    }
  });
});
