// One firing call of a once-per-firing method: plan (misfires, re-runs, own slot), claim each
// slot in one etcd transaction, run it under currentFiring(), record its end in the ledger.
import type { Logger } from '@nestjs/common';
import type { CoordinationHold } from '../queue/hold.js';
import type { EtcdOps } from '../etcd/etcd-ops.js';
import { JobMessages } from '../coordination.messages.js';
import type { ResolvedFiringOptions } from './firing-options.js';
import { slotForCall, type PreviousCall, type SlotGrid } from './firing-schedule.js';
import { planFiring, type PlannedRun } from './firing-plan.js';
import { claimSlot, readJob, recordEnd, recordSkipped, type ClaimContext } from './firing-claims.js';
import { decodeLedger, errorText, readOps, JobKeys, type LedgerEntry } from './run-ledger.js';
import { runWithFiring } from './firing-context.js';

/** What a decorator hands over for one call (internal). */
export interface FiringRequest {
  job: string;
  options: ResolvedFiringOptions;
  grid: SlotGrid;
  /** The leadership or lock the run is under: its ownership is compared in every claim. */
  guard: CoordinationHold;
  invoke: () => unknown;
}

/** What the runner needs from the module (internal). */
export interface FiringEnvironment {
  ops: EtcdOps;
  namespace: string;
  identity: string;
  logger: Logger;
  leaseId(signal: AbortSignal): Promise<bigint>;
  /** Jobs with a firing waiting in 'queue' on this instance. */
  queued: Set<string>;
  /** The slot each job's previous call on this instance named (see slotForCall). */
  previousCalls: Map<string, PreviousCall>;
  /** Clock (ms since the epoch), injectable for tests. */
  now(): number;
}

const NOT_RUN = Symbol('not run');

export async function runFiring(env: FiringEnvironment, request: FiringRequest): Promise<unknown> {
  const { guard, options, job } = request;
  const keys = new JobKeys(env.namespace, job);
  const now = env.now();
  const current = slotForCall(request.grid, now, env.previousCalls.get(job));
  env.previousCalls.set(job, { slot: current, at: now });
  const ctx: ClaimContext = {
    ops: env.ops,
    keys,
    instance: env.identity,
    leaseId: await env.leaseId(guard.signal),
    guard: guard.ownershipCompare(),
    exclusive: options.overlap !== 'allow',
    historySize: options.historySize,
    historyMaxAge: options.historyMaxAge,
    now: env.now,
  };
  let entries = await readEntries(env, keys);
  const plan = planFiring(request.grid, entries, current, now, options);
  if (plan.missed > 0) env.logger.log(JobMessages.misfire(job, plan.missed, options.misfire, plan.runs.filter((r) => r.reason === 'misfire').length));
  let result: unknown = undefined;
  for (const [index, planned] of plan.runs.entries()) {
    if (!guard.isHeld()) break;
    if (planned.reason === 'rerun') env.logger.warn(JobMessages.rerun(job, String(planned.slot), planned.attempt));
    const outcome = await runPlanned(env, request, ctx, entries, planned);
    if (planned.reason === 'current' && outcome !== NOT_RUN) result = outcome;
    if (index < plan.runs.length - 1) entries = await readEntries(env, keys);
  }
  return result;
}

async function readEntries(env: FiringEnvironment, keys: JobKeys): Promise<LedgerEntry[]> {
  const state = await readJob(env.ops, keys, readOps(keys));
  return decodeLedger(keys.job, state.runs, state.claims);
}

