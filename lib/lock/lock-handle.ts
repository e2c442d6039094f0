import type { EtcdSession } from '../session/etcd-session.js';
import { LockReleasedError } from '../errors/coordination.errors.js';
import { Messages } from '../coordination.messages.js';

/** The kind of hold a handle represents. */
export type LockMode = 'exclusive' | 'read' | 'write' | 'permit';

/**
 * A held lock (or read/write lock, or semaphore permit). Use `await using`
 * or `release()` in a `finally`.
 */
export interface LockHandle extends AsyncDisposable {
  /** The name the lock was acquired with. */
  readonly name: string;
  /** The etcd key that represents this hold (`<namespace><name>/<lease hex>` for a mutex). */
  readonly key: string;
  /** What kind of hold this is. */
  readonly mode: LockMode;
  /**
   * The key's create revision: strictly increasing from one holder of the
   * lock to the next. Pass it to the protected resource and have it refuse
   * writes with a token lower than one it has seen (fencing).
   */
  readonly fencingToken: bigint;
  /**
   * Aborts when the hold ends: released, session lost (at the client-side
   * deadline, before etcd can give the lock to anyone else) or shutdown.
   */
  readonly signal: AbortSignal;
  /** Synchronous check against the session deadline: false once the hold may be gone. */
  isHeld(): boolean;
  /** Throws the reason the hold ended, if it did. Call it before an irreversible step. */
  throwIfLost(): void;
  /**
   * Releases the hold: deletes our key, guarded by its create revision so it
   * can never delete a newer holder's key. Idempotent; every call returns the
   * same promise.
   */
  release(): Promise<void>;
}

/** A hold backed by one etcd key on the session lease (internal). */
export class HeldLock implements LockHandle {
  private readonly controller = new AbortController();
  private releasing?: Promise<void>;

  constructor(
    readonly name: string,
    readonly key: string,
    readonly mode: LockMode,
    readonly fencingToken: bigint,
    private readonly session: EtcdSession,
    private readonly onRelease: () => Promise<void>,
    private readonly onSessionLost: () => void = () => undefined,
  ) {
    if (session.signal.aborted) this.controller.abort(session.signal.reason);
    else session.signal.addEventListener('abort', this.onSessionEnd, { once: true });
  }

  private readonly onSessionEnd = () => {
    this.controller.abort(this.session.signal.reason);
    this.onSessionLost();
  };

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  isHeld(): boolean {
    // `session.alive` aborts the session (and so our signal) if its deadline passed
    // even when the event loop was too busy for the deadline timer to fire.
    return this.session.alive && !this.controller.signal.aborted;
  }

  throwIfLost(): void {
    if (!this.isHeld()) throw this.controller.signal.reason;
  }

  /** Ends the hold from the library side (shutdown) with `reason`, then releases. */
  revoke(reason: unknown): Promise<void> {
    if (!this.controller.signal.aborted) this.controller.abort(reason);
    return this.release();
  }

  release(): Promise<void> {
    this.releasing ??= (async () => {
      this.session.signal.removeEventListener('abort', this.onSessionEnd);
      if (!this.controller.signal.aborted) this.controller.abort(releasedReason(this.name));
      await this.onRelease();
    })();
    return this.releasing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.release();
  }
}

/**
 * Returned when the current call chain already holds the lock: re-entering
 * shares the outer hold, and releasing it is a no-op (the outer owner releases).
 */
export class ReentrantLockHandle implements LockHandle {
  constructor(private readonly outer: LockHandle) {}
  get name() { return this.outer.name; }
  get key() { return this.outer.key; }
  get mode() { return this.outer.mode; }
  get fencingToken() { return this.outer.fencingToken; }
  get signal() { return this.outer.signal; }
  isHeld() { return this.outer.isHeld(); }
  throwIfLost() { this.outer.throwIfLost(); }
  release(): Promise<void> { return Promise.resolve(); }
  [Symbol.asyncDispose](): Promise<void> { return Promise.resolve(); }
}

/**
 * The abort reason after a normal release. Built without a stack trace: it
 * happens on every release and the stack would only point here.
 */
function releasedReason(name: string): LockReleasedError {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return new LockReleasedError(name, Messages.lockReleased(name));
  } finally {
    Error.stackTraceLimit = limit;
  }
}
