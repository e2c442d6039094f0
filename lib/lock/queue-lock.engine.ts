import { Logger } from '@nestjs/common';
import type { EtcdOps, KeyRange } from '../etcd/etcd-ops.js';
import { OwnKeyGoneError, waitForTurn } from '../etcd/wait-for-turn.js';
import { isTransientEtcdError } from '../etcd/etcd-errors.js';
import type { EtcdSession } from '../session/etcd-session.js';
import type { SessionService } from '../session/session.service.js';
import { heldInContext } from '../context/coordination.context.js';
import {
  EtcdAuthenticationError,
  EtcdPermissionError,
  InvalidUsageError,
  LockAbortedError,
  LockTimeoutError,
  SessionLostError,
  ShutdownError,
} from '../errors/coordination.errors.js';
import { Messages } from '../coordination.messages.js';
import { backoffDelay, operationSignal, raceSignal, sleep, type OperationSignal } from '../util/abort.js';
import { HeldLock, ReentrantLockHandle, type LockHandle, type LockMode } from './lock-handle.js';
import { LocalMutexMap } from './local-mutex.js';

/** A hold of this process, as listed by `LockService.heldLocks()`. */
export type HeldLockInfo = Pick<LockHandle, 'name' | 'key' | 'mode' | 'fencingToken'>;

/** Options of every waiting acquire. */
export interface AcquireOptions {
  /** Give up after this many ms (our waiter key is removed) with a LockTimeoutError. Default: wait indefinitely. */
  timeout?: number;
  /** Abort the wait (our waiter key is removed) with a LockAbortedError. */
  signal?: AbortSignal;
}

/**
 * How one kind of queue lock maps onto etcd (internal): which key we put and
 * which older keys we must wait for.
 */
export interface QueueLockSpec {
  /** Human-readable kind for messages: "lock", "read lock", ... */
  kind: string;
  mode: LockMode;
  /** The user's name. */
  name: string;
  /** Identifies the lock in the async context (reentrancy) and the local queue. */
  contextKey: string;
  /**
   * Whether in-process contenders must queue locally: true when the key is
   * derived from the session alone (one key per session and name).
   */
  localQueue: boolean;
  /** Our key for this session (a fresh unique key per call when localQueue is false). */
  key(session: EtcdSession): Buffer;
  /** Older keys in this range block us. */
  blocking: KeyRange;
  value: Buffer;
  /** Context keys that, if held by the caller, would deadlock this acquire (lock upgrade). */
  conflictsWith?: readonly string[];
  /** Other context keys whose hold also satisfies this one (a write hold covers a read). */
  reentrantFrom?: readonly string[];
  /**
   * A custom turn discipline (the semaphore's). Without it, we own the key
   * when no older key of `blocking` remains (mutex, read/write lock).
   */
  turn?: TurnDiscipline;
}

/** Our key after a claim, as a {@link TurnDiscipline} sees it (internal). */
export interface ClaimedKey {
  myKey: Buffer;
  myRevision: bigint;
  leaseId: bigint;
  value: Buffer;
  /** Whatever the discipline's claim learned, handed to its wait (saves a round trip). */
  state: unknown;
}

/** How a queue lock other than "no older key" decides whose turn it is (internal). */
export interface TurnDiscipline {
  /** Creates our key unless it exists (idempotent under retry) and tells whether it holds at once. */
  claim(myKey: Buffer, value: Buffer, leaseId: bigint, what: string): Promise<{ myRevision: bigint; holds: boolean; state: unknown }>;
  /** After a claim that did not hold: resolves once it does; throws OwnKeyGoneError if our key vanished, `signal.reason` on abort. */
  wait(claimed: ClaimedKey, signal: AbortSignal, what: string): Promise<void>;
}

let engineCount = 0;

/** The shared acquire/try/release machinery of the mutex and read/write locks (internal). */
export class QueueLockEngine {
  /**
   * Holds in the async context are keyed per engine (one per application), so
   * two applications in one process never mistake each other's holds for re-entry.
   */
  private readonly scope = ++engineCount;
  private readonly logger = new Logger('Coordination');
  private readonly local = new LocalMutexMap();
  private readonly held = new Set<HeldLock>();
  /** Keys whose deletion is still being retried; the next claim of the same key waits for it. */
  private readonly pendingRemovals = new Map<string, Promise<void>>();

