import type { EtcdSession } from '../session/etcd-session.js';
import { heldInContext } from '../context/coordination.context.js';
import type { ICompare, IRequestOp } from 'etcd3';
import { HoldLostError, InvalidUsageError, LockAbortedError, LockTimeoutError, SessionLostError, ShutdownError } from '../errors/coordination.errors.js';
import { Messages } from '../coordination.messages.js';
import { operationSignal, raceSignal, type OperationSignal } from '../util/abort.js';
import { Hold, ReentrantHold } from '../queue/hold.js';
import { LocalMutexMap } from '../queue/local-mutex.js';
import { NameRegistry } from '../queue/name-registry.js';
import type { QueueEngine } from '../queue/queue.engine.js';
import { validateAcquireOptions, type AcquireOptions, type QueueSpec } from '../queue/queue-spec.js';
import type { FakeStore } from './fake-store.js';
import type { FakeSessionService } from './fake-session.js';

/** What `LockService`, `ElectionService` and the campaigns use of the engine (internal). */
export type EngineSurface = Pick<QueueEngine, 'acquire' | 'tryAcquire' | 'scoped' | 'holds' | 'shutdown' | 'names'>;

let fakeEngineCount = 0;

/**
 * The queue engine of the testing kit: the same contract as the library's
 * `QueueEngine` (re-entry, the local queue for one-key-per-session kinds,
 * name registry, timeouts and aborts with the same errors, retry on a new
 * session, our key removed on every way out) over the {@link FakeStore}. The
 * turn is decided by the kind's own {@link QueueSpec.policy} (the library's
 * turn policies) on the store's keys; instead of watching one predecessor,
 * every waiter re-checks after each change of the store (fine in one process).
 */
export class FakeQueueEngine implements EngineSurface {
  /** Distinct from the real engines' scopes, so a fake and a real app in one process never share re-entry. */
  private readonly scope = `fake${++fakeEngineCount}`;
  private readonly local = new LocalMutexMap();
  private readonly held = new Set<Hold>();
  readonly names = new NameRegistry();

  constructor(
    private readonly store: FakeStore,
    private readonly sessions: FakeSessionService,
  ) {}

  async acquire<H extends Hold>(spec: QueueSpec<H>, options: AcquireOptions = {}): Promise<H | ReentrantHold<H>> {
    const timeout = validateAcquireOptions(options);
    if (options.signal?.aborted) throw aborted(spec, options.signal);
    const reentrant = this.reenter(spec);
    if (reentrant) return reentrant;
    this.throwIfShuttingDown();
    const endUse = this.names.use(spec.name, spec.registryKind);
    const op = operationSignal({ timeoutMs: timeout, caller: options.signal, others: [this.sessions.shutdownSignal] });
    let localHeld = false;
    try {
      if (spec.localQueue) {
        await this.local.get(spec.contextKey).lock(op.signal);
        localHeld = true;
      }
      for (;;) {
        const session = await raceSignal(this.sessions.session(), op.signal);
        try {
          const hold = await this.acquireOnSession(spec, session, op.signal, false);
          localHeld = false; // the hold owns the local slot now
          return hold!;
        } catch (err) {
          if (op.signal.aborted) throw err;
          if (err instanceof SessionLostError) continue; // queue again on a new session
          throw err;
        }
      }
    } catch (err) {
      throw translateAbort(err, op, spec, timeout, options);
    } finally {
      endUse();
      op.dispose();
      if (localHeld) this.local.unlock(spec.contextKey);
      else if (spec.localQueue) this.local.prune(spec.contextKey);
    }
  }

