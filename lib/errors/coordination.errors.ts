/**
 * Typed errors. Every error has a stable `code` so callers can branch on it
 * without string matching, and `instanceof` works across the CJS and ESM builds
 * as long as one build is loaded.
 */
export type CoordinationErrorCode =
  | 'INVALID_OPTIONS'
  | 'INVALID_NAME'
  | 'ETCD_UNAVAILABLE'
  | 'ETCD_AUTH_FAILED'
  | 'ETCD_PERMISSION_DENIED'
  | 'LOCK_TIMEOUT'
  | 'LOCK_ABORTED'
  | 'LOCK_HELD'
  | 'LOCK_RELEASED'
  | 'SESSION_LOST'
  | 'SHUTTING_DOWN'
  | 'NOT_LEADER'
  | 'LEADERSHIP_LOST'
  | 'MODULE_NOT_INITIALIZED'
  | 'INVALID_USAGE'
  | 'NAME_IN_USE'
  | 'ETCD_HISTORY_RESET'
  | 'HOLD_LOST'
  | 'HANDOVER_REFUSED';

/** Base class of every error this library throws. */
export class CoordinationError extends Error {
  constructor(
    readonly code: CoordinationErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** Options given to `CoordinationModule.forRoot/forRootAsync` are invalid. */
export class InvalidOptionsError extends CoordinationError {
  constructor(readonly option: string, message: string) {
    super('INVALID_OPTIONS', message);
  }
}

/** A lock, election or semaphore name is not acceptable. */
export class InvalidNameError extends CoordinationError {
  constructor(readonly kind: string, message: string) {
    super('INVALID_NAME', message);
  }
}

/** etcd could not be reached (or did not answer) in time. */
export class EtcdUnavailableError extends CoordinationError {
  /**
   * True when one request failed and trying again may help; false once the
   * library already retried for `connectTimeout` (a final verdict).
   */
  readonly retryable: boolean;
  constructor(readonly hosts: readonly string[], message: string, options?: { cause?: unknown; retryable?: boolean }) {
    super('ETCD_UNAVAILABLE', message, options);
    this.retryable = options?.retryable ?? true;
  }
}

/** etcd rejected the configured credentials. The message never contains the password. */
export class EtcdAuthenticationError extends CoordinationError {
  constructor(message: string) {
    super('ETCD_AUTH_FAILED', message);
  }
}

/** etcd refused an operation for lack of permission (role does not cover the key). */
export class EtcdPermissionError extends CoordinationError {
  constructor(message: string) {
    super('ETCD_PERMISSION_DENIED', message);
  }
}

/** `acquire` did not get the lock within its `timeout`. Our waiter key has been removed. */
export class LockTimeoutError extends CoordinationError {
  constructor(readonly lockName: string, readonly timeoutMs: number, message: string) {
    super('LOCK_TIMEOUT', message);
  }
}

/** The caller's AbortSignal aborted a wait. Our waiter key has been removed. */
export class LockAbortedError extends CoordinationError {
  constructor(readonly lockName: string, message: string, options?: { cause?: unknown }) {
    super('LOCK_ABORTED', message, options);
  }
}

/** `onLocked: 'fail'` and somebody else holds the lock (or semaphore has no permit). */
export class LockHeldError extends CoordinationError {
  constructor(readonly lockName: string, message: string) {
    super('LOCK_HELD', message);
  }
}

/** Abort reason of a handle's `signal` after `release()`. */
export class LockReleasedError extends CoordinationError {
  constructor(readonly lockName: string, message: string) {
    super('LOCK_RELEASED', message);
  }
}

/** The etcd session (lease) ended: every lock and leadership on it is gone. */
export class SessionLostError extends CoordinationError {
  constructor(message: string, options?: { cause?: unknown; code?: CoordinationErrorCode }) {
    super(options?.code ?? 'SESSION_LOST', message, options);
  }
}

/**
 * etcd's history was lost or rolled back (data wiped, or restored from an
 * older snapshot): revisions, and so fencing tokens, went backwards. Every
 * hold and leadership of this application was given up at once (this is the
 * abort reason of their signals; it is a SessionLostError). New holds work on
 * the new history; if you fence with tokens, raise the `fencingEpoch` option
 * (see docs/faults.md) so tokens keep growing.
 */
export class EtcdHistoryResetError extends SessionLostError {
  constructor(
    readonly hosts: readonly string[],
    message: string,
    readonly detail: { previousClusterId: string; clusterId: string; previousRevision: bigint; revision: bigint },
  ) {
    super(message, { code: 'ETCD_HISTORY_RESET' });
  }
}

/**
 * The application is shutting down; the request was refused or interrupted
 * (code `SHUTTING_DOWN`). From the start of the shutdown drain (see the
 * `shutdownTimeout` option) new locks, runs and campaigns are refused with
 * it, except calls made from inside a running guarded run; waits in
 * progress end with it; after the drain, so does every remaining hold's signal.
 */
export class ShutdownError extends CoordinationError {
  constructor(message: string) {
    super('SHUTTING_DOWN', message);
  }
}

/** `proclaim`/`resign` by an instance that is not the leader. */
export class NotLeaderError extends CoordinationError {
  constructor(readonly election: string, message: string) {
    super('NOT_LEADER', message);
  }
}

/** A leadership hand-over was refused before anything changed (no such candidate, a foreign candidate in the way, a race). */
export class HandoverError extends CoordinationError {
  constructor(readonly election: string, message: string) {
    super('HANDOVER_REFUSED', message);
  }
}

/** Leadership ended while the caller relied on it. */
export class LeadershipLostError extends CoordinationError {
  constructor(readonly election: string, message: string, options?: { cause?: unknown }) {
    super('LEADERSHIP_LOST', message, options);
  }
}

/** A decorator ran in an application without an initialized CoordinationModule: the method was not run. */
export class ModuleNotInitializedError extends CoordinationError {
  constructor(message: string) {
    super('MODULE_NOT_INITIALIZED', message);
  }
}

/** The API was used in a way it does not support (explained in the message). */
export class InvalidUsageError extends CoordinationError {
  constructor(message: string) {
    super('INVALID_USAGE', message);
  }
}

/**
 * The name is already in use as another kind (a mutex, read/write lock,
 * semaphore with another `permits`, or election): the kinds would share etcd
 * keys. Thrown by every acquire, try-acquire and campaign; nothing is left in etcd.
 */
export class NameInUseError extends CoordinationError {
  constructor(
    readonly lockName: string,
    /** The kind that was asked for. */
    readonly requestedKind: string,
    /** What the name is in use as. */
    readonly inUseAs: string,
    message: string,
  ) {
    super('NAME_IN_USE', message);
  }
}

/**
 * etcd no longer has our key for this hold (deleted by someone else, e.g. a
 * forced release or `etcdctl del`, or expired with the session): a guarded
 * write was refused by etcd, nothing was written, and the hold has ended.
 */
export class HoldLostError extends CoordinationError {
  constructor(readonly lockName: string, message: string) {
    super('HOLD_LOST', message);
  }
}
