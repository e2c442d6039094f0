// What one firing call has to run: interrupted at-least-once runs, missed slots (misfire
// policy) and its own slot. Pure: unit-tested in test/unit/jobs-plan.test.ts.
import type { ResolvedFiringOptions } from './firing-options.js';
import { slotsBetween, type SlotGrid } from './firing-schedule.js';
import type { LedgerEntry } from './run-ledger.js';

/** One slot to claim and run. */
export interface PlannedRun {
  slot: number;
  attempt: number;
  /** Why: the call's own slot, a missed slot, or a re-run of an interrupted one. */
  reason: 'current' | 'misfire' | 'rerun';
  /** For a re-run: the mod revision of the interrupted record (the claim compares it). */
  modRevision?: string;
}

export interface FiringPlan {
  runs: PlannedRun[];
  /** Missed slots found within misfireThreshold (before the policy chose among them). */
  missed: number;
}

/** Attempts of one slot before it is left as interrupted (a job that kills its runner every time). */
export const MAX_ATTEMPTS = 5;

/**
 * Plans a firing at `now` for slot `current`, given the ledger (`entries`). Missed slots are
 * the slots after the newest recorded one and within `misfireThreshold`: with an empty ledger
 * (first deployment, or everything aged out) nothing is missed.
 */
export function planFiring(
  grid: SlotGrid,
  entries: readonly LedgerEntry[],
  current: number,
  now: number,
  options: Pick<ResolvedFiringOptions, 'guarantee' | 'misfire' | 'misfireThreshold' | 'misfireMaxRuns'>,
): FiringPlan {
  const horizon = now - options.misfireThreshold;
  const runs: PlannedRun[] = [];
  const known = new Set(entries.map((e) => e.run.slot));
  if (options.guarantee === 'at-least-once') {
    for (const entry of entries) {
      const { run } = entry;
      if (run.outcome !== 'interrupted' || run.slot > current || run.attempt >= MAX_ATTEMPTS) continue;
      if (run.slot < horizon && run.slot !== current) continue;
      runs.push({ slot: run.slot, attempt: run.attempt + 1, reason: 'rerun', modRevision: entry.modRevision });
    }
  }
  let missed = 0;
  const latest = entries.length > 0 ? Math.max(...known) : Number.NEGATIVE_INFINITY;
  // While a run is live somewhere, a gap after it comes from overlap (skipped / queued firings),
  // not from a failure: that is the overlap policy's business, not a misfire.
  const active = entries.some((e) => e.claimed);
  if (entries.length > 0 && !active) {
    const after = Math.max(latest, horizon - 1);
    if (after < current) {
      const limit = options.misfire === 'run-all' ? options.misfireMaxRuns : 1;
      const gap = slotsBetween(grid, after, current, Math.max(limit, 1));
      // slotsBetween keeps the newest `limit`; count every missed slot for the log.
      missed = countBetween(grid, after, current, gap.length);
      const chosen = options.misfire === 'skip' ? [] : gap.slice(-limit);
      for (const slot of chosen) if (!known.has(slot)) runs.push({ slot, attempt: 1, reason: 'misfire' });
    }
  }
  // A slot older than the newest recorded one is the past (a clock far behind): never run it.
  if (current > latest) runs.push({ slot: current, attempt: 1, reason: 'current' });
  runs.sort((a, b) => a.slot - b.slot);
  return { runs, missed };
}

function countBetween(grid: SlotGrid, after: number, before: number, atLeast: number): number {
  let count = 0;
  for (let slot = grid.next(after); slot < before && count < 200_000; slot = grid.next(slot)) count++;
  return Math.max(count, atLeast);
}
