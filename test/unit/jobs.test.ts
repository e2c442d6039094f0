import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { Cron, Interval } from '@nestjs/schedule';
import {
  cronGrid,
  cronZone,
  intervalGrid,
  nearestSlot,
  previousSlot,
  slotForCall,
  scheduleOf,
  slotsBetween,
  type CronTimeClass,
} from '../../lib/jobs/firing-schedule.js';
import { planFiring, MAX_ATTEMPTS } from '../../lib/jobs/firing-plan.js';
import { decodeLedger, encodeRun, errorText, JobKeys, pruneOps, type LedgerEntry } from '../../lib/jobs/run-ledger.js';
import { resolveFiringOptions, FIRING_DEFAULTS } from '../../lib/jobs/firing-options.js';
import { InvalidUsageError } from '../../lib/errors/coordination.errors.js';

// The CronTime @nestjs/schedule itself uses (the same lookup as lib/jobs/firing-call.ts).
const requireFromSchedule = createRequire(createRequire(import.meta.url).resolve('@nestjs/schedule'));
const { CronTime } = requireFromSchedule('cron') as { CronTime: CronTimeClass };

const entry = (slot: number, outcome: 'running' | 'succeeded', claimed = false, attempt = 1): LedgerEntry => {
  const kv = { key: new JobKeys('', 'j').run(slot), value: encodeRun({ slot, instance: 'a', attempt, token: '7', start: slot, outcome }), mod_revision: '7', create_revision: '7', version: '1', lease: '0' };
  const claims = claimed ? [{ ...kv, key: new JobKeys('', 'j').claim(slot) }] : [];
  return decodeLedger('j', [kv as never], claims as never)[0]!;
};

describe('firing slots', () => {
  const P = 1000;
  const grid = intervalGrid(P);

  it('interval slots are an epoch-aligned grid: nearest slot within half a period either way', () => {
    assert.equal(nearestSlot(grid, 5000), 5000);
    assert.equal(nearestSlot(grid, 5000 + 499), 5000);
    assert.equal(nearestSlot(grid, 5000 - 499), 5000);
    assert.equal(nearestSlot(grid, 5000 + 501), 6000);
    assert.equal(previousSlot(grid, 5999), 5000);
    assert.equal(grid.next(5000), 6000);
  });

  it('clocks skewed by up to ±40% of the period name the same slot for the same firing', () => {
    for (let firing = 10; firing < 20; firing++) {
      const real = firing * P;
      const named = [-0.4, -0.2, 0, 0.2, 0.4].map((skew) => nearestSlot(grid, real + skew * P + 3 /* event-loop lag */));
      assert.deepEqual(new Set(named), new Set([real]), `firing ${firing}: ${named}`);
    }
  });

  it('cron slots come from CronTime, in the @Cron time zone or utcOffset', () => {
    const everyFive = cronGrid(CronTime, { cronTime: '*/5 * * * * *' });
    const t = Date.UTC(2026, 0, 1, 0, 0, 5);
    assert.equal(everyFive.next(t), t + 5000);
    assert.equal(nearestSlot(everyFive, t + 2000), t);
    assert.equal(nearestSlot(everyFive, t - 2000), t);
    assert.equal(previousSlot(everyFive, t + 4999), t);
    const paris = cronGrid(CronTime, { cronTime: '0 9 * * *', timeZone: 'Europe/Paris' });
    assert.equal(new Date(paris.next(t)).toISOString(), '2026-01-01T08:00:00.000Z');
    const plus2 = cronGrid(CronTime, { cronTime: '0 9 * * *', utcOffset: 120 });
    assert.equal(new Date(plus2.next(t)).toISOString(), '2026-01-01T07:00:00.000Z');
    // Irregular schedules (weekdays only): the nearest slot still is the scheduled one.
    const weekdays = cronGrid(CronTime, { cronTime: '0 0 9 * * 1-5', timeZone: 'UTC' });
    const monday = Date.UTC(2026, 0, 5, 9);
    assert.equal(nearestSlot(weekdays, monday + 60_000), monday);
    assert.equal(previousSlot(weekdays, monday - 1), Date.UTC(2026, 0, 2, 9)); // the Friday before
    assert.equal(cronZone(undefined, -90), 'UTC-01:30');
  });

  it('reads the schedule @nestjs/schedule stored on the method', () => {
    class Jobs {
      @Cron('*/10 * * * * *', { timeZone: 'UTC' }) a() {}
      @Interval(250) b() {}
      c() {}
    }
    assert.deepEqual(scheduleOf(Jobs.prototype.a), { kind: 'cron', cronTime: '*/10 * * * * *', timeZone: 'UTC', utcOffset: undefined });
    assert.deepEqual(scheduleOf(Jobs.prototype.b), { kind: 'interval', periodMs: 250 });
    assert.equal(scheduleOf(Jobs.prototype.c), undefined);
  });

  it('an instance whose setInterval phase is near half the period names consecutive slots despite jitter', () => {
    // Calls at x.49, x+1.51, x+2.49 s: nearest rounding alone names 5000, 7000, 7000 (6000 lost).
    assert.deepEqual([5490, 6510, 7490].map((t) => nearestSlot(grid, t)), [5000, 7000, 7000]);
    let previous: { slot: number; at: number } | undefined;
    const named = [5490, 6510, 7490, 8505].map((t) => {
      const slot = slotForCall(grid, t, previous);
      previous = { slot, at: t };
      return slot;
    });
    assert.deepEqual(named, [5000, 6000, 7000, 8000]);
    // After a pause (not one gap later) it is the nearest slot again.
    assert.equal(slotForCall(grid, 20_100, { slot: 8000, at: 8505 }), 20_000);
  });

  it('slotsBetween keeps the newest `max` slots strictly inside the gap', () => {
    assert.deepEqual(slotsBetween(grid, 1000, 5000, 10), [2000, 3000, 4000]);
    assert.deepEqual(slotsBetween(grid, 1000, 5000, 2), [3000, 4000]);
  });
});

