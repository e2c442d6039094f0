// The testing kit (nest-etcd-coordination/testing): the in-memory stand-in driven by
// FakeCoordination, with no etcd; and startEtcd(), which starts a real one.
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { Injectable, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Interval, ScheduleModule } from '@nestjs/schedule';
import { Test, type TestingModule } from '@nestjs/testing';
import {
  CoordinationModule, ElectionService, InvalidOptionsError, LeaderOnly, LockAbortedError, LockService, LockTimeoutError,
  MembershipService, NameInUseError, SessionService, ShutdownError, WithLock, currentLeadership, currentLock, type LeaderState, type MemberInfo, type SessionState,
} from '../lib/index.js';
import { CoordinationTestingModule, FakeCluster, FakeCoordination, startEtcd, type CoordinationTestingOptions } from '../lib/testing/index.js';
import { findEtcdBinary } from '../lib/testing/start-etcd.js';
import { delay, eventually } from './support/apps.js';

@Injectable()
class Jobs {
  ticks = 0; active = 0; maxActive = 0;
  leaderTokens: bigint[] = []; lockLog: string[] = []; lockTokens: bigint[] = [];
  lastSignal?: AbortSignal;

  @Interval(10) @LeaderOnly()
  async tick(): Promise<void> { this.ticks++; }

  @LeaderOnly()
  async leaderWork(): Promise<string> {
    const leadership = currentLeadership()!;
    this.leaderTokens.push(leadership.fencingToken);
    this.lastSignal = leadership.signal;
    return 'ran';
  }

  @LeaderOnly('shard-1')
  async shardWork(): Promise<string> { return `shard ${currentLeadership('shard-1')!.fencingToken}`; }

  @WithLock('export')
  async exportBatch(label: string, ms: number): Promise<void> {
    this.active++;
    this.maxActive = Math.max(this.maxActive, this.active);
    this.lockLog.push(`${label}:start`);
    this.lockTokens.push(currentLock('export')!.fencingToken);
    await delay(ms);
    this.lockLog.push(`${label}:end`);
    this.active--;
  }

  @WithLock('export', { onLocked: 'skip' })
  async exportIfFree(): Promise<string> { return 'exported'; }

  @WithLock('long')
  async waitForLoss(): Promise<unknown> {
    const { signal } = currentLock('long')!;
    this.lastSignal = signal;
    await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
    return signal.reason;
  }
}

const open = new Set<TestingModule>();
const close = (m: TestingModule) => (open.delete(m), m.close());
afterEach(() => Promise.allSettled([...open].map(close)));

async function app(options: CoordinationTestingOptions = {}, withSchedule = false): Promise<TestingModule> {
  const moduleRef = await Test.createTestingModule({
    imports: [CoordinationTestingModule.forRoot(options), ...(withSchedule ? [ScheduleModule.forRoot()] : [])],
    providers: [Jobs],
  }).compile();
  moduleRef.useLogger(false);
  await moduleRef.init();
  open.add(moduleRef);
  return moduleRef;
}

