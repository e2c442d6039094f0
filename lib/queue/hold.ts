import type { EtcdSession } from '../session/etcd-session.js';

/** The kind of hold: a mutex, either side of a read/write lock, a semaphore permit, or leadership. */
export type HoldMode = 'exclusive' | 'read' | 'write' | 'permit' | 'leader';

/**
 * What every hold of this library offers, whatever its kind: a lock, a
 * read/write hold, a semaphore permit and leadership of an election all
 * share it. Use `await using` or `release()` in a `finally`.
 */
export interface CoordinationHold extends AsyncDisposable {
  /** The name it was acquired with (lock, semaphore or election name). */
  readonly name: string;
  /** The etcd key that represents this hold. */
  readonly key: string;
  /** What kind of hold this is. */
  readonly mode: HoldMode;
  /**
   * The key's create revision: strictly increasing from one holder to the
   * next. Pass it to the protected resource and have it refuse writes with a
   * token lower than one it has seen (fencing).
   */
  readonly fencingToken: bigint;
  /**
   * Aborts when the hold ends: released, session lost (at the client-side
   * deadline, before etcd can give it to anyone else) or shutdown.
   */
  readonly signal: AbortSignal;
  /** Synchronous check against the session deadline: false once the hold may be gone. */
  isHeld(): boolean;
  /** Throws the reason the hold ended, if it did. Call it before an irreversible step. */
  throwIfLost(): void;
  /**
   * Ends the hold: deletes our key, guarded by its create revision so it can
   * never delete a newer holder's key. Idempotent; every call returns the same promise.
   */
  release(): Promise<void>;
}

/** How the queue engine builds a hold (internal). */
export interface HoldInit {
  name: string;
  key: Buffer;
  mode: HoldMode;
  /** Create revision of our key (guards every later write of it). */
  revision: bigint;
  /** The token handed to the user: the revision, plus the fencing epoch. */
  fencingToken: bigint;
  session: EtcdSession;
  /** Deletes our key (guarded); called once by release(). */
  remove: () => Promise<void>;
  /** Called once when the hold ends by any path, after the key removal on release. */
  onEnd: () => void;
  /** The abort reason of `signal` after a normal release. */
  releasedReason: () => unknown;
}

/** A hold backed by one etcd key on the session lease (internal base of every hold type). */
export class Hold implements CoordinationHold {
  readonly name: string;
  readonly key: string;
  readonly keyBytes: Buffer;
  readonly mode: HoldMode;
  readonly fencingToken: bigint;
  /** Create revision of our key: what guarded writes of it compare. */
  readonly revision: bigint;
  /** The session whose lease carries our key. */
  readonly session: EtcdSession;
  private readonly controller = new AbortController();
  private releasing?: Promise<void>;
  private ended = false;

  constructor(private readonly init: HoldInit) {
    this.name = init.name;
    this.keyBytes = init.key;
    this.key = init.key.toString('utf8');
    this.mode = init.mode;
    this.fencingToken = init.fencingToken;
    this.revision = init.revision;
    this.session = init.session;
    if (init.session.signal.aborted) this.onSessionEnd();
    else init.session.signal.addEventListener('abort', this.onSessionEnd, { once: true });
  }

  // A lost hold ends at once, exactly as etcd frees the key for other processes.
  private readonly onSessionEnd = () => {
    this.controller.abort(this.session.signal.reason);
    this.end();
  };

  private end(): void {
    if (this.ended) return;
    this.ended = true;
    this.init.onEnd();
  }

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

  /** Ends the hold from the library side with `reason` (shutdown, our key taken away), then releases. */
  revoke(reason: unknown): Promise<void> {
    if (!this.controller.signal.aborted) this.controller.abort(reason);
    return this.release();
  }

  release(): Promise<void> {
    this.releasing ??= (async () => {
      this.session.signal.removeEventListener('abort', this.onSessionEnd);
      if (!this.controller.signal.aborted) this.controller.abort(this.init.releasedReason());
      try {
        if (!this.ended) await this.init.remove();
      } finally {
        this.end();
      }
    })();
    return this.releasing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.release();
  }
}

/**
 * Returned when the current call chain already holds the hold: re-entering
 * shares the outer hold, and releasing it is a no-op (the outer owner releases).
 */
export class ReentrantHold<H extends CoordinationHold> implements CoordinationHold {
  constructor(protected readonly outer: H) {}
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

/** An error built without a stack trace: it is made on every release, and the stack would only point here. */
export function withoutStack<E>(make: () => E): E {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return make();
  } finally {
    Error.stackTraceLimit = limit;
  }
}