  constructor(
    private readonly ops: EtcdOps,
    private readonly sessions: SessionService,
  ) {}

  async acquire(spec: QueueLockSpec, options: AcquireOptions = {}): Promise<LockHandle> {
    validateAcquireOptions(options);
    const reentrant = this.reenter(spec);
    if (reentrant) return reentrant;
    const op = this.beginOperation(spec, options);
    let localHeld = false;
    try {
      if (spec.localQueue) {
        await this.local.get(spec.contextKey).lock(op.signal);
        localHeld = true;
      }
      // Transient etcd errors are retried for as long as a new session may take to
      // establish (connectTimeout) since the first of them; past that the caller hears of it.
      let failingSince: number | undefined;
      for (let attempt = 0; ; attempt++) {
        try {
          const session = await this.sessions.session(op.signal);
          try {
            const handle = await this.acquireOnSession(spec, session, op.signal, false);
            localHeld = false; // the handle owns the local slot now
            return handle!;
          } catch (err) {
            // Our session ended while we waited: queue again on a new one.
            if (!op.signal.aborted && session.signal.aborted) continue;
            throw err;
          }
        } catch (err) {
          if (op.signal.aborted || !isTransientEtcdError(err)) throw err;
          failingSince ??= Date.now();
          if (Date.now() - failingSince >= this.sessions.connectTimeout) throw err;
          await sleep(backoffDelay(attempt, 100, 1_000), op.signal);
        }
      }
    } catch (err) {
      throw translateAbort(err, op, spec, options);
    } finally {
      op.dispose();
      if (localHeld) this.local.unlock(spec.contextKey);
      else if (spec.localQueue) this.local.prune(spec.contextKey);
    }
  }

  /** The lock if it is free right now, else `null` (never waits for another holder). */
  async tryAcquire(spec: QueueLockSpec): Promise<LockHandle | null> {
    const reentrant = this.reenter(spec);
    if (reentrant) return reentrant;
    if (this.sessions.shutdownSignal.aborted) throw new ShutdownError(Messages.shuttingDown());
    if (spec.localQueue && !this.local.get(spec.contextKey).tryLock()) {
      this.local.prune(spec.contextKey);
      return null;
    }
    let localHeld = spec.localQueue;
    try {
      // One more try on a new session if ours ended mid-call (e.g. the process was paused):
      // the old session's key is gone with it, so "is it free right now?" deserves a fresh answer.
      for (let attempt = 0; ; attempt++) {
        const session = await this.sessions.session(this.sessions.shutdownSignal);
        try {
          const handle = await this.acquireOnSession(spec, session, this.sessions.shutdownSignal, true);
          if (handle) localHeld = false;
          return handle;
        } catch (err) {
          if (attempt === 0 && session.signal.aborted && !this.sessions.shutdownSignal.aborted) continue;
          throw err;
        }
      }
    } finally {
      if (localHeld) this.local.unlock(spec.contextKey);
    }
  }

  private reenter(spec: QueueLockSpec): LockHandle | undefined {
    // A hold that covers this one wins over a conflict: in write -> read -> write the
    // inner read shares the write hold, so the innermost write re-enters it too.
    for (const contextKey of [spec.contextKey, ...(spec.reentrantFrom ?? [])]) {
      const outer = heldInContext(this.scoped(contextKey));
      if (outer) return new ReentrantLockHandle(outer);
    }
    for (const conflicting of spec.conflictsWith ?? []) {
      if (heldInContext(this.scoped(conflicting))) {
        throw new InvalidUsageError(
          `Cannot take ${spec.kind} "${spec.name}" while this call chain holds a conflicting lock on it (${conflicting}): it would wait for itself.`,
        );
      }
    }
    return undefined;
  }

  /** The key under which a hold of `contextKey` is stored in the async context. */
  scoped(contextKey: string): string {
    return `${this.scope}:${contextKey}`;
  }

