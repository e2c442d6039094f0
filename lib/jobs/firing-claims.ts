// The etcd transactions of a once-per-firing run: claim (one txn, before the method runs),
// "skipped" record, and the run's end. Key layout: run-ledger.ts.
import type { ICompare, IKeyValue, IRequestOp } from 'etcd3';
import type { EtcdOps } from '../etcd/etcd-ops.js';
import { encodeRun, pruneOps, type JobKeys, type LedgerEntry, type RunOutcome } from './run-ledger.js';

/** Who claims, and under what (internal). */
export interface ClaimContext {
  ops: EtcdOps;
  keys: JobKeys;
  instance: string;
  leaseId: bigint;
  /** "The leadership / lock is still ours", checked by etcd in the same transaction. */
  guard: ICompare;
  /** Whether the job takes the `running` key (overlap 'skip' / 'queue'). */
  exclusive: boolean;
  historySize: number;
  historyMaxAge: number;
  /** Clock (ms since the epoch) for start times and the ledger's age limit. */
  now(): number;
}

export type ClaimResult =
  | { kind: 'claimed'; revision: bigint; startedAt: number }
  | { kind: 'taken' }
  | { kind: 'overlap'; runningSlot?: number }
  | { kind: 'guard-lost' };

const create0 = (key: Buffer): ICompare => ({ key, target: 'Create', result: 'Equal', create_revision: '0' });

/**
 * Claims `slot` (attempt 1: its record must not exist; attempt n: the interrupted record must be
 * unchanged and have no live claim), in ONE transaction that also writes the ledger record,
 * the claim and the running key on our lease, and prunes the ledger.
 */
export async function claimSlot(
  ctx: ClaimContext,
  entries: readonly LedgerEntry[],
  slot: number,
  attempt: number,
  modRevision: string | undefined,
): Promise<ClaimResult> {
  const { keys } = ctx;
  const runKey = keys.run(slot);
  const lease = ctx.leaseId.toString();
  const compare: ICompare[] = [ctx.guard];
  if (attempt === 1 || modRevision === undefined) compare.push(create0(runKey));
  else compare.push({ key: runKey, target: 'Mod', result: 'Equal', mod_revision: modRevision }, create0(keys.claim(slot)));
  if (ctx.exclusive) compare.push(create0(keys.running));
  const startedAt = ctx.now();
  const record = encodeRun({ slot, instance: ctx.instance, attempt, token: '0', start: startedAt, outcome: 'running' });
  const success: IRequestOp[] = [
    { request_put: { key: runKey, value: record } },
    { request_put: { key: keys.claim(slot), value: Buffer.from(ctx.instance), lease } },
    ...(ctx.exclusive ? [{ request_put: { key: keys.running, value: Buffer.from(String(slot)), lease } }] : []),
    ...pruneOps(keys, [...entries], ctx.historySize, ctx.historyMaxAge, startedAt, slot),
  ];
  const failure: IRequestOp[] = [
    { request_range: { key: runKey } },
    { request_range: { key: keys.running } },
    { request_range: { key: ctx.guard.key } },
  ];
  const res = await ctx.ops.txn({ compare, success, failure }, `claim of job "${keys.job}" slot ${slot}`);
  if (res.succeeded) return { kind: 'claimed', revision: BigInt(res.header.revision), startedAt };
  const [run, running, guard] = res.responses.map((r) => r.response_range?.kvs?.[0] as IKeyValue | undefined);
  if (!guard || guard.create_revision !== ctx.guard.create_revision) return { kind: 'guard-lost' };
  const slotFree = attempt === 1 || modRevision === undefined ? run === undefined : run?.mod_revision === modRevision;
  if (!slotFree) return { kind: 'taken' };
  if (ctx.exclusive && running) return { kind: 'overlap', runningSlot: Number(running.value.toString('utf8')) };
  return { kind: 'taken' }; // the re-run's slot got a live claim meanwhile
}

/** Records `slot` as skipped (overlap), unless someone recorded it meanwhile. */
export async function recordSkipped(ctx: ClaimContext, entries: readonly LedgerEntry[], slot: number, why: string): Promise<boolean> {
  const { keys } = ctx;
  const now = ctx.now();
  const record = encodeRun({ slot, instance: ctx.instance, attempt: 1, token: '0', start: now, end: now, outcome: 'skipped', error: why });
  const res = await ctx.ops.txn(
    {
      compare: [ctx.guard, create0(keys.run(slot))],
      success: [{ request_put: { key: keys.run(slot), value: record } }, ...pruneOps(keys, [...entries], ctx.historySize, ctx.historyMaxAge, now, slot)],
    },
    `skip record of job "${keys.job}" slot ${slot}`,
  );
  return res.succeeded;
}

/**
 * Records the end of our claimed run and deletes the claim and running key, only while the
 * record is still the one our claim wrote (a later attempt's record is never overwritten).
 * Resolves false when it was not ours any more.
 */
export async function recordEnd(
  ctx: ClaimContext,
  slot: number,
  attempt: number,
  claimRevision: bigint,
  fencingToken: bigint,
  startedAt: number,
  outcome: Exclude<RunOutcome, 'running' | 'interrupted'>,
  error: string | undefined,
): Promise<boolean> {
  const { keys } = ctx;
  const record = encodeRun({
    slot, instance: ctx.instance, attempt, token: fencingToken.toString(), start: startedAt, end: ctx.now(), outcome,
    ...(error !== undefined ? { error } : {}),
  });
  const mine: ICompare = { key: keys.run(slot), target: 'Mod', result: 'Equal', mod_revision: claimRevision.toString() };
  const ops: IRequestOp[] = [{ request_put: { key: keys.run(slot), value: record } }, { request_delete_range: { key: keys.claim(slot) } }];
  const what = `end record of job "${keys.job}" slot ${slot}`;
  if (ctx.exclusive) {
    // The running key too, but only if it is ours (our lease may have ended and another run taken it).
    const runningMine: ICompare = { key: keys.running, target: 'Create', result: 'Equal', create_revision: claimRevision.toString() };
    const res = await ctx.ops.txn({ compare: [mine, runningMine], success: [...ops, { request_delete_range: { key: keys.running } }] }, what);
    if (res.succeeded) return true;
  }
  const res = await ctx.ops.txn({ compare: [mine], success: ops }, what);
  return res.succeeded;
}

/** Reads a job's ledger, claims and running key in one round trip. */
export async function readJob(ops: EtcdOps, keys: JobKeys, readOps: IRequestOp[]): Promise<{ runs: IKeyValue[]; claims: IKeyValue[]; running?: IKeyValue }> {
  const res = await ops.txn({ compare: [], success: readOps }, `read of job "${keys.job}"`);
  const [runs, claims, running] = res.responses.map((r) => (r.response_range?.kvs ?? []) as IKeyValue[]);
  return { runs: runs ?? [], claims: claims ?? [], running: running?.[0] };
}