describe('testing kit: @LeaderOnly, leader$ and FakeCoordination', () => {
  it('the leader runs @Interval jobs; after depose() they are skipped; after elect() they run again', async () => {
    const m = await app({}, true);
    const jobs = m.get(Jobs);
    const fake = m.get(FakeCoordination);
    await eventually(() => jobs.ticks >= 3, 2_000, 'the leader ticks');
    await fake.depose();
    assert.equal(await jobs.leaderWork(), undefined, 'a direct call is skipped too');
    const frozen = jobs.ticks;
    await delay(100);
    assert.equal(jobs.ticks, frozen, 'no tick while deposed');
    await fake.elect();
    await eventually(() => jobs.ticks >= frozen + 3, 2_000, 'ticks again after elect()');
    assert.equal(await jobs.leaderWork(), 'ran');
  });

  it('leader$ emits each change; depose() aborts the leadership signal with LEADERSHIP_LOST and re-queues us', async () => {
    const m = await app({ identity: 'me' });
    const fake = m.get(FakeCoordination);
    const elections = m.get(ElectionService);
    const states: LeaderState[] = [];
    const subscription = elections.leader$.subscribe((s) => states.push(s));
    assert.equal(await m.get(Jobs).leaderWork(), 'ran');
    const signal = m.get(Jobs).lastSignal!;
    await fake.depose();
    assert.equal(signal.aborted, true);
    assert.equal((signal.reason as { code?: string }).code, 'LEADERSHIP_LOST');
    await fake.elect();
    subscription.unsubscribe();
    // As with etcd, the loss may show as "not the leader, leader unknown" before the new leader is seen.
    const seen = states.map((s) => [s.isLeader, s.leader?.identity ?? null]).filter(([isLeader, who]) => isLeader || who !== null);
    assert.deepEqual(seen, [[true, 'me'], [false, 'other-instance'], [true, 'me']], JSON.stringify(states, (_, v: unknown) => (typeof v === 'bigint' ? String(v) : v)));
    const tokens = m.get(Jobs).leaderTokens;
    await m.get(Jobs).leaderWork();
    assert.ok(tokens[1]! > tokens[0]!, `a new leadership has a larger token: ${tokens.join(', ')}`);
    // Re-queued behind the other instance after depose(): leader() shows it, we are the next candidate.
    await fake.depose();
    assert.equal((await elections.leader())?.identity, 'other-instance');
    assert.equal(elections.isLeader(), false);
  });

  it('leader: false starts as a follower; depose({ rejoin: false }) keeps us out until elect()', async () => {
    const m = await app({ leader: false });
    const fake = m.get(FakeCoordination);
    const elections = m.get(ElectionService);
    assert.equal(elections.isLeader(), false);
    assert.equal(elections.currentState.leader?.identity, 'other-instance');
    assert.equal(await m.get(Jobs).leaderWork(), undefined);
    await fake.elect();
    assert.equal(elections.isLeader(), true);
    await fake.depose(undefined, { rejoin: false });
    await delay(50);
    assert.equal(elections.isLeader(), false);
    assert.equal((await elections.leader())?.identity, 'other-instance');
    await fake.elect();
    assert.equal(await m.get(Jobs).leaderWork(), 'ran');
  });

  it('another election: @LeaderOnly("shard-1") runs after elect("shard-1") and stops after depose("shard-1")', async () => {
    const m = await app({ election: false });
    const jobs = m.get(Jobs);
    assert.equal(await jobs.shardWork(), undefined);
    await m.get(FakeCoordination).elect('shard-1');
    assert.match((await jobs.shardWork())!, /^shard \d+$/);
    await m.get(FakeCoordination).depose('shard-1');
    assert.equal(await jobs.shardWork(), undefined);
    assert.equal(m.get(ElectionService).isLeader('shard-1'), false);
  });
});