describe('firing plan', () => {
  const grid = intervalGrid(1000);
  const opts = { guarantee: 'at-most-once', misfire: 'run-once', misfireThreshold: 60_000, misfireMaxRuns: 10 } as const;

  it('normal firing: only the own slot; a slot already recorded or in the past is not run', () => {
    assert.deepEqual(planFiring(grid, [entry(9000, 'succeeded')], 10_000, 10_010, opts).runs, [{ slot: 10_000, attempt: 1, reason: 'current' }]);
    assert.deepEqual(planFiring(grid, [entry(10_000, 'succeeded')], 10_000, 10_010, opts).runs, []);
    assert.deepEqual(planFiring(grid, [entry(11_000, 'succeeded')], 10_000, 10_010, opts).runs, []);
    assert.deepEqual(planFiring(grid, [], 10_000, 10_010, opts), { runs: [{ slot: 10_000, attempt: 1, reason: 'current' }], missed: 0 });
  });

  it('misfire policies after a gap of 3 slots', () => {
    const ledger = [entry(6000, 'succeeded')];
    const plan = (misfire: 'skip' | 'run-once' | 'run-all', max = 10) => planFiring(grid, ledger, 10_000, 10_000, { ...opts, misfire, misfireMaxRuns: max });
    assert.deepEqual(plan('skip').runs.map((r) => r.slot), [10_000]);
    assert.equal(plan('skip').missed, 3);
    assert.deepEqual(plan('run-once').runs.map((r) => [r.slot, r.reason]), [[9000, 'misfire'], [10_000, 'current']]);
    assert.deepEqual(plan('run-all').runs.map((r) => r.slot), [7000, 8000, 9000, 10_000]);
    assert.deepEqual(plan('run-all', 2).runs.map((r) => r.slot), [8000, 9000, 10_000]);
  });

  it('no misfire while a run is live (the gap is overlap, not a failure)', () => {
    const runs = planFiring(grid, [entry(6000, 'running', true)], 10_000, 10_000, { ...opts, misfire: 'run-all' });
    assert.deepEqual(runs, { runs: [{ slot: 10_000, attempt: 1, reason: 'current' }], missed: 0 });
  });

  it('misfireThreshold bounds how far back missed slots are looked for', () => {
    const ledger = [entry(1000, 'succeeded')];
    const runs = planFiring(grid, ledger, 10_000, 10_000, { ...opts, misfire: 'run-all', misfireThreshold: 2500 }).runs;
    assert.deepEqual(runs.map((r) => r.slot), [8000, 9000, 10_000]);
  });

  it('at-least-once re-runs an interrupted slot (running, no live claim) as the next attempt', () => {
    const interrupted = entry(9000, 'running', false);
    assert.equal(interrupted.run.outcome, 'interrupted');
    const alo = { ...opts, guarantee: 'at-least-once' } as const;
    assert.deepEqual(planFiring(grid, [interrupted], 10_000, 10_000, alo).runs, [
      { slot: 9000, attempt: 2, reason: 'rerun', modRevision: '7' },
      { slot: 10_000, attempt: 1, reason: 'current' },
    ]);
    // Still claimed (the runner lives): not re-run. At most once: never re-run.
    assert.deepEqual(planFiring(grid, [entry(9000, 'running', true)], 10_000, 10_000, alo).runs.map((r) => r.slot), [10_000]);
    assert.deepEqual(planFiring(grid, [interrupted], 10_000, 10_000, opts).runs.map((r) => r.slot), [10_000]);
    // Bounded attempts, and only within misfireThreshold.
    assert.deepEqual(planFiring(grid, [entry(9000, 'running', false, MAX_ATTEMPTS)], 10_000, 10_000, alo).runs.map((r) => r.slot), [10_000]);
    assert.deepEqual(planFiring(grid, [interrupted], 100_000, 100_000, { ...alo, misfire: 'skip' }).runs.map((r) => r.slot), [100_000]);
  });
});

