import type { LockHandle } from '../lock/lock-handle.js';
import type { AcquireOptions } from '../lock/queue-lock.engine.js';

/** What `@WithLock({ permits })` needs from the semaphore implementation (internal seam). */
export interface SemaphoreProvider {
  withPermit<T>(
    name: string,
    permits: number,
    fn: (permit: LockHandle) => Promise<T> | T,
    options: AcquireOptions & { onLocked?: 'wait' | 'skip' | 'fail' },
  ): Promise<T | undefined>;
}