async function runPlanned(env: FiringEnvironment, request: FiringRequest, ctx: ClaimContext, entries: LedgerEntry[], planned: PlannedRun): Promise<unknown> {
  const { job, options, guard } = request;
  let claim = await claimSlot(ctx, entries, planned.slot, planned.attempt, planned.modRevision);
  // Catch-up runs (misfires, re-runs) are what a failover owes: they wait for the running run
  // instead of being skipped. The call's own slot follows the overlap policy.
  const catchUp = planned.reason !== 'current';
  for (let waits = 0; claim.kind === 'overlap' && catchUp && guard.isHeld() && waits < 1000; waits++) {
    await waitForNoRun(env, ctx, guard.signal, request.grid);
    if (guard.isHeld()) claim = await claimSlot(ctx, await readEntries(env, ctx.keys), planned.slot, planned.attempt, planned.modRevision);
  }
  if (claim.kind === 'overlap' && options.overlap === 'queue' && !env.queued.has(job)) {
    env.queued.add(job);
    try {
      for (let waits = 0; claim.kind === 'overlap' && guard.isHeld() && waits < 1000; waits++) {
        await waitForNoRun(env, ctx, guard.signal, request.grid);
        if (!guard.isHeld()) break;
        const now = await readEntries(env, ctx.keys);
        // A later slot ran meanwhile (another instance's firing): the queued run is not needed any more.
        if (now.some((e) => e.run.slot > planned.slot)) {
          await recordSkipped(ctx, now, planned.slot, 'a later slot ran while it was queued (overlap: queue)');
          return NOT_RUN;
        }
        claim = await claimSlot(ctx, now, planned.slot, planned.attempt, planned.modRevision);
      }
    } finally {
      env.queued.delete(job);
    }
  }
  if (claim.kind === 'overlap') {
    const why = options.overlap === 'queue' ? 'a run is already queued (overlap: queue)' : `slot ${claim.runningSlot} still running (overlap: ${options.overlap})`;
    await recordSkipped(ctx, entries, planned.slot, why);
    env.logger.debug(JobMessages.firingSkipped(job, String(planned.slot), why));
    return NOT_RUN;
  }
  if (claim.kind !== 'claimed') {
    env.logger.debug(JobMessages.firingSkipped(job, String(planned.slot), claim.kind === 'taken' ? 'claimed by another run' : 'leadership / lock lost'));
    return NOT_RUN;
  }
  const fencingToken = env.ops.fencingToken(claim.revision);
  const firing = { job, slot: planned.slot, scheduledAt: new Date(planned.slot), attempt: planned.attempt, fencingToken, signal: guard.signal };
  let failure: unknown;
  let failed = false;
  let value: unknown;
  try {
    value = await runWithFiring(firing, request.invoke);
  } catch (err) {
    failed = true;
    failure = err;
  }
  await finish(env, ctx, planned, claim, fencingToken, failed ? 'failed' : 'succeeded', failed ? errorText(failure) : undefined);
  if (failed) {
    // The call's own slot fails like the method (the scheduler logs it); catch-up runs are logged here.
    if (planned.reason === 'current') throw failure;
    env.logger.error(`Job "${job}" slot ${planned.slot} (${planned.reason}) failed: ${errorText(failure)}`);
  }
  return value;
}

async function finish(
  env: FiringEnvironment,
  ctx: ClaimContext,
  planned: PlannedRun,
  claim: { revision: bigint; startedAt: number },
  fencingToken: bigint,
  outcome: 'succeeded' | 'failed',
  error: string | undefined,
): Promise<void> {
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      await recordEnd(ctx, planned.slot, planned.attempt, claim.revision, fencingToken, claim.startedAt, outcome, error);
      return;
    } catch (err) {
      // etcd unreachable: with at-least-once the slot stays "running" and may run again (that is the guarantee).
      if (attempt === 2) env.logger.warn(JobMessages.recordFailed(ctx.keys.job, String(planned.slot), errorText(err)));
      else await sleep(200 * (attempt + 1));
    }
  }
}

/**
 * Waits until no run of the job holds the running key (overlap 'queue'), polling its key:
 * a watch per queued firing would be one more etcd watcher for a rare, short wait.
 */
async function waitForNoRun(env: FiringEnvironment, ctx: ClaimContext, signal: AbortSignal, grid: SlotGrid): Promise<void> {
  const first = grid.next(env.now());
  const period = Number.isFinite(first) ? Math.max(1, grid.next(first) - first) : 1000;
  const pause = Math.min(250, Math.max(20, Math.floor(period / 10)));
  while (!signal.aborted) {
    const state = await readJob(env.ops, ctx.keys, [{ request_range: { key: ctx.keys.running } }]);
    if (!state.runs.length) return;
    await sleep(pause, signal);
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}
