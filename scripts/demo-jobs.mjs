// Checks of the demo (scripts/demo.mjs) for the once-per-firing jobs of the sample app
// (sample-app/jobs/leader-jobs.service.ts), from the run records every instance wrote to etcd:
//  - 'interval' (@Interval 1 s, at-most-once): no slot ran twice, across the SIGTERM and SIGKILL failovers;
//  - 'cron' (@Cron every 2 s, at-least-once, misfire 'run-all'): no slot completed twice, and no
//    slot between the first and the last one (all within the 60 s misfire window of a failover)
//    was lost: each was started, and a run cut off by a SIGKILL was run again by the next leader.

const CRON_PERIOD_MS = 2_000;

/** @returns {{ name: string, ok: boolean, detail: string }[]} */
export function onceChecks(runs) {
  const checks = [];
  const withSlot = runs.filter((r) => r.leaderOnly && typeof r.slot === 'number');
  const bySlot = (job) => {
    const map = new Map();
    for (const r of withSlot.filter((x) => x.job === job)) map.set(r.slot, [...(map.get(r.slot) ?? []), r]);
    return map;
  };
  const interval = bySlot('interval');
  const twice = [...interval].filter(([, list]) => list.length > 1);
  checks.push({
    name: 'once per firing (at most once): no @Interval slot ran twice, across the failovers',
    ok: interval.size > 0 && twice.length === 0,
    detail: twice.length
      ? twice.slice(0, 3).map(([slot, list]) => `slot ${new Date(slot).toISOString()} ran on ${list.map((r) => r.instance).join(' and ')}`).join('; ')
      : `${interval.size} slots, each run once`,
  });

  const cron = bySlot('cron');
  // At least once: a runner SIGKILLed after its work but before the library recorded the slot as
  // done is re-run by the next leader as attempt 2 (the guarantee). What must never happen is two
  // completions of one attempt: two runners that both claimed the same slot.
  const completedTwice = [...cron].filter(([, list]) => {
    const attempts = list.filter((r) => r.outcome === 'done').map((r) => r.attempt ?? 1);
    return new Set(attempts).size !== attempts.length;
  });
  checks.push({
    name: 'once per firing (at least once): no @Cron slot completed twice in one attempt',
    ok: cron.size > 0 && completedTwice.length === 0,
    detail: completedTwice.length
      ? completedTwice.slice(0, 3).map(([slot, list]) => `slot ${new Date(slot).toISOString()} completed on ${list.map((r) => r.instance).join(' and ')}`).join('; ')
      : `${cron.size} slots`,
  });
  const slots = [...cron.keys()].sort((a, b) => a - b);
  const lost = [];
  const reRuns = [...cron.values()].filter((list) => list.some((r) => (r.attempt ?? 1) > 1)).length;
  for (let slot = slots[0]; slots.length && slot <= slots.at(-1); slot += CRON_PERIOD_MS) {
    const list = cron.get(slot) ?? [];
    // A run record without an end: its process was killed mid-run; the slot then needs another attempt.
    if (list.length === 0) lost.push(`${new Date(slot).toISOString()} never started`);
    else if (list.every((r) => r.endedAt === undefined)) lost.push(`${new Date(slot).toISOString()} killed mid-run and never re-run`);
  }
  checks.push({
    name: 'once per firing (at least once): no @Cron slot lost across the SIGTERM and SIGKILL failovers',
    ok: slots.length > 0 && lost.length === 0,
    detail: lost.length ? lost.slice(0, 3).join('; ') : `${slots.length} consecutive slots, ${reRuns} re-run after a kill (attempt 2+)`,
  });
  return checks;
}