  private beginOperation(spec: QueueLockSpec, options: AcquireOptions): OperationSignal {
    if (this.sessions.shutdownSignal.aborted) throw new ShutdownError(Messages.shuttingDown());
    return operationSignal({
      timeoutMs: options.timeout,
      caller: options.signal,
      others: [this.sessions.shutdownSignal],
    });
  }

  /**
   * Claims our key and (unless tryOnly) waits for our turn. On any failure our
   * key is removed before this returns or throws. Returns null only for tryOnly.
   */
  private async acquireOnSession(
    spec: QueueLockSpec,
    session: EtcdSession,
    signal: AbortSignal,
    tryOnly: boolean,
  ): Promise<HeldLock | null> {
    const op = operationSignal({ others: [signal, session.signal] });
    const myKey = spec.key(session);
    const keyString = myKey.toString('utf8');
    const what = `${spec.kind} "${spec.name}"`;
    let myRevision: bigint | undefined;
    let claimAttempted = false;
    try {
      const pending = this.pendingRemovals.get(keyString);
      if (pending) await raceSignal(pending, op.signal);
      claimAttempted = true;
      if (spec.turn) {
        const claimed = await spec.turn.claim(myKey, spec.value, session.leaseId, `acquire ${what}`);
        myRevision = claimed.myRevision;
        if (!claimed.holds) {
          if (tryOnly) {
            await this.removeKey(session, myKey, myRevision, what);
            return null;
          }
          const { state } = claimed;
          await spec.turn.wait({ myKey, myRevision, leaseId: session.leaseId, value: spec.value, state }, op.signal, `acquire ${what}`);
        }
        if (op.signal.aborted) throw op.signal.reason;
        session.throwIfEnded();
        return this.createHandle(spec, session, myKey, myRevision);
      }
      const claim = await this.ops.claim(myKey, spec.value, session.leaseId, spec.blocking, `acquire ${what}`);
      myRevision = claim.myRevision;
      if (tryOnly) {
        let blocker = claim.blocker;
        if (blocker === 'unknown') {
          const check = await this.ops.checkBlocker(myKey, myRevision, spec.blocking, `acquire ${what}`);
          if (check.ownKeyGone) throw new OwnKeyGoneError(myKey);
          blocker = check.blocker;
        }
        if (blocker) {
          await this.removeKey(session, myKey, myRevision, what);
          return null;
        }
      } else {
        await waitForTurn(this.ops, {
          myKey,
          myRevision,
          blocking: spec.blocking,
          signal: op.signal,
          what: `acquire ${what}`,
          blocker: claim.blocker,
          headerRevision: claim.headerRevision,
        });
      }
      // Ownership was confirmed by etcd, but refuse it if the caller gave up meanwhile
      // or if the session deadline passed: never hand out a lock that may not be held.
      if (op.signal.aborted) throw op.signal.reason;
      session.throwIfEnded();
      return this.createHandle(spec, session, myKey, myRevision);
    } catch (err) {
      if (claimAttempted) {
        // Remove our key (a waiter or a claim whose answer was lost) before reporting.
        await this.removeKey(session, myKey, myRevision, what);
      }
      if (err instanceof OwnKeyGoneError || session.signal.aborted) {
        throw session.signal.aborted ? session.signal.reason : new SessionLostError(err instanceof Error ? err.message : String(err));
      }
      throw err;
    } finally {
      op.dispose();
    }
  }

  private createHandle(spec: QueueLockSpec, session: EtcdSession, myKey: Buffer, myRevision: bigint): HeldLock {
    let localFreed = !spec.localQueue;
    // A lost hold frees its local slot at once, exactly as etcd frees the key for
    // other processes: the next local contender queues on a new session.
    const freeLocal = () => {
      if (localFreed) return;
      localFreed = true;
      this.local.unlock(spec.contextKey);
    };
    const handle: HeldLock = new HeldLock(
      spec.name,
      myKey.toString('utf8'),
      spec.mode,
      myRevision,
      session,
      async () => {
        try {
          await this.removeKey(session, myKey, myRevision, `${spec.kind} "${spec.name}"`);
        } finally {
          this.held.delete(handle);
          freeLocal();
        }
      },
      () => {
        this.held.delete(handle);
        freeLocal();
      },
    );
    this.held.add(handle);
    return handle;
  }

