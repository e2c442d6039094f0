// Graceful drain on shutdown (issue 12.6), against a real etcd. The SIGTERM cases run each app
// instance in its own process (test/fixtures/commands/drain.ts); the app.close() and testing-kit
// cases run in this process.
import { afterEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Injectable, Module } from '@nestjs/common';
import { Interval, ScheduleModule } from '@nestjs/schedule';
import { NestFactory } from '@nestjs/core';
import { etcdFixture } from './harness/etcd.js';
import type { JsonMessage, NodeProcess } from './harness/processes.js';
import { spawnWorker, type WorkerConfig } from './support/workers.js';
import { closeApps, createApp, eventually, keysUnder, leaseIds, rawClient, uniqueNamespace } from './support/apps.js';
import { ElectionService, LockService, ShutdownError, WithLock, currentLock } from '../lib/index.js';
import { CoordinationTestingModule } from '../lib/testing/index.js';
import { ShutdownDrain } from '../lib/shutdown/shutdown-drain.js';

const JOB_MS = 3_000;

describe('graceful drain on shutdown (real etcd)', () => {
  const etcd = etcdFixture();
  const workers: NodeProcess[] = [];
  afterEach(async () => {
    await Promise.allSettled(workers.splice(0).map((w) => w.kill('SIGKILL')));
    await closeApps();
  });

  async function start(config: Omit<WorkerConfig, 'hosts' | 'use'> & { use?: WorkerConfig['use'] }, resultPrefix: string): Promise<NodeProcess> {
    const worker = spawnWorker({ use: ['drain'], hosts: etcd().endpoint, ...config }, { env: { DRAIN_RESULT_PREFIX: resultPrefix } });
    workers.push(worker);
    await worker.waitForMessage('ready', 30_000);
    return worker;
  }

  const after = (worker: NodeProcess, type: string, since: number) => worker.messages.filter((m) => m.type === type && Number(m.at) >= since);
  const logs = (worker: NodeProcess, pattern: RegExp) => worker.messages.filter((m) => m.type === 'log' && pattern.test(String(m.message)));

  it('SIGTERM: a running @WithLock job completes and records its result, new calls are refused and ticks skipped, then the lock is released and the process exits', async (t) => {
    const ns = uniqueNamespace('drain-sigterm');
    const results = `${ns.slice(0, -1)}-results/`;
    const client = rawClient(etcd().endpoint);
    try {
      const leasesBefore = new Set(await leaseIds(client));
      const a = await start({ namespace: ns, identity: 'a', ttl: 3, election: 'leader', shutdownTimeout: 20_000 }, results);
      const b = await start({ namespace: ns, identity: 'b', ttl: 3, election: 'leader', shutdownTimeout: 20_000 }, results);
      await a.waitForMessage({ type: 'tick', job: 'leader' }, 15_000); // a leads (it started first)
      a.send({ type: 'hold', name: 'explicit' });
      await a.waitForMessage('held');
      a.send({ type: 'job', id: 'a1', ms: JOB_MS });
      const started = await a.waitForMessage({ type: 'job-start', id: 'a1' });
      // b queues behind a's job: it must get the lock only once a's job has ended.
      b.send({ type: 'job', id: 'b1', ms: 50 });
      await eventually(async () => (await keysUnder(client, `${ns}drain-job/`)).length === 2, 10_000, 'b waits for the lock');

      const exited = a.exited;
      terminate(a);
      const draining = await a.waitForMessage((m) => m.type === 'log' && /waiting up to \d+ ms/.test(String(m.message)), 10_000);
      const drainAt = Number(draining.at);
      // During the drain: direct calls are refused with ShutdownError, the lock is still ours.
      for (const what of ['job', 'leader-job', 'acquire', 'tryAcquire', 'run', 'campaign']) {
        a.send({ type: 'try', what });
        const reply = await a.waitForMessage({ type: 'try-result', what }, 5_000);
        assert.equal(reply.outcome, 'SHUTTING_DOWN', `${what} during the drain: ${JSON.stringify(reply)}`);
      }
      const end = await a.waitForMessage({ type: 'job-end', id: 'a1' }, JOB_MS + 15_000);
      assert.equal(end.aborted, false, `the job's signal aborted during the drain: ${JSON.stringify(end)}`);
      assert.equal(end.recorded, true);
      assert.equal((await a.waitForMessage({ type: 'job-result', id: 'a1' })).result, 'done');
      assert.ok(Number(end.at) - Number(started.at) >= JOB_MS - 50, 'the job ran its full length');
      const exit = await withDeadline(exited, 20_000, 'a did not exit after its drain');
      assert.ok(exit.signal === 'SIGTERM' || exit.code === 0, `a exited with ${JSON.stringify(exit)}`);

      // Its result was recorded with a fenced write: the lock was still held at the end of the job.
      const recorded = await client.get(`${results}a1`).string();
      assert.equal(recorded, `done:${String(started.token)}`);
      // b got the lock only after a's job had ended (a kept it through the drain, then released it).
      const bStart = await b.waitForMessage({ type: 'job-start', id: 'b1' }, 15_000);
      assert.ok(Number(bStart.at) >= Number(end.at), `b started at ${bStart.at}, before a's job ended at ${end.at}`);
      assert.ok(BigInt(String(bStart.token)) > BigInt(String(started.token)));
      // The explicit hold was kept during the drain and ended after it, with ShutdownError.
      const lost = a.messages.find((m) => m.type === 'hold-lost');
      assert.ok(lost, 'the explicit hold never ended');
      assert.equal(lost.code, 'SHUTTING_DOWN');
      assert.ok(Number(lost.at) >= Number(end.at), 'the explicit hold was ended before the running job finished');
      // No scheduled tick ran after the drain began; ticks that came were skipped.
      assert.deepEqual(after(a, 'tick', drainAt + 1), [], 'a scheduled tick ran during the drain');
      const skipped = logs(a, /skipped: the application is shutting down/);
      assert.ok(skipped.length > 0, 'no scheduled tick was skipped during the drain (the scheduler stopped first?)');
      t.diagnostic(`drain: ${Number(end.at) - drainAt} ms until the job ended; ${skipped.length} ticks skipped; exit ${JSON.stringify(exit)}`);
      assert.equal(logs(a, /every guarded run finished/).length, 1);

      // b closes (app.close(), no signal) while a job of its own runs: the drain waits for it, and
      // then nothing of the drain (its timer) keeps b's process alive: it exits by itself.
      b.send({ type: 'job', id: 'b2', ms: 500 });
      await b.waitForMessage({ type: 'job-start', id: 'b2' });
      const bExited = b.exited;
      b.send({ type: 'close' });
      const bEnd = await b.waitForMessage({ type: 'job-end', id: 'b2' }, 10_000);
      assert.equal(bEnd.aborted, false);
      await b.waitForMessage('closed', 20_000);
      await withDeadline(bExited, 10_000, 'b\'s process stayed alive after app.close() drained (a timer left behind?)');
      assert.deepEqual(await keysUnder(client, ns), []);
      assert.deepEqual((await leaseIds(client)).filter((id) => !leasesBefore.has(id)), []);
      await client.delete().prefix(results);
    } finally {
      client.close();
    }
  });

  it('SIGTERM with shutdownTimeout shorter than the job: the signal aborts at the timeout and the process exits soon after', async (t) => {
    const ns = uniqueNamespace('drain-timeout');
    const results = `${ns.slice(0, -1)}-results/`;
    const client = rawClient(etcd().endpoint);
    try {
      const leasesBefore = new Set(await leaseIds(client));
      const a = await start({ namespace: ns, identity: 'a', ttl: 3, shutdownTimeout: 1_000 }, results);
      a.send({ type: 'job', id: 'long', ms: 60_000 });
      await a.waitForMessage({ type: 'job-start', id: 'long' });
      const exited = a.exited;
      terminate(a);
      const draining = await a.waitForMessage((m) => m.type === 'log' && /waiting up to \d+ ms/.test(String(m.message)), 10_000);
      const end = await a.waitForMessage({ type: 'job-end', id: 'long' }, 20_000);
      assert.equal(end.aborted, true);
      assert.equal(end.reason, 'SHUTTING_DOWN');
      assert.equal(end.recorded, false);
      // Not before the timeout: the drain waited (the log comes once the drain's wait starts, just after its clock started).
      assert.ok(Number(end.at) - Number(draining.at) >= 800, `aborted ${Number(end.at) - Number(draining.at)} ms into a 1000 ms drain`);
      assert.equal(logs(a, /shutdownTimeout of 1000 ms reached with 1 guarded run/).length, 1);
      const exit = await withDeadline(exited, 20_000, 'a did not exit after the drain timed out (it waited for the 60 s job?)');
      assert.ok(exit.signal === 'SIGTERM' || exit.code === 0, `a exited with ${JSON.stringify(exit)}`);
      t.diagnostic(`signal aborted ${Number(end.at) - Number(draining.at)} ms after the drain began`);
      assert.equal(await client.get(`${results}long`).string(), null);
      assert.deepEqual(await keysUnder(client, ns), []);
      assert.deepEqual((await leaseIds(client)).filter((id) => !leasesBefore.has(id)), []);
    } finally {
      client.close();
    }
  });

  it('SIGTERM on the leader: leadership is kept until the running @LeaderOnly job ends, then resigned (the next leader starts after it)', async (t) => {
    const ns = uniqueNamespace('drain-leader');
    const results = `${ns.slice(0, -1)}-results/`;
    const client = rawClient(etcd().endpoint);
    try {
      const a = await start({ namespace: ns, identity: 'a', ttl: 3, election: 'leader', shutdownTimeout: 20_000 }, results);
      await a.waitForMessage({ type: 'tick', job: 'leader' }, 15_000);
      const b = await start({ use: ['drain', 'election'], namespace: ns, identity: 'b', ttl: 3, election: 'leader', shutdownTimeout: 20_000 }, results);
      await b.waitForMessage((m) => m.type === 'state' && m.leader === 'a', 10_000);
      a.send({ type: 'leader-job', id: 'lead', ms: JOB_MS });
      const started = await a.waitForMessage({ type: 'job-start', id: 'lead' });
      const exited = a.exited;
      terminate(a);
      const end = await a.waitForMessage({ type: 'job-end', id: 'lead' }, JOB_MS + 15_000);
      assert.equal(end.aborted, false, `leadership was lost during the drain: ${JSON.stringify(end)}`);
      assert.equal(await client.get(`${results}lead`).string(), `done:${String(started.token)}`);
      const promoted = await b.waitForMessage((m: JsonMessage) => m.type === 'state' && m.isLeader === true, 20_000);
      assert.ok(Number(promoted.at) >= Number(end.at), `b led at ${promoted.at}, before a's job ended at ${end.at}`);
      const firstTick = await b.waitForMessage({ type: 'tick', job: 'leader' }, 10_000);
      assert.ok(Number(firstTick.at) >= Number(end.at));
      t.diagnostic(`b became leader ${Number(promoted.at) - Number(end.at)} ms after a's job ended`);
      await withDeadline(exited, 20_000, 'a did not exit');
      b.send({ type: 'close' });
      await b.waitForMessage('closed', 20_000);
      assert.deepEqual(await keysUnder(client, ns), []);
      await client.delete().prefix(results);
    } finally {
      client.close();
    }
  });

  it('app.close() without enableShutdownHooks drains too; shutdownTimeout 0 aborts at once', async () => {
    const ns = uniqueNamespace('drain-close');
    const client = rawClient(etcd().endpoint);
    try {
      @Injectable()
      class Job {
        started = false;
        ended?: { aborted: boolean; at: number };
        @WithLock('close-job')
        async run(ms: number): Promise<void> {
          const lock = currentLock()!;
          this.started = true;
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, ms);
            lock.signal.addEventListener('abort', () => (clearTimeout(timer), resolve()), { once: true });
          });
          this.ended = { aborted: lock.signal.aborted, at: Date.now() };
        }
      }
      for (const shutdownTimeout of [10_000, 0]) {
        const app = await createApp({ hosts: etcd().endpoint, namespace: ns, shutdownTimeout, providers: [Job] });
        const job = app.get(Job);
        const running = job.run(1_000).then(() => 'done', (err: unknown) => err);
        // Running, not just queued: a run still waiting for its lock when the drain begins is stopped instead.
        await eventually(() => job.started, 10_000, 'job runs');
        assert.equal((await keysUnder(client, `${ns}close-job/`)).length, 1);
        await app.close();
        const closedAt = Date.now();
        assert.ok(job.ended, `shutdownTimeout ${shutdownTimeout}: close() returned before the job ended`);
        assert.equal(job.ended.aborted, shutdownTimeout === 0, `shutdownTimeout ${shutdownTimeout}: ${JSON.stringify(job.ended)}`);
        assert.ok(job.ended.at <= closedAt);
        assert.equal(await running, 'done');
        assert.deepEqual(await keysUnder(client, ns), []);
      }
    } finally {
      client.close();
    }
  });

  it('the testing kit drains the same way (close waits for a running job; new calls get ShutdownError)', async () => {
    @Injectable()
    class Job {
      log: string[] = [];
      @WithLock('kit-job')
      async run(): Promise<void> {
        this.log.push('start');
        await new Promise((resolve) => setTimeout(resolve, 300));
        this.log.push(currentLock()!.signal.aborted ? 'aborted' : 'end');
      }
    }
    @Module({ imports: [CoordinationTestingModule.forRoot({ shutdownTimeout: 5_000 })], providers: [Job] })
    class KitApp {}
    const app = await NestFactory.createApplicationContext(KitApp, { logger: false });
    const job = app.get(Job);
    const locks = app.get(LockService);
    const running = job.run();
    await eventually(() => job.log.includes('start'), 5_000, 'job started');
    // A semaphore run is a guarded run too; a plain acquire queued behind the job is a wait, not a run.
    const permitRun = locks.semaphore('kit-sem', 2).withPermit(async (permit) => {
      await new Promise((resolve) => setTimeout(resolve, 400));
      return permit.signal.aborted ? 'aborted' : 'permit done';
    });
    const queued = locks.acquire('kit-job').then(() => 'acquired', (err: unknown) => err);
    await eventually(() => locks.heldLocks().length === 2, 5_000, 'the permit is held');
    const closing = app.close();
    await eventually(() => app.get(ShutdownDrain).draining, 5_000, 'the drain begins');
    const stopped = await queued;
    assert.ok(stopped instanceof ShutdownError && /stopped waiting/.test(stopped.message), `the queued acquire: ${String(stopped)}`);
    assert.equal(locks.heldLocks().length, 2, 'the running job and permit keep their holds during the drain');
    const isShutdown = (err: unknown) => err instanceof ShutdownError && err.code === 'SHUTTING_DOWN';
    await assert.rejects(locks.acquire('other'), isShutdown);
    await assert.rejects(locks.tryAcquire('other'), isShutdown);
    await assert.rejects(locks.withLock('other', () => 1), isShutdown);
    await assert.rejects(locks.semaphore('kit-sem', 2).withPermit(() => 1), isShutdown);
    await assert.rejects(locks.readWriteLock('rw').read.tryAcquire(), isShutdown);
    await assert.rejects(app.get(ElectionService).campaign('other'), isShutdown);
    await assert.rejects(app.get(ElectionService).election().run(() => 1), isShutdown);
    await assert.rejects(job.run(), isShutdown);
    await closing;
    await running;
    assert.deepEqual(job.log, ['start', 'end']);
    assert.equal(await permitRun, 'permit done');
  });

  it('testing kit: a scheduled tick that waits for the lock when the drain begins is skipped, not logged as an error', async () => {
    const lines: Array<{ level: string; message: string }> = [];
    const capture = (level: string) => (message: unknown) => void lines.push({ level, message: String(message instanceof Error ? message.message : message) });
    @Injectable()
    class Ticks {
      runs = 0;
      @Interval(30)
      @WithLock('kit-tick')
      async tick(): Promise<void> {
        this.runs++;
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    }
    @Module({ imports: [ScheduleModule.forRoot(), CoordinationTestingModule.forRoot({ shutdownTimeout: 5_000 })], providers: [Ticks] })
    class TickApp {}
    const app = await NestFactory.createApplicationContext(TickApp, {
      logger: { log: capture('log'), error: capture('error'), warn: capture('warn'), debug: capture('debug'), verbose: capture('verbose') },
    });
    const ticks = app.get(Ticks);
    await eventually(() => ticks.runs > 0, 5_000, 'ticks run');
    // Hold the tick's lock in a run of our own so that the next ticks queue behind it, then close.
    const release = deferred();
    let inside = false;
    const holding = app.get(LockService).withLock('kit-tick', () => ((inside = true), release.promise));
    await eventually(() => inside, 5_000, 'our run holds the lock');
    await new Promise((resolve) => setTimeout(resolve, 100)); // a few ticks queue
    const runsBefore = ticks.runs;
    const closing = app.close();
    await eventually(() => app.get(ShutdownDrain).draining, 5_000, 'the drain begins');
    await eventually(() => lines.some((l) => l.level === 'debug' && /Ticks\.tick\(\) skipped: the application is shutting down/.test(l.message)), 5_000, 'a queued tick was skipped');
    release.resolve();
    await holding;
    await closing;
    assert.equal(ticks.runs, runsBefore, 'a tick ran during the drain');
    assert.deepEqual(lines.filter((l) => l.level === 'error'), [], 'errors were logged');
  });
});

/** SIGTERM without the harness's kill() (which SIGKILLs after 5 s): the drain may take longer. */
function terminate(worker: NodeProcess): void {
  process.kill(worker.pid!, 'SIGTERM');
}

function deferred<T = void>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((res) => (resolve = res));
  return { promise, resolve };
}

async function withDeadline<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(message)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}
