import type { ICompare, IRequestOp } from 'etcd3';
import type { EtcdOps } from '../etcd/etcd-ops.js';
import type { EtcdWatches } from '../etcd/watch.js';
import { isTransientEtcdError } from '../etcd/etcd-errors.js';
import type { EtcdSession } from '../session/etcd-session.js';
import type { SessionService } from '../session/session.service.js';
import { heldInContext } from '../context/coordination.context.js';
import {
  EtcdUnavailableError,
  HoldLostError,
  InvalidUsageError,
  LockAbortedError,
  LockTimeoutError,
  SessionLostError,
  ShutdownError,
} from '../errors/coordination.errors.js';
import { Messages } from '../coordination.messages.js';
import { Instrumentation } from '../observability/instrumentation.js';
import { backoffDelay, LazyOperationSignal, raceSignal, sleep, type AbortInput } from '../util/abort.js';
import { LocalMutexMap } from './local-mutex.js';
import { Hold, ReentrantHold } from './hold.js';
import { HeldKeyWatches } from './held-key-watch.js';
import { KeyRemover } from './key-removal.js';
import { NameRegistry } from './name-registry.js';
import { claimAndWait, OwnKeyGoneError, type QueuedKey } from './queue-wait.js';
import { validateAcquireOptions, type AcquireOptions, type QueueSpec } from './queue-spec.js';

let engineCount = 0;

/**
 * The one queue engine of an application: every mutex, read/write hold,
 * semaphore permit and election campaign is acquired here. What differs
 * between the kinds is the {@link QueueSpec} (key, turn policy); the engine
 * does re-entry, the local queue, claim -> wait -> re-check
 * ({@link claimAndWait}), retry on a new session, typed errors, and removes
 * our key on every way out.
 */
export class QueueEngine {
  /**
   * Holds in the async context are keyed per engine (one per application), so
   * two applications in one process never mistake each other's holds for re-entry.
   */
  private readonly scope = ++engineCount;
  private readonly local = new LocalMutexMap();
  private readonly held = new Set<Hold>();
  readonly names = new NameRegistry();
  private readonly removals: KeyRemover;
  private readonly heldKeys: HeldKeyWatches;

  constructor(
    private readonly ops: EtcdOps,
    private readonly watches: EtcdWatches,
    private readonly sessions: SessionService,
    readonly instrumentation: Instrumentation = Instrumentation.plain(),
    namespace = '',
  ) {
    this.removals = new KeyRemover(ops, sessions.shutdownSignal);
    this.heldKeys = new HeldKeyWatches(watches, ops, namespace);
  }

  /** Waits for our turn. See {@link AcquireOptions} for timeout and abort. */
  acquire<H extends Hold>(spec: QueueSpec<H>, options: AcquireOptions = {}): Promise<H | ReentrantHold<H>> {
    return this.instrumentation.acquisition(spec, false, () => this.acquireUninstrumented(spec, options), isReentrant);
  }

  private async acquireUninstrumented<H extends Hold>(spec: QueueSpec<H>, options: AcquireOptions): Promise<H | ReentrantHold<H>> {
    const timeout = validateAcquireOptions(options);
    if (options.signal?.aborted) throw aborted(spec, options.signal);
    const reentrant = this.reenter(spec);
    if (reentrant) return reentrant;
    this.throwIfShuttingDown();
    const endUse = this.names.use(spec.name, spec.registryKind);
    const op = new LazyOperationSignal(
      options.signal ? [[options.signal, 'caller'], [this.sessions.shutdownSignal, 'other']] : [[this.sessions.shutdownSignal, 'other']],
      timeout,
    );
    let localHeld = false;
    let outageSince: number | undefined;
    let outageError: unknown;
    let sessionsLost = 0;
    try {
      if (spec.localQueue) {
        const local = this.local.get(spec.contextKey);
        if (op.aborted) throw op.reason;
        if (!local.tryLock()) await local.lock(op.signal);
        localHeld = true;
      }
      // Transient etcd errors are retried within the caller's timeout, or (without one) for as
      // long as a new session may take to establish (connectTimeout) since the first of them.
      for (let attempt = 0; ; attempt++) {
        try {
          // The live session, without a wait when there is one (the common case).
          const session = this.sessions.peek() ?? (await this.sessionWithin(op.signal, timeout !== undefined));
          const hold = await this.acquireOnSession(spec, session, op, false);
          localHeld = false; // the hold owns the local slot now
          return hold!;
        } catch (err) {
          if (op.aborted) throw err;
          if (err instanceof SessionLostError) {
            // Queue again (on a new session if ours ended); back off if it keeps happening.
            if (sessionsLost++ > 0) await sleep(backoffDelay(sessionsLost, 50, 1_000), op.signal);
            continue;
          }
          if (!isTransientEtcdError(err)) throw err;
          outageSince ??= Date.now();
          outageError = err;
          if (timeout === undefined && Date.now() - outageSince >= this.sessions.connectTimeout) throw err;
          await sleep(backoffDelay(attempt, 100, 1_000), op.signal);
        }
      }
    } catch (err) {
      // Timed out without a live session: etcd could not be reached, whoever holds the name.
      if (outageError === undefined && op.cause() === 'timeout' && !this.sessions.peek()) {
        outageError = new EtcdUnavailableError(this.ops.hosts, Messages.noSessionWithin(timeout!), { retryable: false });
      }
      throw translateAbort(err, op, spec, timeout, options, outageError);
    } finally {
      endUse(); // a hold, if we got one, registered its own use
      op.dispose();
      if (localHeld) this.local.unlock(spec.contextKey);
      else if (spec.localQueue) this.local.prune(spec.contextKey);
    }
  }

