import type { EtcdOps } from '../etcd/etcd-ops.js';
import { Messages } from '../coordination.messages.js';
import type { Hold } from '../queue/hold.js';
import { QueueLockable, type Lockable, type RunOptions } from '../queue/lockable.js';
import type { QueueEngine } from '../queue/queue.engine.js';
import type { AcquireOptions, QueueSpec } from '../queue/queue-spec.js';
import type { LockHandle } from './lock-handle.js';

export { MAX_PERMITS, validatePermits } from './permits.js';

/** Options of {@link Semaphore.withPermit} (the same as every `run`). */
export type WithPermitOptions = RunOptions;

/**
 * A cluster-wide counting semaphore: at most `permits` holders at once across
 * every process that uses the same name (and the same `permits`), served in
 * FIFO order. Get one from {@link LockService.semaphore}.
 *
 * Each hold is one etcd key `<namespace><name>/<lease hex>-<n>` on the
 * session lease, so the permit of a crashed process comes back when its
 * session TTL expires. A permit's handle is a {@link LockHandle} with mode
 * `'permit'`: fencing token (strictly increasing in the order permits are
 * granted), an AbortSignal that aborts when the permit is lost, `release()`
 * and `await using`.
 *
 * All callers of one name must pass the same `permits`: the count lives in
 * each caller, not in etcd. Within one application a mismatch is refused
 * with NameInUseError; across processes it cannot be detected cheaply (each
 * caller would enforce its own bound).
 */
export interface Semaphore extends Lockable<LockHandle> {
  /** How many holders it admits at once. */
  readonly permits: number;
  /**
   * Waits for a permit in FIFO order. Rejects with LockTimeoutError or
   * LockAbortedError (our waiter key removed), ShutdownError, SessionLostError
   * or an etcd error. Inside `withPermit` of the same name (same call chain) it
   * re-enters the outer permit instead of taking a second one.
   */
  acquire(options?: AcquireOptions): Promise<LockHandle>;
  /** A permit if one is free right now (and nobody waits), else `null` at once. */
  tryAcquire(): Promise<LockHandle | null>;
  /** The 0.1 name of {@link Lockable.run}: runs `fn` while holding a permit and always releases it. */
  withPermit<T>(fn: (permit: LockHandle) => Promise<T> | T, options?: WithPermitOptions & { onLocked?: 'wait' | 'fail' }): Promise<T>;
  withPermit<T>(fn: (permit: LockHandle) => Promise<T> | T, options: WithPermitOptions & { onLocked: 'skip' }): Promise<T | undefined>;
  withPermit<T>(fn: (permit: LockHandle) => Promise<T> | T, options?: WithPermitOptions): Promise<T | undefined>;
}

/** The semaphore over the queue engine: a {@link QueueLockable} with its `permits` (internal). */
export class QueueSemaphore extends QueueLockable<LockHandle> implements Semaphore {
  constructor(engine: QueueEngine, ops: EtcdOps, spec: () => QueueSpec<Hold>, name: string, readonly permits: number) {
    super(engine, ops, spec, name, 'semaphore', () => Messages.semaphoreFull(name, permits));
  }

  withPermit<T>(fn: (permit: LockHandle) => Promise<T> | T, options?: WithPermitOptions & { onLocked?: 'wait' | 'fail' }): Promise<T>;
  withPermit<T>(fn: (permit: LockHandle) => Promise<T> | T, options: WithPermitOptions & { onLocked: 'skip' }): Promise<T | undefined>;
  withPermit<T>(fn: (permit: LockHandle) => Promise<T> | T, options?: WithPermitOptions): Promise<T | undefined>;
  withPermit<T>(fn: (permit: LockHandle) => Promise<T> | T, options: WithPermitOptions = {}): Promise<T | undefined> {
    return this.run(fn, options);
  }
}
