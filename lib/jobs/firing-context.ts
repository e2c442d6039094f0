import { AsyncLocalStorage } from 'node:async_hooks';

/** The firing a once-per-firing method runs for ({@link currentFiring}). */
export interface Firing {
  /** The job's name (default `Class.method`). */
  readonly job: string;
  /** The slot: its scheduled time in ms since the epoch (the same on every instance). */
  readonly slot: number;
  /** The slot's scheduled time (not the call's wall-clock time). */
  readonly scheduledAt: Date;
  /** 1, or 2+ when an at-least-once slot is re-run after its runner died. */
  readonly attempt: number;
  /** etcd revision of this attempt's claim: larger than every earlier attempt's and slot's. */
  readonly fencingToken: bigint;
  /** Aborts when the leadership / lock the run is under ends (and so may the claim). */
  readonly signal: AbortSignal;
}

const storage = new AsyncLocalStorage<Firing>();

/** Runs `fn` as the run of `firing` (internal). */
export function runWithFiring<T>(firing: Firing, fn: () => T): T {
  return storage.run(firing, fn);
}

/**
 * The firing the current call chain runs for, inside a method decorated with
 * `@LeaderOnly({ firing: 'once' })` or `@WithLock(name, { firing: 'once' })`;
 * `undefined` elsewhere. Pass `fencingToken` to what the job writes so that a
 * zombie earlier attempt can be refused.
 */
export function currentFiring(): Firing | undefined {
  return storage.getStore();
}