describe('run ledger', () => {
  const keys = new JobKeys('ns/', 'Reports.nightly');

  it('keys live under the reserved prefix, slots zero-padded so they sort by time', () => {
    assert.equal(keys.run(1234).toString(), 'ns/_coordination:jobs:Reports.nightly/runs/000000000001234');
    assert.equal(keys.claim(1).toString(), 'ns/_coordination:jobs:Reports.nightly/claims/000000000000001');
    assert.equal(keys.running.toString(), 'ns/_coordination:jobs:Reports.nightly/running');
  });

  it('prunes to historySize and historyMaxAge with one range delete, never the record being written', () => {
    const entries = [5000, 4000, 3000, 2000, 1000].map((slot) => entry(slot, 'succeeded'));
    const [op] = pruneOps(keys, entries, 3, 1e12, 6000, 6000);
    assert.equal(op!.request_delete_range!.range_end!.toString(), keys.run(3001).toString()); // deletes <= 3000: keeps 5000, 4000 + the new one
    const [byAge] = pruneOps(keys, entries, 100, 2500, 6000, 6000);
    assert.equal(byAge!.request_delete_range!.range_end!.toString(), keys.run(3500).toString());
    const [clamped] = pruneOps(keys, entries, 1, 1e12, 6000, 2000); // re-run of an old slot
    assert.equal(clamped!.request_delete_range!.range_end!.toString(), keys.run(2000).toString());
    assert.deepEqual(pruneOps(keys, [], 10, 1e12, 6000, 6000), []);
  });

  it('error text: name and message only, one line, truncated; never the stack or cause', () => {
    const err = new Error('boom\n  at secret', { cause: new Error('password=hunter2') });
    assert.equal(errorText(err), 'Error: boom at secret');
    assert.equal(errorText(new Error('x'.repeat(1000))).length, 300);
    assert.equal(errorText({ password: 'p' }), 'thrown: object');
  });
});

describe('firing options', () => {
  it('defaults, and typed errors naming the bad option', () => {
    const resolved = resolveFiringOptions('@LeaderOnly', { firing: 'once' });
    assert.equal(resolved.guarantee, FIRING_DEFAULTS.guarantee);
    assert.equal(resolved.misfire, 'run-once');
    assert.equal(resolved.overlap, 'skip');
    const bad = (options: object, pattern: RegExp) =>
      assert.throws(() => resolveFiringOptions('@LeaderOnly', options as never, ['election']), (err: unknown) => err instanceof InvalidUsageError && pattern.test(err.message));
    bad({ firing: 'twice' }, /invalid firing "twice"/);
    bad({ misfire: 'skip' }, /option "misfire" needs firing: 'once'/);
    bad({ firing: 'once', overlap: 'sometimes' }, /invalid overlap "sometimes".*'skip', 'queue', 'allow'/);
    bad({ firing: 'once', misfireThreshold: -1 }, /invalid misfireThreshold -1/);
    bad({ firing: 'once', historySize: 5000 }, /invalid historySize 5000 .*1 to 1000/);
    bad({ firing: 'once', misfires: 'skip' }, /unknown option "misfires"/);
    assert.throws(() => resolveFiringOptions('@LeaderOnly', { firing: 'once', job: 'a/b' }), /job/);
  });
});
