import type { CoordinationHold } from '../queue/hold.js';

/** The kind of lock hold a handle represents. */
export type LockMode = 'exclusive' | 'read' | 'write' | 'permit';

/**
 * A held lock (or read/write hold, or semaphore permit): a
 * {@link CoordinationHold} whose mode is one of the lock modes. Use
 * `await using` or `release()` in a `finally`.
 */
export interface LockHandle extends CoordinationHold {
  /** What kind of hold this is. */
  readonly mode: LockMode;
}
