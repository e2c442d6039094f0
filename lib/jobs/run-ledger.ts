// The run ledger and the claims of once-per-firing jobs, as etcd keys (see README "Once per firing").
//   <ns>_coordination:jobs:<job>/runs/<slot>    one record per slot run (or skipped): the ledger, no lease
//   <ns>_coordination:jobs:<job>/claims/<slot>  the live claim of a run, on the runner's session lease
//   <ns>_coordination:jobs:<job>/running        the job's current run, on the lease (overlap 'skip'/'queue')
// <slot> is the slot's time in ms since the epoch, zero-padded to 15 digits so keys sort by time.
// Claims and the running key are deleted when the run is recorded, or vanish with the lease:
// after shutdown only runs/ remains, bounded to historySize records no older than historyMaxAge.
import type { IKeyValue, IRequestOp } from 'etcd3';
import { internalName, prefixRangeEnd } from '../etcd/keys.js';

/** How a run ended, as recorded. `running` with no live claim is reported as `interrupted`. */
export type RunOutcome = 'running' | 'succeeded' | 'failed' | 'skipped' | 'interrupted';

/** One run of a job, as kept in the ledger (`JobsService.history()`). */
export interface JobRun {
  /** The job name. */
  job: string;
  /** The slot: its scheduled time in ms since the epoch. */
  slot: number;
  /** The slot's scheduled time. */
  scheduledAt: Date;
  /** Identity of the instance that ran (or skipped) it. */
  instance: string;
  /** 1 for the first run of the slot, 2+ for at-least-once re-runs after the runner died. */
  attempt: number;
  /** Fencing token of the claim (etcd revision): larger for every later attempt or slot. */
  fencingToken: bigint;
  /** When the run started (the runner's clock). */
  startedAt: Date;
  /** When it ended, unless still running or interrupted. */
  endedAt?: Date;
  outcome: RunOutcome;
  /** Why it was skipped, or the error's message (its name and message only, truncated to 300 characters: no stack, no cause). */
  error?: string;
}

/** The record as stored (JSON, numbers as strings where they are BigInt). */
interface StoredRun {
  v: 1;
  slot: number;
  instance: string;
  attempt: number;
  token: string;
  start: number;
  end?: number;
  outcome: Exclude<RunOutcome, 'interrupted'>;
  error?: string;
}

const SLOT_DIGITS = 15;

export class JobKeys {
  readonly base: string;
  constructor(namespace: string, readonly job: string) {
    this.base = `${namespace}${internalName('jobs', job)}/`;
  }
  run(slot: number): Buffer {
    return Buffer.from(`${this.base}runs/${slotText(slot)}`);
  }
  claim(slot: number): Buffer {
    return Buffer.from(`${this.base}claims/${slotText(slot)}`);
  }
  get running(): Buffer {
    return Buffer.from(`${this.base}running`);
  }
  get runsPrefix(): Buffer {
    return Buffer.from(`${this.base}runs/`);
  }
  get claimsPrefix(): Buffer {
    return Buffer.from(`${this.base}claims/`);
  }
  /** Every key of the job. */
  get all(): Buffer {
    return Buffer.from(this.base);
  }
}

export function slotText(slot: number): string {
  return String(Math.max(0, Math.trunc(slot))).padStart(SLOT_DIGITS, '0');
}

const slotOfKey = (key: Buffer): number => Number(key.toString('utf8').slice(-SLOT_DIGITS));

export const MAX_ERROR_LENGTH = 300;

/** What the ledger keeps of an error: name and message, one line, truncated. Never the stack or cause (may hold secrets). */
export function errorText(err: unknown): string {
  const text = err instanceof Error ? `${err.name}: ${err.message}` : `thrown: ${typeof err === 'string' ? err : typeof err}`;
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > MAX_ERROR_LENGTH ? `${line.slice(0, MAX_ERROR_LENGTH - 1)}…` : line;
}

export function encodeRun(run: Omit<StoredRun, 'v'>): Buffer {
  return Buffer.from(JSON.stringify({ v: 1, ...run }));
}

function decodeStored(kv: IKeyValue): StoredRun | undefined {
  try {
    const parsed = JSON.parse(kv.value.toString('utf8')) as StoredRun;
    return parsed && parsed.v === 1 && typeof parsed.slot === 'number' ? parsed : undefined;
  } catch {
    return undefined; // not ours (or a future format): ignored, never trusted
  }
}

/** A ledger record read from etcd, with what a claim transaction compares. */
export interface LedgerEntry {
  run: JobRun;
  modRevision: string;
  /** Whether a live claim (on some runner's lease) exists for the slot. */
  claimed: boolean;
}

/** Decodes the ledger's records (`runs`, any order) given the live claims; newest slot first. */
export function decodeLedger(job: string, runs: IKeyValue[], claims: IKeyValue[]): LedgerEntry[] {
  const claimed = new Set(claims.map((kv) => slotOfKey(kv.key)));
  const entries: LedgerEntry[] = [];
  for (const kv of runs) {
    const stored = decodeStored(kv);
    if (!stored) continue;
    const live = claimed.has(stored.slot);
    entries.push({
      modRevision: kv.mod_revision,
      claimed: live,
      run: {
        job,
        slot: stored.slot,
        scheduledAt: new Date(stored.slot),
        instance: stored.instance,
        attempt: stored.attempt,
        // A running record is written by the claim itself: its token is the claim's revision.
        fencingToken: stored.token === '0' ? BigInt(kv.mod_revision) : BigInt(stored.token),
        startedAt: new Date(stored.start),
        ...(stored.end !== undefined ? { endedAt: new Date(stored.end) } : {}),
        outcome: stored.outcome === 'running' && !live ? 'interrupted' : stored.outcome,
        ...(stored.error !== undefined ? { error: stored.error } : {}),
      },
    });
  }
  return entries.sort((a, b) => b.run.slot - a.run.slot);
}

/**
 * The deletions that keep the ledger bounded, to send in the same transaction as a new
 * record: every record older than the `size - 1` newest (the new one makes `size`), and every
 * record of a slot older than `maxAge`. One range delete, whatever the number of old records.
 */
export function pruneOps(keys: JobKeys, entries: LedgerEntry[], size: number, maxAge: number, now: number, writing: number): IRequestOp[] {
  let cutoff = now - maxAge;
  const newest = entries.map((e) => e.run.slot).filter((slot) => slot !== writing).sort((a, b) => b - a);
  if (newest.length >= size) cutoff = Math.max(cutoff, newest[size - 1]! + 1);
  // Never the record written in the same transaction (etcd refuses a put inside a deleted range).
  cutoff = Math.min(cutoff, writing);
  if (cutoff <= 0) return [];
  return [{ request_delete_range: { key: keys.runsPrefix, range_end: keys.run(cutoff) } }];
}

/** Range requests that read a job's whole state in one transaction: runs, claims, running key. */
export function readOps(keys: JobKeys): IRequestOp[] {
  return [
    { request_range: { key: keys.runsPrefix, range_end: prefixRangeEnd(keys.runsPrefix) } },
    { request_range: { key: keys.claimsPrefix, range_end: prefixRangeEnd(keys.claimsPrefix) } },
    { request_range: { key: keys.running } },
  ];
}
