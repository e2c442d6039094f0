import type { ICompare, IRequestOp } from 'etcd3';
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
  /**
   * The etcd comparison "our key still exists with our create revision" (Go's
   * `Mutex.IsOwner()`), for your own etcd3 transactions:
   * `client.kv.txn({ compare: [hold.ownershipCompare()], success: [...] })`.
   * If it fails, the hold is gone, whatever this process believes.
   */
  ownershipCompare(): ICompare;
  /**
   * Writes `value` to `key` (the key as given, not namespaced) only if the
   * hold is still ours, checked by etcd in the same transaction. Rejects with
   * HoldLostError (and ends the hold) when it is not.
   */
  guardedPut(key: string | Buffer, value: string | Buffer): Promise<void>;
  /** Deletes `key` only if the hold is still ours (see {@link guardedPut}). */
  guardedDelete(key: string | Buffer): Promise<void>;
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
  /** Runs `success` in one transaction guarded by `compare`; resolves whether the guard held. */
  guardedTxn: (compare: ICompare, success: IRequestOp[], what: string) => Promise<boolean>;
  /** The error for a guarded write that found the hold gone. */
  lostReason: () => Error;
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
  /** Made on first use of {@link signal}: most short holds never need one. */
  private controller?: AbortController;
  /** Why the hold ended, once it has: the value, or (after a plain release) how to make it. */
  private why?: { value: unknown; released?: true } | { make: () => unknown };
  private releasing?: Promise<void>;
  private ended = false;
  private readonly offSessionEnd: () => void;

  constructor(private readonly init: HoldInit) {
    this.name = init.name;
    this.keyBytes = init.key;
    this.key = init.key.toString('utf8');
    this.mode = init.mode;
    this.fencingToken = init.fencingToken;
    this.revision = init.revision;
    this.session = init.session;
    // One entry in the session's set of end handlers, not an abort listener per hold (see whenEnded).
    this.offSessionEnd = init.session.whenEnded(this.onSessionEnd);
  }

  // A lost hold ends at once, exactly as etcd frees the key for other processes.
  private readonly onSessionEnd = () => {
    this.stop({ value: this.session.signal.reason });
    this.end();
  };

  /** Records why the hold ended (the first reason wins) and aborts the signal if anyone has it. */
  private stop(why: { value: unknown } | { make: () => unknown }): void {
    if (this.why) return;
    this.why = why;
    this.controller?.abort(this.endReason);
  }

  private end(): void {
    if (this.ended) return;
    this.ended = true;
    this.init.onEnd();
  }

  get signal(): AbortSignal {
    if (!this.controller) {
      // Node's AbortController and its signal cost microseconds to make: only for holds that are asked for it.
      this.controller = new AbortController();
      if (this.why) this.controller.abort(this.endReason);
    }
    return this.controller.signal;
  }

  /** Why the hold ended (what {@link signal} aborted with), or `undefined` while it lasts. */
  get endReason(): unknown {
    const why = this.why;
    if (!why) return undefined;
    if ('make' in why) this.why = { value: why.make(), released: true };
    return (this.why as { value: unknown }).value;
  }

  /** True when the hold ended by a plain release (its reason is the kind's "released" error). */
  get endedByRelease(): boolean {
    const why = this.why;
    return why !== undefined && ('make' in why || why.released === true);
  }

  /** True once the hold ended by any path (its signal aborted, or would have). */
  get hasEnded(): boolean {
    return this.why !== undefined;
  }

  isHeld(): boolean {
    // `session.alive` aborts the session (and so our signal) if its deadline passed
    // even when the event loop was too busy for the deadline timer to fire.
    return this.session.alive && this.why === undefined;
  }

  throwIfLost(): void {
    if (!this.isHeld()) throw this.endReason;
  }

  /** Ends the hold from the library side with `reason` (shutdown, our key taken away), then releases. */
  revoke(reason: unknown): Promise<void> {
    this.stop({ value: reason });
    return this.release();
  }

  release(): Promise<void> {
    this.releasing ??= this.releaseOnce();
    return this.releasing;
  }

  private async releaseOnce(): Promise<void> {
    this.offSessionEnd();
    this.stop({ make: this.init.releasedReason });
    try {
      if (!this.ended) await this.init.remove();
    } finally {
      this.end();
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.release();
  }

  ownershipCompare(): ICompare {
    return { key: this.keyBytes, target: 'Create', result: 'Equal', create_revision: this.revision.toString() };
  }

  guardedPut(key: string | Buffer, value: string | Buffer): Promise<void> {
    return this.guarded([{ request_put: { key: Buffer.from(key), value: Buffer.from(value) } }], `guarded put under ${this.mode} "${this.name}"`);
  }

  guardedDelete(key: string | Buffer): Promise<void> {
    return this.guarded([{ request_delete_range: { key: Buffer.from(key) } }], `guarded delete under ${this.mode} "${this.name}"`);
  }

  private async guarded(success: IRequestOp[], what: string): Promise<void> {
    this.throwIfLost();
    if (await this.init.guardedTxn(this.ownershipCompare(), success, what)) return;
    // etcd says our key is gone or replaced: nothing was written, and the hold is over.
    const lost = this.init.lostReason();
    await this.revoke(lost);
    throw lost;
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
  ownershipCompare() { return this.outer.ownershipCompare(); }
  guardedPut(key: string | Buffer, value: string | Buffer) { return this.outer.guardedPut(key, value); }
  guardedDelete(key: string | Buffer) { return this.outer.guardedDelete(key); }
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