describe('testing kit: locks', () => {
  it('@WithLock: mutual exclusion, FIFO, strictly growing fencing tokens, skip when held', async () => {
    const m = await app();
    const jobs = m.get(Jobs);
    const runs = ['a', 'b', 'c'].map((label) => jobs.exportBatch(label, 20));
    await delay(5);
    assert.equal(await jobs.exportIfFree(), undefined, 'onLocked: skip while held');
    await Promise.all(runs);
    assert.equal(jobs.maxActive, 1);
    assert.deepEqual(jobs.lockLog, ['a:start', 'a:end', 'b:start', 'b:end', 'c:start', 'c:end']);
    for (let i = 1; i < jobs.lockTokens.length; i++) assert.ok(jobs.lockTokens[i]! > jobs.lockTokens[i - 1]!);
    assert.equal(await jobs.exportIfFree(), 'exported');
  });

  it('timeout, abort, try-variants, NameInUse, and ShutdownError after close', async () => {
    const m = await app();
    const locks = m.get(LockService);
    const held = await locks.acquire('x');
    const started = Date.now();
    await assert.rejects(locks.acquire('x', { timeout: 60 }), LockTimeoutError);
    assert.ok(Date.now() - started >= 55);
    const controller = new AbortController();
    const waiting = locks.acquire('x', { signal: controller.signal });
    controller.abort(new Error('gave up'));
    await assert.rejects(waiting, (err: unknown) => err instanceof LockAbortedError && (err.cause as Error).message === 'gave up');
    assert.equal(await locks.tryAcquire('x'), null);
    await assert.rejects(locks.semaphore('x', 2).acquire(), NameInUseError);
    await assert.rejects(locks.mutex('leader').tryAcquire(), NameInUseError, 'the default election reserves its name');
    await held.release();
    assert.equal(held.signal.aborted, true);
    assert.equal((held.signal.reason as { code?: string }).code, 'LOCK_RELEASED');
    const again = await locks.tryAcquire('x');
    assert.ok(again && again.fencingToken > held.fencingToken);
    await close(m);
    assert.equal(again.signal.aborted, true, 'shutdown ends every hold');
    await assert.rejects(locks.acquire('y'), ShutdownError);
    await assert.rejects(m.get(ElectionService).campaign('z'), ShutdownError);
    let completed = false;
    m.get(ElectionService).leader$.subscribe({ complete: () => (completed = true) }).unsubscribe();
    assert.equal(completed, true, 'leader$ completes on shutdown (replayed at once)');
  });

  it('read/write lock: readers share, a writer waits for older readers, a later reader queues behind the writer', async () => {
    const locks = (await app()).get(LockService);
    const order: string[] = [];
    const r1 = await locks.readLock('catalog');
    const w2 = locks.writeLock('catalog').then((h) => (order.push('w2'), h));
    await delay(5);
    const r3 = locks.readLock('catalog').then((h) => (order.push('r3'), h));
    await delay(20);
    assert.deepEqual(order, [], 'w2 waits for r1, r3 waits for w2');
    assert.ok(await locks.tryReadLock('catalog') === null, 'no reader jumps the waiting writer');
    await r1.release();
    const w = await w2;
    await delay(10);
    assert.deepEqual(order, ['w2']);
    await w.release();
    await (await r3).release();
    assert.deepEqual(order, ['w2', 'r3']);
  });

  it('semaphore: at most `permits` holders, FIFO', async () => {
    const semaphore = (await app()).get(LockService).semaphore('renders', 2);
    const a = await semaphore.acquire();
    const b = await semaphore.acquire();
    assert.equal(await semaphore.tryAcquire(), null);
    let third = false;
    const c = semaphore.acquire().then((h) => ((third = true), h));
    await delay(10);
    assert.equal(third, false);
    await a.release();
    const granted = await c;
    assert.ok(granted.fencingToken > b.fencingToken);
    await Promise.all([b.release(), granted.release()]);
  });
});

describe('testing kit: expireSession()', () => {
  it('aborts every hold and leadership with SESSION_LOST, emits lost, and runs on a new session', async () => {
    const m = await app();
    const fake = m.get(FakeCoordination);
    const jobs = m.get(Jobs);
    const states: SessionState['status'][] = [];
    m.get(SessionService).state$.subscribe((s) => states.push(s.status));
    const loss = jobs.waitForLoss();
    await eventually(() => jobs.lastSignal !== undefined, 1_000, 'the lock is held');
    await jobs.leaderWork();
    const leaderSignal = jobs.lastSignal!;
    const leases: (bigint | undefined)[] = [m.get(ElectionService).currentState.leader?.leaseId];
    await fake.expireSession();
    assert.equal((await loss as { code?: string }).code, 'SESSION_LOST');
    assert.equal((leaderSignal.reason as { code?: string }).code, 'SESSION_LOST');
    // The default election campaigns again on the new session and (nobody else being there) wins.
    await eventually(() => m.get(ElectionService).isLeader(), 1_000, 'leads again');
    leases.push(m.get(ElectionService).currentState.leader?.leaseId);
    assert.notEqual(leases[0], leases[1], 'a new session');
    assert.deepEqual(states.slice(0, 3), ['alive', 'lost', 'alive']);
    assert.ok(await m.get(LockService).tryAcquire('long'), 'the lost lock is free');
  });
});