  /**
   * Deletes our key, guarded by its create revision (or, when the revision
   * is unknown because a claim's answer was lost, unconditionally: the key
   * name is ours alone while we hold the local slot). Waits one request for
   * it; if etcd does not answer, keeps retrying in the background until it
   * succeeds or the session ends, and makes the next claim of the key wait.
   */
  private async removeKey(session: EtcdSession, key: Buffer, revision: bigint | undefined, what: string): Promise<void> {
    const keyString = key.toString('utf8');
    const attempt = () =>
      revision === undefined
        ? this.ops.txn({ success: [{ request_delete_range: { key } }] }, `release ${what}`).then(() => undefined)
        : this.ops.deleteIfRevision(key, revision, `release ${what}`).then(() => undefined);
    if (session.endReason) return; // the lease is gone or being revoked, and our key with it
    try {
      await attempt();
      return;
    } catch (err) {
      if (isPermanentRemovalError(err)) {
        // Our role may not write this key (or we have no valid credentials), so the claim
        // cannot have created it either. Retrying could never succeed, and the next claim
        // of the key would wait for it forever.
        this.logger.warn(`could not delete ${keyString}: ${(err as Error).message}`);
        return;
      }
      this.logger.warn(`could not delete ${keyString}: ${(err as Error).message}; retrying until the session ends`);
    }
    const retry = (async () => {
      // Stop at shutdown too: shutdown waits for this loop before it closes the session, and
      // closing the session revokes the lease, which deletes the key anyway.
      const stop = operationSignal({ others: [session.signal, this.sessions.shutdownSignal] });
      try {
        for (let n = 0; !stop.signal.aborted; n++) {
          await sleep(backoffDelay(n, 200, 2_000), stop.signal).catch(() => undefined);
          if (stop.signal.aborted) return;
          try {
            await attempt();
            return;
          } catch (err) {
            if (isPermanentRemovalError(err)) return; // see above
            // otherwise keep trying until the session ends
          }
        }
      } finally {
        stop.dispose();
      }
    })().finally(() => {
      if (this.pendingRemovals.get(keyString) === retry) this.pendingRemovals.delete(keyString);
    });
    this.pendingRemovals.set(keyString, retry);
  }

  /** Shutdown: end every hold (signal first, then delete), and wait for pending deletions. */
  async shutdown(): Promise<void> {
    const reason = new ShutdownError(Messages.shuttingDown());
    await Promise.allSettled([...this.held].map((handle) => handle.revoke(reason)));
    await Promise.allSettled([...this.pendingRemovals.values()]);
  }

  /** Snapshot of the holds of this process (for status pages). */
  heldLocks(): HeldLockInfo[] {
    return [...this.held].map(({ name, key, mode, fencingToken }) => ({ name, key, mode, fencingToken }));
  }
}

/** Errors after which deleting our key can never succeed (and the key cannot exist). */
function isPermanentRemovalError(err: unknown): boolean {
  return err instanceof EtcdPermissionError || err instanceof EtcdAuthenticationError;
}

export function validateAcquireOptions(options: AcquireOptions): void {
  if (typeof options !== 'object' || options === null) throw new InvalidUsageError('acquire options must be an object');
  const { timeout, signal } = options;
  if (timeout !== undefined && (typeof timeout !== 'number' || !Number.isFinite(timeout) || timeout < 0)) {
    throw new InvalidUsageError(`timeout must be a finite number of milliseconds >= 0, got ${String(timeout)}`);
  }
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new InvalidUsageError('signal must be an AbortSignal');
  }
}

function translateAbort(err: unknown, op: OperationSignal, spec: QueueLockSpec, options: AcquireOptions): unknown {
  if (!op.signal.aborted) return err;
  switch (op.cause()) {
    case 'timeout':
      return new LockTimeoutError(spec.name, options.timeout!, Messages.lockTimeout(spec.name, options.timeout!));
    case 'caller':
      return new LockAbortedError(spec.name, Messages.lockAborted(spec.name), { cause: options.signal?.reason });
    default:
      return op.signal.reason;
  }
}
