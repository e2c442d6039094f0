// Once-per-firing scheduled jobs (issue 13) on a real etcd, instances in separate processes
// (test/fixtures/commands/jobs.ts). Clock skew comes from libfaketime (Debian "faketime",
// scripts/ensure-faketime.sh) with the monotonic clock kept real (FAKETIME_DONT_FAKE_MONOTONIC=1):
// Date.now() is skewed, timers are not. Without libfaketime the skew test is skipped, saying so.
import { afterEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { etcdFixture } from './harness/etcd.js';
import type { JsonMessage, NodeProcess } from './harness/processes.js';
import { createApp, closeApps, delay, eventually, keysUnder, rawClient, uniqueNamespace } from './support/apps.js';
import { spawnWorker } from './support/workers.js';
import type { JobSpec } from './fixtures/commands/jobs.js';
import { Injectable } from '@nestjs/common';
import { ElectionService, InvalidNameError, InvalidUsageError, JobsService, LeaderOnly } from '../lib/index.js';
import { resolveFiringOptions } from '../lib/jobs/firing-options.js';
import { intervalGrid } from '../lib/jobs/firing-schedule.js';

const TTL = 2;

@Injectable()
class Unscheduled {
  @LeaderOnly({ firing: 'once' })
  async work(): Promise<void> {}
}

function faketimeLibrary(): { lib?: string; why?: string } {
  try {
    const out = execFileSync('bash', ['scripts/ensure-faketime.sh'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return { lib: /ensure-faketime: (\S+)/.exec(out)?.[1] };
  } catch (err) {
    return { why: String((err as { stderr?: string }).stderr ?? err).trim() };
  }
}

interface Run {
  job: string;
  slot: number;
  attempt: number;
  token: bigint;
  worker: string;
  start: number;
  end?: number;
}

/** Every run reported by `workers` (alive or dead), one entry per run-start, with its end when reported. */
function runsOf(workers: NodeProcess[], job: string): Run[] {
  const runs: Run[] = [];
  for (const w of workers) {
    const ends = new Map<string, number>();
    for (const m of w.messages) if (m.type === 'run-end' && m.job === job) ends.set(`${m.slot}/${m.attempt}`, Number(m.at));
    for (const m of w.messages) {
      if (m.type !== 'run-start' || m.job !== job) continue;
      runs.push({ job, slot: Number(m.slot), attempt: Number(m.attempt), token: BigInt(String(m.token)), worker: w.name, start: Number(m.at), end: ends.get(`${m.slot}/${m.attempt}`) });
    }
  }
  return runs.sort((a, b) => a.slot - b.slot || a.attempt - b.attempt);
}

function bySlot(runs: Run[]): Map<number, Run[]> {
  const map = new Map<number, Run[]>();
  for (const r of runs) map.set(r.slot, [...(map.get(r.slot) ?? []), r]);
  return map;
}

/** The first message matching `predicate` from any of `list` (polling: no waiter left to time out later). */
async function firstMessage(list: NodeProcess[], predicate: (m: JsonMessage) => boolean, timeoutMs: number, what: string) {
  let found: { worker: NodeProcess; message: JsonMessage } | undefined;
  await eventually(() => {
    for (const worker of list) {
      const message = worker.messages.find(predicate);
      if (message) found = { worker, message };
    }
    return found !== undefined;
  }, timeoutMs, what);
  return found!;
}

const describeSlots = (runs: Run[]) => runs.map((r) => `${r.slot % 100_000}#${r.attempt}@${r.worker}${r.start - r.slot >= 0 ? "+" : ""}${r.start - r.slot}`).join(" ");

describe('once-per-firing jobs (real etcd, separate processes)', () => {
  const etcd = etcdFixture();
  const workers: NodeProcess[] = [];
  afterEach(async () => {
    await Promise.allSettled(workers.splice(0).map((w) => w.kill('SIGKILL')));
    await closeApps();
  });

  function start(ns: string, identity: string, specs: JobSpec[], env: NodeJS.ProcessEnv = {}): NodeProcess {
    const worker = spawnWorker(
      { use: ['jobs'], hosts: etcd().endpoint, namespace: ns, identity, ttl: TTL, election: 'leader' },
      { env: { JOBS_FIXTURE: JSON.stringify(specs), ...env } },
    );
    workers.push(worker);
    return worker;
  }

  async function closeAll(list: NodeProcess[]): Promise<void> {
    // A worker still starting (a loaded machine) is closed once it is ready: a close sent only to
    // the ready ones left a late starter running, and this wait hung until the file's timeout.
    await Promise.all(
      list.map(async (w) => {
        const ready = w.messages.some((m) => m.type === 'ready') || (await w.waitForMessage('ready', 30_000).then(() => true, () => false));
        if (ready) w.send({ type: 'close' });
        else await w.kill('SIGKILL').catch(() => undefined);
        await w.exited;
      }),
    );
  }

  async function onlyLedgerLeft(ns: string): Promise<string[]> {
    const client = rawClient(etcd().endpoint);
    try {
      let keys: string[] = [];
      // Leases of closed apps are revoked at close; allow a moment for a killed one's to expire.
      await eventually(async () => {
        keys = await keysUnder(client, ns);
        return keys.every((k) => /_coordination:jobs:[^/]+\/runs\/\d{15}$/.test(k.slice(ns.length)));
      }, (TTL + 5) * 1000, 'only ledger records left in etcd');
      return keys;
    } finally {
      client.close();
    }
  }

  it('3 instances with clocks skewed by -40%, 0 and +40% of the period: every slot runs exactly once', async (t) => {
    const { lib, why } = faketimeLibrary();
    if (!lib) return t.skip(`libfaketime not available: ${why}`);
    const ns = uniqueNamespace('jobs-skew');
    const specs: JobSpec[] = [
      // Every instance's scheduler fires this one (each at its own clock's second): the claim decides.
      { name: 'everySecond', every: '* * * * * *', guard: 'lock', durationMs: 100 },
      { name: 'leaderTick', every: 1000, guard: 'leader', durationMs: 100, scheduleFirst: true },
    ];
    const skewed = (seconds: string) => ({ LD_PRELOAD: lib, FAKETIME: seconds, FAKETIME_DONT_FAKE_MONOTONIC: '1', FAKETIME_NO_CACHE: '1' });
    const fleet = [start(ns, 'slow', specs, skewed('-0.4')), start(ns, 'exact', specs), start(ns, 'fast', specs, skewed('+0.4'))];
    await Promise.all(fleet.map((w) => w.waitForMessage('ready', 30_000)));
    const from = Date.now() + 1500;
    await delay(7000);
    const until = Date.now() - 1500;
    await closeAll(fleet);

    const cron = runsOf(fleet, 'everySecond');
    const slots = bySlot(cron);
    t.diagnostic(`everySecond: ${describeSlots(cron)}`);
    for (const [slot, runs] of slots) assert.equal(runs.length, 1, `slot ${slot} ran ${runs.length} times: ${describeSlots(runs)}`);
    for (let slot = Math.ceil(from / 1000) * 1000; slot <= until; slot += 1000) {
      assert.ok(slots.has(slot), `slot ${slot} never ran (runs: ${describeSlots(cron)})`);
    }
    const ticks = runsOf(fleet, 'leaderTick');
    const tickSlots = bySlot(ticks);
    for (const [slot, runs] of tickSlots) assert.equal(runs.length, 1, `leaderTick slot ${slot} ran twice: ${describeSlots(runs)}`);
    const sorted = [...tickSlots.keys()].sort((a, b) => a - b);
    assert.ok(sorted.length >= 4, `leaderTick ran ${sorted.length} slots`);
    for (let i = 1; i < sorted.length; i++) assert.equal(sorted[i]! - sorted[i - 1]!, 1000, `leaderTick skipped a slot: ${sorted}`);
    await onlyLedgerLeft(ns);
  });

  it('leader SIGKILLed during a run and just before a firing: at-most-once never runs a slot twice; at-least-once re-runs it once with a larger token and loses none', async (t) => {
    const ns = uniqueNamespace('jobs-kill');
    const specs: JobSpec[] = [
      { name: 'amo', every: 1000, guard: 'leader', durationMs: 150, guarantee: 'at-most-once' },
      { name: 'alo', every: 1000, guard: 'leader', durationMs: 150, guarantee: 'at-least-once', misfire: 'run-all', overlap: 'queue' },
    ];
    const first = start(ns, 'a', specs);
    await first.waitForMessage({ type: 'leader', isLeader: true }, 30_000);
    const others = [start(ns, 'b', specs), start(ns, 'c', specs)];
    await Promise.all(others.map((w) => w.waitForMessage('ready', 30_000)));
    const all = [first, ...others];

    // Kill 1: during a run of 'alo' (killed as soon as it says it started; the run takes 150 ms).
    const waitFrom = Date.now();
    const started = await first.waitForMessage((m) => m.type === 'run-start' && m.job === 'alo' && Number(m.at) >= waitFrom, 15_000);
    await first.kill('SIGKILL');
    const interruptedSlot = Number(started.slot);
    const { worker: second } = await firstMessage(others, (m) => m.type === 'run-start' && m.job === 'alo' && Number(m.slot) === interruptedSlot, (TTL + 15) * 1000, 're-run of the interrupted slot');
    // Kill 2: the new leader, ~150 ms before its next firing (its calls come every 1000 ms).
    await second.waitForMessage((m) => m.type === 'run-end' && m.job === 'alo' && Number(m.slot) > interruptedSlot + 1000, 15_000);
    const lastStart = Number([...second.messages].reverse().find((m) => m.type === 'run-start' && m.job === 'alo')!.at);
    const nextCall = lastStart + 1000 * Math.ceil((Date.now() + 200 - lastStart) / 1000);
    await delay(Math.max(0, nextCall - 150 - Date.now()));
    await second.kill('SIGKILL');
    const killedAt = Date.now();
    const third = others.find((w) => w !== second)!;
    await third.waitForMessage((m) => m.type === 'run-end' && m.job === 'alo' && Number(m.at) > killedAt + 2500, (TTL + 15) * 1000);
    await delay(1200);
    await closeAll([third]);

    const amo = runsOf(all, 'amo');
    const alo = runsOf(all, 'alo');
    t.diagnostic(`amo: ${describeSlots(amo)}`);
    t.diagnostic(`alo: ${describeSlots(alo)}`);
    for (const [slot, runs] of bySlot(amo)) assert.equal(runs.length, 1, `at-most-once slot ${slot} ran ${runs.length} times`);
    const aloSlots = bySlot(alo);
    const attempts = aloSlots.get(interruptedSlot)!;
    assert.deepEqual(attempts.map((r) => [r.attempt, r.worker]), [[1, 'a'], [2, second.name]], `interrupted slot: ${describeSlots(attempts)}`);
    assert.ok(attempts[1]!.token > attempts[0]!.token, 'the re-run has a larger fencing token');
    assert.equal(attempts[0]!.end, undefined, 'the first attempt was really interrupted');
    for (const [slot, runs] of aloSlots) {
      if (slot === interruptedSlot) continue;
      const finished = runs.filter((r) => r.end !== undefined);
      assert.ok(finished.length <= 1, `at-least-once slot ${slot} finished twice: ${describeSlots(runs)}`);
    }
    const ordered = [...aloSlots.keys()].sort((a, b) => a - b);
    for (let slot = ordered[0]!; slot <= ordered.at(-1)!; slot += 1000) {
      const done = (aloSlots.get(slot) ?? []).some((r) => r.end !== undefined);
      assert.ok(done, `at-least-once lost slot ${slot} across the failovers (runs: ${describeSlots(alo)})`);
    }
    await onlyLedgerLeft(ns);
  });

  it('whole cluster stopped for 3+ periods and restarted: each misfire policy is applied once', async (t) => {
    const ns = uniqueNamespace('jobs-restart');
    const specs: JobSpec[] = [
      { name: 'skipper', every: 1000, guard: 'leader', misfire: 'skip' },
      { name: 'once', every: 1000, guard: 'leader', misfire: 'run-once' },
      { name: 'all', every: 1000, guard: 'leader', misfire: 'run-all', guarantee: 'at-least-once' },
    ];
    const before = [start(ns, 'a', specs), start(ns, 'b', specs)];
    await firstMessage(before, (m) => m.type === 'run-end' && m.job === 'all', 30_000, 'a first run');
    await delay(1500);
    await closeAll(before);
    await delay(3500);
    const restartedAt = Date.now();
    const after = [start(ns, 'c', specs), start(ns, 'd', specs)];
    await firstMessage(after, (m) => m.type === 'run-end' && m.job === 'skipper', 30_000, 'a run after the restart');
    await delay(2500);
    await closeAll(after);

    for (const job of ['skipper', 'once', 'all']) {
      const runs = runsOf([...before, ...after], job);
      t.diagnostic(`${job}: ${describeSlots(runs)}`);
      for (const [slot, list] of bySlot(runs)) assert.equal(list.length, 1, `${job} slot ${slot} ran ${list.length} times`);
      const last = Math.max(...runsOf(before, job).map((r) => r.slot));
      const laterRuns = runsOf(after, job);
      const later = laterRuns.map((r) => r.slot);
      // The first run after the restart came from a scheduler call: that call's own slot is the
      // nearest one to its time (the runs before it in the same call are the misfire policy's).
      const firstRun = laterRuns.reduce((a, b) => (b.start < a.start ? b : a));
      const runner = after.find((w) => w.name === firstRun.worker)!;
      const call = runner.messages.filter((m) => m.type === 'call' && m.job === job && Number(m.at) <= firstRun.start).at(-1)!;
      const firstCurrent = Math.round(Number(call.at) / 1000) * 1000;
      const missed = later.filter((s) => s > last && s < firstCurrent);
      const gap = (firstCurrent - last) / 1000 - 1;
      assert.ok(gap >= 3, `${job}: only ${gap} slots were missed`);
      if (job === 'skipper') assert.deepEqual(missed, []);
      if (job === 'once') assert.deepEqual(missed, [firstCurrent - 1000], 'run-once runs the latest missed slot, once');
      // run-all: every missed slot once, bounded by misfireMaxRuns (default 10: the newest ones).
      const expected = Array.from({ length: gap }, (_, i) => last + (i + 1) * 1000).slice(-10);
      if (job === 'all') assert.deepEqual(missed, expected, 'run-all runs every missed slot once (at most misfireMaxRuns)');
    }
    await onlyLedgerLeft(ns);
  });

  it('overlap policies with a job longer than its period, across two instances', async (t) => {
    const ns = uniqueNamespace('jobs-overlap');
    const long = { every: '* * * * * *', guard: 'lock', permits: 2, durationMs: 2300 } as const;
    const specs: JobSpec[] = [
      { name: 'ovSkip', ...long, overlap: 'skip' },
      { name: 'ovQueue', ...long, overlap: 'queue' },
      { name: 'ovAllow', ...long, overlap: 'allow' },
    ];
    const fleet = [start(ns, 'a', specs), start(ns, 'b', specs)];
    await Promise.all(fleet.map((w) => w.waitForMessage('ready', 30_000)));
    await delay(8000);
    fleet[0]!.send({ type: 'history', job: 'ovSkip' });
    const history = (await fleet[0]!.waitForMessage('history', 10_000)).runs as Array<{ outcome: string }>;
    fleet[0]!.send({ type: 'history', job: 'ovQueue' });
    const queueLedger = (await fleet[0]!.waitForMessage({ type: 'history', job: 'ovQueue' }, 10_000)).runs as Array<{ slot: number; outcome: string; instance: string }>;
    t.diagnostic(`ovQueue ledger: ${queueLedger.map((r) => `${r.slot % 100_000}:${r.outcome}@${r.instance}`).join(' ')}`);
    await closeAll(fleet);
    const overlapping = (runs: Run[]) => {
      const done = runs.filter((r) => r.end !== undefined).sort((a, b) => a.start - b.start);
      return done.filter((r, i) => i > 0 && r.start < done[i - 1]!.end!).length;
    };
    for (const job of ['ovSkip', 'ovQueue', 'ovAllow']) {
      const runs = runsOf(fleet, job);
      t.diagnostic(`${job}: ${describeSlots(runs)}`);
      for (const [slot, list] of bySlot(runs)) assert.equal(list.length, 1, `${job} slot ${slot} ran twice`);
      assert.ok(runs.length >= 2, `${job} ran ${runs.length} times`);
    }
    assert.equal(overlapping(runsOf(fleet, 'ovSkip')), 0, 'overlap skip: runs never overlap');
    assert.equal(overlapping(runsOf(fleet, 'ovQueue')), 0, 'overlap queue: runs never overlap');
    assert.ok(overlapping(runsOf(fleet, 'ovAllow')) > 0, 'overlap allow: runs overlap');
    assert.ok(history.some((r) => r.outcome === 'skipped'), 'skipped firings are in the ledger');
    // queue: the queued firing starts right after the previous run ends (not a period later).
    const queued = runsOf(fleet, 'ovQueue').filter((r) => r.end !== undefined).sort((a, b) => a.start - b.start);
    const gaps = queued.slice(1).map((r, i) => r.start - queued[i]!.end!);
    t.diagnostic(`ovQueue gaps between runs (ms): ${gaps.join(' ')}`);
    assert.ok(gaps.some((g) => g < 600), `no queued run started right after the previous one: ${gaps}`);
    await onlyLedgerLeft(ns);
  });

  it('the ledger stays bounded after 1,000 firings; a slot is never run twice; errors are recorded without secrets; only the ledger is left', async (t) => {
    const ns = uniqueNamespace('jobs-ledger');
    const app = await createApp({ hosts: etcd().endpoint, namespace: ns, election: 'leader', sessionTtl: TTL, providers: [Unscheduled] });
    const elections = app.get(ElectionService);
    await eventually(() => elections.isLeader(), 20_000, 'leadership');
    const jobs = app.get(JobsService);
    let clock = 1_700_000_000_000;
    // The ledger API driven directly with an injected clock: 1,000 slots without waiting 1,000 periods.
    (jobs as unknown as { environment: { now: () => number } }).environment.now = () => clock;
    const options = resolveFiringOptions('@test', { firing: 'once', historySize: 25, misfire: 'skip' });
    const grid = intervalGrid(1000);
    const fire = (invoke: () => unknown) => jobs.fire({ job: 'bulk', options, grid, guard: elections.leadership()!, invoke });
    let runs = 0;
    const began = Date.now();
    for (let i = 0; i < 1000; i++) {
      clock += 1000;
      await fire(() => runs++);
    }
    t.diagnostic(`1,000 firings in ${Date.now() - began} ms`);
    assert.equal(runs, 1000);
    // The same slot again (another instance, a late call): not run.
    assert.equal(await fire(() => runs++), undefined);
    assert.equal(runs, 1000);
    // Concurrent claims of one slot (no running key with overlap 'allow'): etcd's create-revision
    // compare lets exactly one run.
    clock += 1000;
    const allow = resolveFiringOptions('@test', { firing: 'once', overlap: 'allow', misfire: 'skip' });
    let raced = 0;
    await Promise.all(Array.from({ length: 5 }, () => jobs.fire({ job: 'race', options: allow, grid, guard: elections.leadership()!, invoke: () => raced++ })));
    assert.equal(raced, 1, 'five concurrent claims of one slot ran it once');
    clock += 1000;
    const secret = new Error('connect failed', { cause: new Error('password=hunter2') });
    await assert.rejects(fire(() => Promise.reject(secret)), /connect failed/);
    const history = await jobs.history('bulk');
    assert.equal(history.length, 25);
    assert.equal(history[0]!.slot, clock);
    assert.equal(history[0]!.outcome, 'failed');
    assert.equal(history[0]!.error, 'Error: connect failed');
    assert.ok(history.slice(1).every((r) => r.outcome === 'succeeded' && r.attempt === 1));
    assert.ok(history.every((r, i) => i === 0 || r.fencingToken < history[i - 1]!.fencingToken), 'tokens grow with slots');
    assert.deepEqual(await jobs.lastRun('bulk'), history[0]);
    // firing: 'once' without @Cron / @Interval: each call rejects, typed, saying what is missing.
    await assert.rejects(app.get(Unscheduled).work(), (err: unknown) => err instanceof InvalidUsageError && /needs a @Cron/.test(err.message));
    await assert.rejects(jobs.history('bad/name'), InvalidNameError);
    await app.close();
    const keys = await onlyLedgerLeft(ns);
    assert.equal(keys.length, 25 + 1, 'the 25 records of "bulk" and the one of "race"');
  });
});
