import 'reflect-metadata';
import { after, afterEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Injectable, Scope } from '@nestjs/common';
import { Cron, Interval, ScheduleModule, SchedulerRegistry, Timeout } from '@nestjs/schedule';
import { etcdFixture } from './harness/etcd.js';
import type { JsonMessage, NodeProcess } from './harness/processes.js';
import { startProxy } from './harness/proxy.js';
import {
  ElectionService,
  LeaderOnly,
  LockService,
  ModuleNotInitializedError,
  WithLock,
  currentLeadership,
  currentLock,
} from '../lib/index.js';
import { closeApps, createApp, delay, eventually, uniqueNamespace } from './support/apps.js';
import { spawnWorker } from './support/workers.js';

// Both orders of every @nestjs/schedule decorator against @LeaderOnly, and @WithLock in both orders.
@Injectable()
class ScheduledJobs {
  runs = new Map<string, number>();
  tokens: bigint[] = [];
  private record(name: string) {
    this.runs.set(name, (this.runs.get(name) ?? 0) + 1);
  }

  @Interval('interval-above', 50) @LeaderOnly()
  async intervalAbove() { this.record('interval-above'); this.tokens.push(currentLeadership()!.fencingToken); }

  @LeaderOnly() @Interval('interval-below', 50)
  async intervalBelow() { this.record('interval-below'); }

  @Cron('* * * * * *', { name: 'cron-above' }) @LeaderOnly()
  async cronAbove() { this.record('cron-above'); }

  @LeaderOnly() @Cron('* * * * * *', { name: 'cron-below' })
  async cronBelow() { this.record('cron-below'); }

  @Timeout('timeout-above', 300) @LeaderOnly()
  async timeoutAbove() { this.record('timeout-above'); }

  @LeaderOnly() @Timeout('timeout-below', 300)
  async timeoutBelow() { this.record('timeout-below'); }

  @Interval('locked-above', 50) @WithLock('sched-lock')
  async lockedAbove() { assert.ok(currentLock('sched-lock')); this.record('locked-above'); }

  @WithLock('sched-lock') @Interval('locked-below', 50)
  async lockedBelow() { assert.ok(currentLock('sched-lock')); this.record('locked-below'); }

  @LeaderOnly() @WithLock('both')
  async leaderAndLock() { return { lock: currentLock('both')?.fencingToken, leader: currentLeadership()?.fencingToken }; }
}

const JOB_NAMES = ['interval-above', 'interval-below', 'cron-above', 'cron-below', 'timeout-above', 'timeout-below', 'locked-above', 'locked-below'];

@Injectable()
class Orders {
  active = new Map<string, number>();
  maxActive = new Map<string, number>();
  log: string[] = [];

  @WithLock((orderId: string) => `order:${orderId}`)
  async process(orderId: string, ms: number): Promise<string> {
    const now = (this.active.get(orderId) ?? 0) + 1;
    this.active.set(orderId, now);
    this.maxActive.set(orderId, Math.max(now, this.maxActive.get(orderId) ?? 0));
    await delay(ms);
    this.active.set(orderId, now - 1);
    return `${orderId}:${currentLock()!.name}`;
  }

  @WithLock('ledger')
  async outer(label: string): Promise<string> {
    this.log.push(`${label}:outer-start`);
    const inner = await this.inner(label);
    await delay(50);
    this.log.push(`${label}:outer-end`);
    return inner;
  }

  @WithLock('ledger')
  async inner(label: string): Promise<string> {
    this.log.push(`${label}:inner`);
    return `token ${currentLock('ledger')!.fencingToken}`;
  }

  @WithLock('held-elsewhere', { onLocked: 'fail' })
  async failFast(): Promise<string> { return 'ran'; }

  @WithLock('held-elsewhere', { onLocked: 'skip' })
  async skipIfHeld(): Promise<string> { return 'ran'; }
}

@Injectable({ scope: Scope.REQUEST })
class PerRequest {
  @WithLock('per-request')
  async work(): Promise<bigint> { return currentLock()!.fencingToken; }
}

@Injectable({ scope: Scope.TRANSIENT })
class Transient {
  @LeaderOnly()
  async work(): Promise<string> { return 'led'; }
}