  /**
   * The live session, or a new one: with a caller's timeout, created within
   * it (etcd may come back meanwhile); without one, bounded by connectTimeout.
   */
  private sessionWithin(signal: AbortSignal, callerBounded: boolean): Promise<EtcdSession> {
    return callerBounded ? this.sessions.session(signal) : raceSignal(this.sessions.session(), signal);
  }

  /** The hold if it is free right now (nobody older holds or waits), else `null`; never waits for another holder. */
  tryAcquire<H extends Hold>(spec: QueueSpec<H>): Promise<H | ReentrantHold<H> | null> {
    return this.instrumentation.acquisition(spec, true, () => this.tryAcquireUninstrumented(spec), isReentrant);
  }

  private async tryAcquireUninstrumented<H extends Hold>(spec: QueueSpec<H>): Promise<H | ReentrantHold<H> | null> {
    const reentrant = this.reenter(spec);
    if (reentrant) return reentrant;
    this.throwIfShuttingDown();
    const endUse = this.names.use(spec.name, spec.registryKind);
    if (spec.localQueue && !this.local.get(spec.contextKey).tryLock()) {
      this.local.prune(spec.contextKey);
      endUse();
      return null;
    }
    let localHeld = spec.localQueue;
    try {
      // One more try on a new session if ours ended mid-call (e.g. the process was paused):
      // the old session's key is gone with it, so "is it free right now?" deserves a fresh answer.
      for (let attempt = 0; ; attempt++) {
        const session = await this.sessionWithin(this.sessions.shutdownSignal, false);
        try {
          const hold = await this.acquireOnSession(spec, session, this.sessions.shutdownSignal, true);
          if (hold) localHeld = false;
          return hold;
        } catch (err) {
          if (attempt === 0 && err instanceof SessionLostError && !this.sessions.shutdownSignal.aborted) continue;
          throw err;
        }
      }
    } finally {
      if (localHeld) this.local.unlock(spec.contextKey);
      endUse(); // a hold, if we got one, registered its own use
    }
  }

  private reenter<H extends Hold>(spec: QueueSpec<H>): ReentrantHold<H> | undefined {
    // A hold that covers this one wins over a conflict: in write -> read -> write the
    // inner read shares the write hold, so the innermost write re-enters it too.
    for (const contextKey of [spec.contextKey, ...(spec.reentrantFrom ?? [])]) {
      const outer = heldInContext(this.scoped(contextKey));
      if (outer) return new ReentrantHold(outer as H);
    }
    for (const conflicting of spec.conflictsWith ?? []) {
      if (heldInContext(this.scoped(conflicting))) throw new InvalidUsageError(Messages.selfDeadlock(spec.kind, spec.name, conflicting));
    }
    return undefined;
  }

  /** The key under which a hold of `contextKey` is stored in the async context. */
  scoped(contextKey: string): string {
    return `${this.scope}:${contextKey}`;
  }

  private throwIfShuttingDown(): void {
    if (this.sessions.shutdownSignal.aborted) throw new ShutdownError(Messages.shuttingDown());
  }