  async tryAcquire<H extends Hold>(spec: QueueSpec<H>): Promise<H | ReentrantHold<H> | null> {
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
      const session = await this.sessions.session();
      const hold = await this.acquireOnSession(spec, session, this.sessions.shutdownSignal, true);
      if (hold) localHeld = false;
      return hold;
    } finally {
      if (localHeld) this.local.unlock(spec.contextKey);
      endUse();
    }
  }

  private reenter<H extends Hold>(spec: QueueSpec<H>): ReentrantHold<H> | undefined {
    for (const contextKey of [spec.contextKey, ...(spec.reentrantFrom ?? [])]) {
      const outer = heldInContext(this.scoped(contextKey));
      if (outer) return new ReentrantHold(outer as H);
    }
    for (const conflicting of spec.conflictsWith ?? []) {
      if (heldInContext(this.scoped(conflicting))) throw new InvalidUsageError(Messages.selfDeadlock(spec.kind, spec.name, conflicting));
    }
    return undefined;
  }

  scoped(contextKey: string): string {
    return `${this.scope}:${contextKey}`;
  }

  private throwIfShuttingDown(): void {
    if (this.sessions.shutdownSignal.aborted) throw new ShutdownError(Messages.shuttingDown());
  }

  /** Claims our key and (unless tryOnly) waits for our turn; our key is removed on every failure. */
  private async acquireOnSession<H extends Hold>(spec: QueueSpec<H>, session: EtcdSession, signal: AbortSignal, tryOnly: boolean): Promise<H | null> {
    const op = operationSignal({ others: [signal, session.signal] });
    const key = spec.key(session);
    let revision: bigint | undefined;
    try {
      if (op.signal.aborted) throw op.signal.reason;
      const claim = this.store.claim(key, spec.value, session.leaseId);
      revision = claim.createRevision;
      if (!claim.created && !this.store.get(key)!.value.equals(spec.value)) this.store.putIfRevision(key, revision, spec.value);
      const { policy } = spec;
      for (;;) {
        if (op.signal.aborted) throw op.signal.reason;
        const mine = this.store.get(key);
        if (!mine || BigInt(mine.create_revision) !== revision) throw new SessionLostError(Messages.ownKeyGone(key.toString('utf8')));
        const { older, more } = this.store.older(policy.range, revision, policy.olderLimit);
        if (policy.standing(older, more, revision).holds) break;
        if (tryOnly) {
          this.store.deleteIfRevision(key, revision);
          return null;
        }
        await this.store.nextChange(op.signal);
      }
      session.throwIfEnded();
      return this.createHold(spec, session, key, revision);
    } catch (err) {
      if (revision !== undefined) this.store.deleteIfRevision(key, revision);
      if (session.signal.aborted && !signal.aborted) throw session.signal.reason;
      throw err;
    } finally {
      op.dispose();
    }
  }

  private createHold<H extends Hold>(spec: QueueSpec<H>, session: EtcdSession, key: Buffer, revision: bigint): H {
    const endUse = this.names.use(spec.name, spec.registryKind);
    const init = {
      name: spec.name,
      key,
      mode: spec.mode,
      revision,
      fencingToken: revision,
      session,
      remove: async () => {
        this.store.deleteIfRevision(key, revision);
      },
      onEnd: () => {
        this.held.delete(hold);
        endUse();
        if (spec.localQueue) this.local.unlock(spec.contextKey);
      },
      releasedReason: spec.releasedReason,
      guardedTxn: async (_compare: ICompare, success: IRequestOp[]) => {
        const [first] = success;
        const put = first?.request_put;
        const del = first?.request_delete_range;
        return this.store.guarded(key, revision, {
          put: put ? { key: Buffer.from(put.key as Buffer), value: Buffer.from(put.value as Buffer) } : undefined,
          delete: del ? Buffer.from(del.key as Buffer) : undefined,
        });
      },
      lostReason: () => new HoldLostError(spec.name, Messages.holdLost(spec.kind, spec.name)),
    };
    const hold: H = spec.createHold ? spec.createHold(init) : (new Hold(init) as H);
    this.held.add(hold);
    return hold;
  }

  async shutdown(): Promise<void> {
    const reason = new ShutdownError(Messages.shuttingDown());
    await Promise.allSettled([...this.held].map((hold) => hold.revoke(reason)));
  }

  holds(): readonly Hold[] {
    return [...this.held];
  }

  /** As the library's services see it. */
  asQueueEngine(): QueueEngine {
    return this as unknown as QueueEngine;
  }
}

function aborted(spec: QueueSpec, signal: AbortSignal): LockAbortedError {
  return new LockAbortedError(spec.name, Messages.waitAborted(spec.kind, spec.name), { cause: signal.reason });
}

function translateAbort(err: unknown, op: OperationSignal, spec: QueueSpec, timeout: number | undefined, options: AcquireOptions): unknown {
  if (!op.signal.aborted) return err;
  switch (op.cause()) {
    case 'timeout':
      return new LockTimeoutError(spec.name, timeout!, Messages.waitTimeout(spec.kind, spec.name, timeout!));
    case 'caller':
      return aborted(spec, options.signal!);
    default:
      return op.signal.reason;
  }
}