describe('@WithLock and @LeaderOnly', () => {
  const etcd = etcdFixture();
  afterEach(closeApps);

  it('keep the method name and every metadata key set by @nestjs/schedule, in both orders', () => {
    for (const [method, key] of [
      ['intervalAbove', 'SCHEDULE_INTERVAL_OPTIONS'], ['intervalBelow', 'SCHEDULE_INTERVAL_OPTIONS'],
      ['cronAbove', 'SCHEDULE_CRON_OPTIONS'], ['cronBelow', 'SCHEDULE_CRON_OPTIONS'],
      ['timeoutAbove', 'SCHEDULE_TIMEOUT_OPTIONS'], ['timeoutBelow', 'SCHEDULE_TIMEOUT_OPTIONS'],
      ['lockedAbove', 'SCHEDULE_INTERVAL_OPTIONS'], ['lockedBelow', 'SCHEDULE_INTERVAL_OPTIONS'],
    ] as const) {
      const fn = (ScheduledJobs.prototype as unknown as Record<string, Function>)[method]!;
      assert.equal(fn.name, method);
      const keys = Reflect.getMetadataKeys(fn);
      assert.ok(keys.includes('SCHEDULER_NAME') && keys.includes('SCHEDULER_TYPE') && keys.includes(key), `${method}: ${keys.join(',')}`);
    }
  });

  it('compose with @Cron, @Interval and @Timeout in either order: jobs run on the leader only', async () => {
    const ns = uniqueNamespace('sched');
    const leaderApp = await createApp({ hosts: etcd().endpoint, namespace: ns, identity: 'leader', election: 'leader', imports: [ScheduleModule.forRoot()], providers: [ScheduledJobs] });
    await eventually(() => leaderApp.get(ElectionService).isLeader(), 10_000, 'first app leads');
    const followerApp = await createApp({ hosts: etcd().endpoint, namespace: ns, identity: 'follower', election: 'leader', imports: [ScheduleModule.forRoot()], providers: [ScheduledJobs] });
    const registry = leaderApp.get(SchedulerRegistry);
    for (const name of ['interval-above', 'interval-below', 'locked-above', 'locked-below']) assert.ok(registry.getInterval(name), name);
    for (const name of ['cron-above', 'cron-below']) assert.ok(registry.getCronJob(name), name);
    const leaderJobs = leaderApp.get(ScheduledJobs);
    const followerJobs = followerApp.get(ScheduledJobs);
    await eventually(() => JOB_NAMES.every((n) => (leaderJobs.runs.get(n) ?? 0) > 0), 10_000, `all jobs ran on the leader: ${[...leaderJobs.runs.keys()]}`);
    for (const name of ['interval-above', 'interval-below', 'cron-above', 'cron-below', 'timeout-above', 'timeout-below']) {
      assert.equal(followerJobs.runs.get(name) ?? 0, 0, `${name} must not run on the follower`);
    }
    const token = leaderApp.get(ElectionService).leadership()!.fencingToken;
    assert.ok(leaderJobs.tokens.every((t) => t === token), 'currentLeadership() inside the job gives the fencing token');
    const both = await leaderJobs.leaderAndLock();
    assert.ok(both && typeof both.lock === 'bigint' && both.leader === token);
    assert.equal(await followerJobs.leaderAndLock(), undefined, 'a follower skips without taking the lock');
  });

  it('re-enter the same lock from inside, while other callers in the process still wait', async () => {
    const ns = uniqueNamespace('reentry');
    const app = await createApp({ hosts: etcd().endpoint, namespace: ns, identity: 'r', providers: [Orders] });
    const orders = app.get(Orders);
    const [a, b] = await Promise.all([orders.outer('a'), orders.outer('b')]);
    assert.match(a, /^token \d+$/);
    assert.notEqual(a, b, 'each outer call held its own lock');
    assert.deepEqual(orders.log, ['a:outer-start', 'a:inner', 'a:outer-end', 'b:outer-start', 'b:inner', 'b:outer-end']);
  });

  it('compute the lock name from the arguments: same key serializes, different keys run in parallel', async () => {
    const ns = uniqueNamespace('dynamic');
    const app = await createApp({ hosts: etcd().endpoint, namespace: ns, identity: 'd', providers: [Orders] });
    const orders = app.get(Orders);
    const started = Date.now();
    const results = await Promise.all([orders.process('1', 150), orders.process('1', 150), orders.process('2', 150)]);
    assert.deepEqual(results, ['1:order:1', '1:order:1', '2:order:2']);
    assert.equal(orders.maxActive.get('1'), 1, 'same order never ran twice at once');
    assert.equal(orders.maxActive.get('2'), 1);
    assert.ok(Date.now() - started >= 300, 'the two calls for order 1 were serialized');
  });

  it('onLocked fail rejects with LOCK_HELD and skip resolves undefined, without running', async () => {
    const ns = uniqueNamespace('onlocked');
    const app = await createApp({ hosts: etcd().endpoint, namespace: ns, identity: 'o', providers: [Orders] });
    const other = await createApp({ hosts: etcd().endpoint, namespace: ns, identity: 'other' });
    const held = await other.get(LockService).acquire('held-elsewhere');
    const orders = app.get(Orders);
    await assert.rejects(orders.failFast(), { code: 'LOCK_HELD' });
    assert.equal(await orders.skipIfHeld(), undefined);
    await held.release();
    assert.equal(await orders.failFast(), 'ran');
  });

  it('fail closed: without the module, or with etcd unreachable, the method does not run', async () => {
    let ran = false;
    class Unmanaged {
      @WithLock('x') async locked(): Promise<void> { ran = true; }
      @LeaderOnly() async led(): Promise<void> { ran = true; }
      @LeaderOnly() syncLed(): void { ran = true; }
    }
    const stray = new Unmanaged();
    await assert.rejects(stray.locked(), (err: unknown) => err instanceof ModuleNotInitializedError && /CoordinationModule/.test(err.message));
    await assert.rejects(stray.led(), ModuleNotInitializedError);
    assert.throws(() => stray.syncLed(), ModuleNotInitializedError);
    assert.equal(ran, false);

    const ns = uniqueNamespace('closed');
    const proxy = await startProxy(etcd().endpoint);
    try {
      const app = await createApp({ hosts: proxy.endpoint, namespace: ns, identity: 'c', requestTimeout: 500, providers: [Orders] });
      const orders = app.get(Orders);
      proxy.setMode({ kind: 'blackhole' });
      await assert.rejects(orders.process('9', 1), (err: unknown) => ['ETCD_UNAVAILABLE', 'SESSION_LOST'].includes((err as { code?: string }).code ?? ''));
      assert.equal(orders.maxActive.get('9'), undefined, 'the method body never ran');
      await app.close();
    } finally {
      await proxy.close();
    }
  });

  it('work on request-scoped and transient providers', async () => {
    const ns = uniqueNamespace('scopes');
    const app = await createApp({ hosts: etcd().endpoint, namespace: ns, identity: 's', election: 'leader', providers: [PerRequest, Transient] });
    await eventually(() => app.get(ElectionService).isLeader(), 10_000, 'leader');
    const perRequest = await app.resolve(PerRequest);
    assert.equal(typeof (await perRequest.work()), 'bigint');
    const transient = await app.resolve(Transient);
    assert.equal(await transient.work(), 'led');
  });

  describe('across OS processes with @nestjs/schedule', () => {
    const workers: NodeProcess[] = [];
    after(async () => Promise.all(workers.map((w) => w.kill('SIGKILL').catch(() => undefined))));

    it('a leader-only job runs on one instance at a time and moves after failover; skip-locked runs never overlap', async () => {
      const ns = uniqueNamespace('multi');
      const ttl = 2;
      const start = (id: string) => {
        const w = spawnWorker({ use: ['scheduled'], hosts: etcd().endpoint, namespace: ns, identity: id, ttl, election: 'leader' });
        workers.push(w);
        return w;
      };
      const trio = [start('s1'), start('s2'), start('s3')];
      await Promise.all(trio.map((w) => w.waitForMessage('ready', 20_000)));
      const leaderRuns = () => trio.map((w) => w.messages.filter((m) => m.type === 'run' && m.job === 'leader'));
      await eventually(() => leaderRuns().some((runs) => runs.length >= 5), 10_000, 'leader job runs');
      const first = trio[leaderRuns().findIndex((runs) => runs.length > 0)]!;
      await first.kill('SIGKILL');
      const killedAt = Date.now();
      await eventually(
        () => trio.some((w) => w !== first && w.messages.some((m) => m.type === 'run' && m.job === 'leader' && Number(m.start) > killedAt)),
        (ttl + 5) * 1000,
        'leader job moved to another instance',
      );
      await delay(1_000);

      const all: Array<JsonMessage & { who: string }> = trio.flatMap((w) => w.messages.filter((m) => m.type === 'run').map((m) => ({ ...m, who: w.name })));
      // Leader-only runs: group by fencing token (one leadership term); terms must not overlap in time
      // and each term belongs to exactly one instance.
      const terms = new Map<string, { who: Set<string>; start: number; end: number }>();
      for (const run of all.filter((r) => r.job === 'leader')) {
        const term = terms.get(String(run.token)) ?? { who: new Set(), start: Infinity, end: -Infinity };
        term.who.add(run.who);
        term.start = Math.min(term.start, Number(run.start));
        term.end = Math.max(term.end, Number(run.end));
        terms.set(String(run.token), term);
      }
      assert.ok(terms.size >= 2, 'at least two leadership terms observed');
      const ordered = [...terms.entries()].sort((a, b) => (BigInt(a[0]) < BigInt(b[0]) ? -1 : 1));
      for (const [token, term] of ordered) assert.equal(term.who.size, 1, `term ${token} ran on ${[...term.who]}`);
      for (let i = 1; i < ordered.length; i++) {
        assert.ok(ordered[i]![1].start >= ordered[i - 1]![1].end, `terms ${ordered[i - 1]![0]} and ${ordered[i]![0]} overlap`);
      }
      // Skip-locked runs: no two runs anywhere overlap in time.
      const locked = all.filter((r) => r.job === 'locked').sort((a, b) => Number(a.start) - Number(b.start));
      assert.ok(locked.length >= 5, `locked job ran ${locked.length} times`);
      assert.ok(new Set(locked.map((r) => r.who)).size >= 2, 'locked job ran on several instances');
      for (let i = 1; i < locked.length; i++) {
        assert.ok(Number(locked[i]!.start) >= Number(locked[i - 1]!.end), `locked runs overlap: ${JSON.stringify([locked[i - 1], locked[i]])}`);
      }
      await Promise.all(trio.map((w) => w.kill('SIGTERM')));
    });
  });
});