  /**
   * Claims our key and (unless tryOnly) waits for our turn. On any failure
   * our key is removed before this returns or throws. Returns null only for
   * tryOnly. Throws SessionLostError when the session ended meanwhile.
   */
  private async acquireOnSession<H extends Hold>(spec: QueueSpec<H>, session: EtcdSession, signal: AbortInput, tryOnly: boolean): Promise<H | null> {
    const op = new LazyOperationSignal([[signal, 'other'], [session.signal, 'other']]);
    const queued: QueuedKey = { myKey: spec.key(session), leaseId: session.leaseId };
    const what = `${spec.kind} "${spec.name}"`;
    let claimAttempted = false;
    try {
      const removing = this.removals.pendingFor(queued.myKey);
      if (removing) await raceSignal(removing, op.signal);
      claimAttempted = true;
      // A waiter re-reads the queue at least once per session TTL, even without a watch event.
      const holds = await claimAndWait(this.ops, this.watches, spec, queued, op, tryOnly, session.ttlSeconds * 1_000);
      if (!holds) {
        await this.removals.remove(session, queued.myKey, queued.myRevision, what);
        return null;
      }
      // Ownership was confirmed by etcd, but refuse it if the caller gave up meanwhile
      // or if the session deadline passed: never hand out a hold that may not be held.
      if (op.aborted) throw op.reason;
      session.throwIfEnded();
      return this.createHold(spec, session, queued.myKey, queued.myRevision!, queued.knownAt!);
    } catch (err) {
      // Remove our key (a waiter, or a claim whose answer was lost) before reporting.
      if (claimAttempted) await this.removals.remove(session, queued.myKey, queued.myRevision, what);
      if (session.signal.aborted && !signal.aborted) throw session.signal.reason;
      if (err instanceof OwnKeyGoneError) throw new SessionLostError(err.message);
      throw err;
    } finally {
      op.dispose();
    }
  }

  private createHold<H extends Hold>(spec: QueueSpec<H>, session: EtcdSession, key: Buffer, revision: bigint, knownAt: bigint): H {
    const endUse = this.names.use(spec.name, spec.registryKind);
    const what = `${spec.kind} "${spec.name}"`;
    const init = {
      name: spec.name,
      key,
      mode: spec.mode,
      revision,
      fencingToken: this.ops.fencingToken(revision),
      session,
      remove: () => this.removals.remove(session, key, revision, what),
      // A lost hold frees its local slot at once, exactly as etcd frees the key for
      // other processes: the next local contender queues on a new session.
      onEnd: () => {
        this.instrumentation.holdEnded(spec, hold);
        this.held.delete(hold);
        endUse();
        if (spec.localQueue) this.local.unlock(spec.contextKey);
      },
      releasedReason: spec.releasedReason,
      guardedTxn: async (compare: ICompare, success: IRequestOp[], guardedWhat: string) =>
        (await this.ops.txn({ compare: [compare], success, failure: [] }, guardedWhat)).succeeded,
      lostReason: () => new HoldLostError(spec.name, Messages.holdLost(spec.kind, spec.name)),
    };
    const hold: H = spec.createHold ? spec.createHold(init) : (new Hold(init) as H);
    this.held.add(hold);
    // Someone else deleting or replacing our key (etcdctl del, a force release) ends the hold at once.
    this.heldKeys.watch(hold, spec.kind, knownAt + 1n, (reason) => void hold.revoke(reason).catch(() => undefined));
    return hold;
  }

  /** Shutdown: end every hold (signal first, then delete), and wait for pending deletions. */
  async shutdown(): Promise<void> {
    const reason = new ShutdownError(Messages.shuttingDown());
    await Promise.allSettled([...this.held].map((hold) => hold.revoke(reason)));
    this.heldKeys.close();
    await this.removals.drain();
  }

  /** The holds of this application right now. */
  holds(): readonly Hold[] {
    return [...this.held];
  }
}

const isReentrant = (result: unknown): boolean => result instanceof ReentrantHold;

/** The typed error for a caller whose own signal was aborted (also before anything started). */
function aborted(spec: QueueSpec, signal: AbortSignal): LockAbortedError {
  return new LockAbortedError(spec.name, Messages.waitAborted(spec.kind, spec.name), { cause: signal.reason });
}

function translateAbort(
  err: unknown,
  op: LazyOperationSignal,
  spec: QueueSpec,
  timeout: number | undefined,
  options: AcquireOptions,
  outageError: unknown,
): unknown {
  if (!op.aborted) return err;
  switch (op.cause()) {
    case 'timeout':
      // Timed out while etcd could not be reached: the outage is the cause, not another holder.
      if (outageError !== undefined) {
        const hosts = outageError instanceof EtcdUnavailableError ? outageError.hosts : [];
        return new EtcdUnavailableError(hosts, Messages.timedOutDuringOutage(spec.kind, spec.name, timeout!, (outageError as Error).message), {
          cause: outageError,
          retryable: false,
        });
      }
      return new LockTimeoutError(spec.name, timeout!, Messages.waitTimeout(spec.kind, spec.name, timeout!));
    case 'caller':
      return aborted(spec, options.signal!);
    default:
      return op.reason;
  }
}

