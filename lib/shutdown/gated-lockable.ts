import type { CoordinationHold } from '../queue/hold.js';
import type { KeyHolder, Lockable, RunOptions } from '../queue/lockable.js';
import type { AcquireOptions } from '../queue/queue-spec.js';
import type { LockHandle } from '../lock/lock-handle.js';
import type { Semaphore, WithPermitOptions } from '../lock/semaphore.js';
import type { ShutdownDrain } from './shutdown-drain.js';

/**
 * A {@link Lockable} that follows the shutdown drain (internal): during the
 * drain, calls from outside a running guarded run are refused with
 * ShutdownError, waits started from outside one stop, and every `run` is a
 * guarded run the drain waits for. Everything else is the inner lockable's.
 */
export class GatedLockable<H extends CoordinationHold> implements Lockable<H> {
  constructor(
    protected readonly inner: Lockable<H>,
    protected readonly drain: ShutdownDrain,
  ) {}

  get name(): string {
    return this.inner.name;
  }

  get kind(): string {
    return this.inner.kind;
  }

  private what(verb: string): string {
    return `${verb} of ${this.inner.kind} "${this.inner.name}"`;
  }

  acquire(options?: AcquireOptions): Promise<H> {
    // Not `async` (see LockService.acquire): a refusal still rejects.
    try {
      const what = this.what('acquire');
      this.drain.admit(what);
      return this.drain.stoppable(what, options, (o) => this.inner.acquire(o));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  async tryAcquire(): Promise<H | null> {
    this.drain.admit(this.what('tryAcquire'));
    return this.inner.tryAcquire();
  }

  run<T>(fn: (hold: H) => Promise<T> | T, options?: RunOptions & { onLocked?: 'wait' | 'fail' }): Promise<T>;
  run<T>(fn: (hold: H) => Promise<T> | T, options: RunOptions & { onLocked: 'skip' }): Promise<T | undefined>;
  run<T>(fn: (hold: H) => Promise<T> | T, options?: RunOptions): Promise<T | undefined>;
  async run<T>(fn: (hold: H) => Promise<T> | T, options?: RunOptions): Promise<T | undefined> {
    this.drain.admit(this.what('run'));
    return this.drain.stoppable(this.what('run'), options ?? {}, (o) => this.drain.run(() => this.inner.run(this.drain.unlessStopped(o, options, fn), o as RunOptions)));
  }

  holder(): Promise<KeyHolder | null> {
    return this.inner.holder();
  }
}

/** {@link GatedLockable} for a semaphore: the same, plus `permits` and `withPermit`. */
export class GatedSemaphore extends GatedLockable<LockHandle> implements Semaphore {
  constructor(
    private readonly semaphore: Semaphore,
    drain: ShutdownDrain,
  ) {
    super(semaphore, drain);
  }

  get permits(): number {
    return this.semaphore.permits;
  }

  withPermit<T>(fn: (permit: LockHandle) => Promise<T> | T, options?: WithPermitOptions & { onLocked?: 'wait' | 'fail' }): Promise<T>;
  withPermit<T>(fn: (permit: LockHandle) => Promise<T> | T, options: WithPermitOptions & { onLocked: 'skip' }): Promise<T | undefined>;
  withPermit<T>(fn: (permit: LockHandle) => Promise<T> | T, options?: WithPermitOptions): Promise<T | undefined>;
  withPermit<T>(fn: (permit: LockHandle) => Promise<T> | T, options: WithPermitOptions = {}): Promise<T | undefined> {
    return this.run(fn, options);
  }
}
