import { InvalidUsageError } from '../errors/coordination.errors.js';
import { JobMessages } from '../coordination.messages.js';
import { validateName } from '../etcd/keys.js';

/** What happens to a firing whose runner died mid-run. See README "Once per firing". */
export type FiringGuarantee = 'at-most-once' | 'at-least-once';
/** What the next runner does with slots nobody ran (failover, whole cluster down, etcd outage). */
export type MisfirePolicy = 'skip' | 'run-once' | 'run-all';
/** What a firing does while the previous run of the same job still runs somewhere in the cluster. */
export type OverlapPolicy = 'skip' | 'queue' | 'allow';

/**
 * Once-per-firing options of `@LeaderOnly` and `@WithLock` on a `@Cron` / `@Interval` method.
 * With `firing: 'once'` each slot of the schedule runs at most once in the whole cluster
 * (claimed in etcd with one transaction before the method runs), whatever the clock skew
 * (below half the period) and leadership changes; the call then always returns a Promise.
 */
export interface FiringOptions {
  /** `'once'`: claim each slot of the schedule in etcd; a second claim of it, anywhere, does not run. */
  firing?: 'once';
  /**
   * `'at-most-once'` (default: a crash never makes a side effect happen twice, and a crash
   * mid-run loses that firing) or `'at-least-once'` (the claim lives on the runner's session
   * lease until the run is recorded as done; if the runner dies, the next runner re-runs the
   * slot as attempt 2 with a larger fencing token, within `misfireThreshold`).
   */
  guarantee?: FiringGuarantee;
  /**
   * Missed slots (nobody ran them) within `misfireThreshold` of now: `'run-once'` (default:
   * the latest missed slot runs once, like Quartz's "fire once now", so a missed report is
   * neither lost nor repeated N times), `'skip'`, or `'run-all'` (each, oldest first, at most
   * `misfireMaxRuns`). Applied by the first firing after the gap.
   */
  misfire?: MisfirePolicy;
  /** How far back (ms) missed slots and interrupted runs are looked for. Default 60000 (Quartz's default). */
  misfireThreshold?: number;
  /** With `misfire: 'run-all'`, at most this many (the newest). Default 10. */
  misfireMaxRuns?: number;
  /**
   * A firing while the previous run still runs anywhere: `'skip'` (default: the slot is
   * recorded as skipped; a slow job never piles up), `'queue'` (run it once right after;
   * further firings meanwhile are skipped) or `'allow'` (run concurrently).
   */
  overlap?: OverlapPolicy;
  /** The job's name in etcd and in `JobsService.history()`. Default `Class.method`. */
  job?: string;
  /** Runs kept in the ledger per job (1 to 1000). Default 50. */
  historySize?: number;
  /** Ledger records older than this (ms) are deleted. Default 7 days. */
  historyMaxAge?: number;
}

/** Options with the defaults applied (internal). */
export interface ResolvedFiringOptions {
  guarantee: FiringGuarantee;
  misfire: MisfirePolicy;
  misfireThreshold: number;
  misfireMaxRuns: number;
  overlap: OverlapPolicy;
  job?: string;
  historySize: number;
  historyMaxAge: number;
}

export const FIRING_DEFAULTS = {
  guarantee: 'at-most-once',
  misfire: 'run-once',
  misfireThreshold: 60_000,
  misfireMaxRuns: 10,
  overlap: 'skip',
  historySize: 50,
  historyMaxAge: 7 * 24 * 3_600_000,
} as const;

const FIRING_KEYS = ['firing', 'guarantee', 'misfire', 'misfireThreshold', 'misfireMaxRuns', 'overlap', 'job', 'historySize', 'historyMaxAge'] as const;

function oneOf<T extends string>(where: string, key: string, value: unknown, allowed: readonly T[], fallback: T): T {
  if (value === undefined) return fallback;
  if (!allowed.includes(value as T)) throw new InvalidUsageError(JobMessages.invalidChoice(where, key, value, allowed));
  return value as T;
}

function integer(where: string, key: string, value: unknown, min: number, max: number, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new InvalidUsageError(JobMessages.invalidInteger(where, key, value, min, max));
  }
  return value;
}

/** Whether `options` asks for once-per-firing (then validated by {@link resolveFiringOptions}). */
export function wantsFiring(options: Partial<FiringOptions>): boolean {
  return FIRING_KEYS.some((key) => options[key] !== undefined);
}

/** Validates the firing options of a decorator (at class definition time). */
export function resolveFiringOptions(where: string, options: FiringOptions, otherKeys: readonly string[] = []): ResolvedFiringOptions {
  const unknown = Object.keys(options).find((key) => !(FIRING_KEYS as readonly string[]).includes(key) && !otherKeys.includes(key));
  if (unknown !== undefined) throw new InvalidUsageError(JobMessages.unknownOption(where, unknown, [...otherKeys, ...FIRING_KEYS]));
  if (options.firing !== 'once') {
    const stray = FIRING_KEYS.find((key) => key !== 'firing' && options[key] !== undefined);
    if (options.firing !== undefined || stray) throw new InvalidUsageError(JobMessages.firingRequired(where, options.firing, stray));
  }
  if (options.job !== undefined) validateName('job', options.job);
  return {
    guarantee: oneOf(where, 'guarantee', options.guarantee, ['at-most-once', 'at-least-once'], FIRING_DEFAULTS.guarantee),
    misfire: oneOf(where, 'misfire', options.misfire, ['skip', 'run-once', 'run-all'], FIRING_DEFAULTS.misfire),
    misfireThreshold: integer(where, 'misfireThreshold', options.misfireThreshold, 0, 366 * 24 * 3_600_000, FIRING_DEFAULTS.misfireThreshold),
    misfireMaxRuns: integer(where, 'misfireMaxRuns', options.misfireMaxRuns, 1, 1000, FIRING_DEFAULTS.misfireMaxRuns),
    overlap: oneOf(where, 'overlap', options.overlap, ['skip', 'queue', 'allow'], FIRING_DEFAULTS.overlap),
    job: options.job,
    historySize: integer(where, 'historySize', options.historySize, 1, 1000, FIRING_DEFAULTS.historySize),
    historyMaxAge: integer(where, 'historyMaxAge', options.historyMaxAge, 1000, 10 * 366 * 24 * 3_600_000, FIRING_DEFAULTS.historyMaxAge),
  };
}