describe('testing kit: several applications on one FakeCluster', () => {
  it('one leader; elect() on the follower makes the leader step back; close() hands over', async () => {
    const cluster = new FakeCluster();
    const a = await app({ cluster, identity: 'a' });
    const b = await app({ cluster, identity: 'b' });
    assert.equal(a.get(ElectionService).isLeader(), true);
    assert.equal(b.get(ElectionService).currentState.leader?.identity, 'a');
    await b.get(FakeCoordination).elect();
    assert.equal(b.get(ElectionService).isLeader(), true);
    await eventually(() => a.get(ElectionService).currentState.leader?.identity === 'b', 1_000, 'a sees b lead');
    const held = await a.get(LockService).acquire('shared');
    assert.equal(await b.get(LockService).tryAcquire('shared'), null, 'locks exclude across applications');
    await close(b);
    await eventually(() => a.get(ElectionService).isLeader(), 1_000, 'a takes over');
    await held.release();
    // b's member record went at its close; a's stays while a runs.
    assert.deepEqual(cluster.keys().map((k) => k.replace(/[0-9a-f]+$/, '*')).sort(), ['_coordination:members/*', 'leader/*'], 'only a\'s member record and candidate key are left');
  });

  it('MembershipService: each instance registers (membership: false opts out), members$ follows, a new session re-registers, close withdraws', async () => {
    const cluster = new FakeCluster();
    const a = await app({ cluster, identity: 'a', memberValue: { zone: 'eu-1' } });
    const b = await app({ cluster, identity: 'b' });
    const c = await app({ cluster, identity: 'c', membership: false });
    const members = a.get(MembershipService);
    const who = (list: MemberInfo[]) => list.map((m) => `${m.identity}:${JSON.stringify(m.value)}`);
    assert.deepEqual(who(await c.get(MembershipService).members()), ['a:{"zone":"eu-1"}', 'b:null'], 'oldest first; c opted out');
    assert.equal(members.selfId, a.get(SessionService).state.leaseHex);
    assert.equal(c.get(MembershipService).selfId, undefined);
    const seen: string[][] = [];
    const subscription = members.members$.subscribe((list) => seen.push(who(list)));
    try {
      await b.get(MembershipService).setValue({ load: 1 });
      await eventually(() => seen.at(-1)?.[1] === 'b:{"load":1}', 1_000, 'members$ sees the new value');
      const before = b.get(MembershipService).selfId;
      await b.get(FakeCoordination).expireSession();
      await eventually(() => b.get(MembershipService).selfId !== undefined && b.get(MembershipService).selfId !== before, 1_000, 'b registered on a new session');
      await eventually(() => seen.at(-1)?.join() === 'a:{"zone":"eu-1"},b:{"load":1}', 1_000, 'b listed again, with its value');
      await close(b);
      await eventually(() => seen.at(-1)?.join() === 'a:{"zone":"eu-1"}', 1_000, 'b withdrew at close');
    } finally {
      subscription.unsubscribe();
    }
    await close(a);
    await close(c);
    assert.deepEqual(cluster.keys(), [], 'nothing left once all have closed');
  });
});

describe('testing kit: options', () => {
  it('refuses unknown and invalid options with InvalidOptionsError', () => {
    assert.throws(() => CoordinationTestingModule.forRoot({ hosts: 'x' } as never), InvalidOptionsError);
    assert.throws(() => CoordinationTestingModule.forRoot({ identity: '' }), InvalidOptionsError);
    assert.throws(() => CoordinationTestingModule.forRoot({ election: 'a/b' }), InvalidOptionsError);
    assert.throws(() => CoordinationTestingModule.forRoot({ leader: 'yes' as never }), InvalidOptionsError);
    assert.throws(() => CoordinationTestingModule.forRoot({ membership: 'no' as never }), InvalidOptionsError);
    assert.throws(() => CoordinationTestingModule.forRoot({ memberValue: 10n }), InvalidOptionsError);
  });
});

describe('testing kit: startEtcd()', () => {
  it('starts a throwaway etcd that the real module uses, and stop() ends it', async () => {
    const etcd = await startEtcd();
    try {
      assert.match(etcd.endpoint, /^127\.0\.0\.1:\d+$/);
      assert.equal(etcd.clientUrl, `http://${etcd.endpoint}`);
      @Module({ imports: [CoordinationModule.forRoot({ hosts: etcd.endpoint, election: false, connectTimeout: 5_000 })] })
      class E2eModule {}
      const real = await NestFactory.createApplicationContext(E2eModule, { logger: false });
      const hold = await real.get(LockService).acquire('e2e');
      assert.equal(typeof hold.fencingToken, 'bigint');
      await hold.release();
      await real.close();
    } finally {
      await etcd.stop();
    }
    assert.throws(() => process.kill(etcd.pid, 0), /ESRCH/, 'etcd is gone');
    const res = await fetch(`${etcd.clientUrl}/health`).catch((err: Error) => err);
    assert.ok(res instanceof Error, 'nothing answers any more');
    await etcd.stop(); // idempotent
  });

  it('says how to get etcd when there is none', () => assert.throws(() => findEtcdBinary('/nonexistent/etcd'), /apt-get install etcd-server/));
});
