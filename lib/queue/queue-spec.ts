import type { EtcdSession } from '../session/etcd-session.js';
import { InvalidUsageError } from '../errors/coordination.errors.js';
import { Messages } from '../coordination.messages.js';
import type { Hold, HoldInit, HoldMode } from './hold.js';
import type { TurnPolicy } from './turn-policy.js';

/** Options of every waiting acquire (locks, read/write locks, semaphores, campaigns). */
export interface AcquireOptions {
  /**
   * Give up after this many ms (our waiter key is removed) with a
   * LockTimeoutError, or EtcdUnavailableError when etcd could not be reached
   * meanwhile. `Infinity` or absent: no timeout. At most 2^31-1 ms.
   */
  timeout?: number;
  /** Abort the wait (our waiter key is removed) with a LockAbortedError. An already-aborted signal rejects at once. */
  signal?: AbortSignal;
}

/** The largest finite timeout Node's timers can keep (a larger delay fires after 1 ms). */
export const MAX_TIMEOUT_MS = 2 ** 31 - 1;

/**
 * How one kind of hold maps onto the queue (internal): the key we put, the
 * turn policy, and how the kind shows in messages, the async context and the
 * name registry.
 */
export interface QueueSpec<H extends Hold = Hold> {
  /** Human-readable kind for messages: "lock", "read lock", "semaphore", "election", ... */
  kind: string;
  /** The kind as the name registry sees it: the same name used as two kinds at once is refused. */
  registryKind: string;
  mode: HoldMode;
  /** The user's name. */
  name: string;
  /** `<namespace><name>/`: every key of this name starts with it. */
  prefix: Buffer;
  /** Which keys of another holder may appear under `prefix` (after it); any other shape means another kind. */
  keyShape: RegExp;
  /** Identifies the hold in the async context (re-entry) and in the local queue. */
  contextKey: string;
  /**
   * Whether in-process contenders must queue locally: true when the key is
   * derived from the session alone (one key per session and name, as in Go).
   */
  localQueue: boolean;
  /** Our key for this session (a fresh unique key per call when localQueue is false). */
  key(session: EtcdSession): Buffer;
  value: Buffer;
  policy: TurnPolicy;
  /** Context keys that, if held by the caller, would deadlock this acquire (lock upgrade). */
  conflictsWith?: readonly string[];
  /** Other context keys whose hold also satisfies this one (a write hold covers a read). */
  reentrantFrom?: readonly string[];
  /** Builds the hold type of the kind (default: a plain {@link Hold}). */
  createHold?: (init: HoldInit) => H;
  /** The abort reason of a hold's signal after a normal release. */
  releasedReason: () => unknown;
}

/** Validates {@link AcquireOptions}; returns the timeout to arm (undefined = none). */
export function validateAcquireOptions(options: unknown, where = 'acquire'): number | undefined {
  if (typeof options !== 'object' || options === null) throw new InvalidUsageError(Messages.optionsNotObject(where));
  const { timeout, signal } = options as AcquireOptions;
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw new InvalidUsageError(Messages.notAnAbortSignal(where));
  return validateTimeout(timeout, where);
}

/** `Infinity` or undefined: no timeout; a number of ms from 0 to 2^31-1; anything else is refused. */
export function validateTimeout(timeout: unknown, where: string): number | undefined {
  if (timeout === undefined || timeout === Infinity) return undefined;
  if (typeof timeout !== 'number' || Number.isNaN(timeout) || timeout < 0 || timeout > MAX_TIMEOUT_MS) {
    throw new InvalidUsageError(Messages.invalidTimeout(where, timeout, MAX_TIMEOUT_MS));
  }
  return timeout;
}
