import type { IKeyValue, IRangeRequest } from 'etcd3';
import type { EtcdOps } from '../etcd/etcd-ops.js';
import { OwnKeyGoneError } from '../etcd/wait-for-turn.js';
import { namePrefix, prefixRangeEnd, validateName } from '../etcd/keys.js';
import { runWithLock } from '../context/coordination.context.js';
import { InvalidUsageError, LockHeldError } from '../errors/coordination.errors.js';
import { Messages } from '../coordination.messages.js';
import { backoffDelay, sleep } from '../util/abort.js';
import type { LockHandle } from './lock-handle.js';
import type { AcquireOptions, ClaimedKey, QueueLockEngine, QueueLockSpec, TurnDiscipline } from './queue-lock.engine.js';
import type { SemaphoreProvider } from '../decorators/semaphore-provider.js';

/** The largest `permits` a semaphore accepts (every check reads up to `permits` keys). */
export const MAX_PERMITS = 10_000;

/** Options of {@link Semaphore.withPermit}. */
export interface WithPermitOptions extends AcquireOptions {
  /** `wait` (default) queues; `skip` resolves `undefined` without running; `fail` rejects with LockHeldError. */
  onLocked?: 'wait' | 'skip' | 'fail';
}

/**
 * A cluster-wide counting semaphore: at most `permits` holders at once across
 * every process that uses the same name (and the same `permits`), served in
 * FIFO order. Get one from {@link LockService.semaphore}.
 *
 * Each hold is one etcd key `<namespace><name>/<lease hex>-<n>` on the
 * session lease, so the permit of a crashed process comes back when its
 * session TTL expires. A permit's handle is a {@link LockHandle} with mode
 * `'permit'`: fencing token (strictly increasing in the order permits are
 * granted), an AbortSignal that aborts when the permit is lost, `release()`
 * and `await using`.
 *
 * All callers of one name must pass the same `permits`: the count lives in
 * each caller, not in etcd, and a mismatch cannot be detected cheaply (each
 * caller would enforce its own bound).
 */
export interface Semaphore {
  /** The semaphore's name. */
  readonly name: string;
  /** How many holders it admits at once. */
  readonly permits: number;
  /**
   * Waits for a permit in FIFO order. Rejects with LockTimeoutError or
   * LockAbortedError (our waiter key removed), ShutdownError, SessionLostError
   * or an etcd error. Inside `withPermit` of the same name (same call chain) it
   * re-enters the outer permit instead of taking a second one.
   */
  acquire(options?: AcquireOptions): Promise<LockHandle>;
  /** A permit if one is free right now (and nobody waits), else `null` at once. */
  tryAcquire(): Promise<LockHandle | null>;
  /**
   * Runs `fn` while holding a permit and always releases it. `onLocked`:
   * `wait` (default), `skip` (resolve `undefined` without running when no
   * permit is free) or `fail` (reject with LockHeldError).
   */
  withPermit<T>(fn: (permit: LockHandle) => Promise<T> | T, options?: WithPermitOptions & { onLocked?: 'wait' | 'fail' }): Promise<T>;
  withPermit<T>(fn: (permit: LockHandle) => Promise<T> | T, options: WithPermitOptions & { onLocked: 'skip' }): Promise<T | undefined>;
  withPermit<T>(fn: (permit: LockHandle) => Promise<T> | T, options?: WithPermitOptions): Promise<T | undefined>;
}

/** Wake-ups of semaphore waiters (watch events that led to a re-check), for tests (internal). */
export const semaphoreDebug = { wakeups: 0 };

/** Where our key stands in the queue (internal). */
type Standing =
  | { kind: 'holder' }
  /** Exactly `permits` older keys: any deletion of one of them frees a permit for us. */
  | { kind: 'first-waiter' }
  /** More than `permits` older keys: only our predecessor's progress (PUT) or exit (DELETE) concerns us. */
  | { kind: 'waiter'; predecessor: Buffer };

interface Observed {
  standing: Standing;
  headerRevision: bigint;
}

export function validatePermits(permits: unknown, where = 'semaphore'): asserts permits is number {
  if (typeof permits !== 'number' || !Number.isInteger(permits) || permits < 1 || permits > MAX_PERMITS) {
    throw new InvalidUsageError(`${where}: permits must be an integer from 1 to ${MAX_PERMITS}, got ${String(permits)}`);
  }
}

/** What {@link createSemaphore} needs from LockService (internal). */
export interface SemaphoreContext {
  engine: QueueLockEngine;
  ops: EtcdOps;
  namespace: string;
  identity: string;
  /** A suffix unique within this process, for one key per hold. */
  nextUnique(): string;
}

/** Builds the semaphore `name` with `permits` (validated) (internal; see LockService.semaphore). */
export function createSemaphore(context: SemaphoreContext, name: string, permits: number): Semaphore {
  validateName('semaphore', name);
  validatePermits(permits);
  return new EtcdSemaphore(context, name, permits);
}

/** `@WithLock({ permits })`'s view of the semaphores of one LockService (internal). */
export function semaphoreProvider(locks: { semaphore(name: string, permits: number): Semaphore }): SemaphoreProvider {
  return {
    withPermit: (name, permits, fn, options) => locks.semaphore(name, permits).withPermit(fn, options),
  };
}

class EtcdSemaphore implements Semaphore {
  private readonly prefix: Buffer;

  constructor(
    private readonly context: SemaphoreContext,
    readonly name: string,
    readonly permits: number,
  ) {
    this.prefix = namePrefix(context.namespace, name);
  }

  acquire(options: AcquireOptions = {}): Promise<LockHandle> {
    return this.context.engine.acquire(this.spec(), options);
  }

  tryAcquire(): Promise<LockHandle | null> {
    return this.context.engine.tryAcquire(this.spec());
  }

  withPermit<T>(fn: (permit: LockHandle) => Promise<T> | T, options?: WithPermitOptions): Promise<T>;
  withPermit<T>(fn: (permit: LockHandle) => Promise<T> | T, options: WithPermitOptions & { onLocked: 'skip' }): Promise<T | undefined>;
  async withPermit<T>(fn: (permit: LockHandle) => Promise<T> | T, options: WithPermitOptions = {}): Promise<T | undefined> {
    if (typeof fn !== 'function') throw new InvalidUsageError('withPermit needs a function to run under the permit');
    const onLocked = options.onLocked ?? 'wait';
    const spec = this.spec();
    let handle: LockHandle | null;
    switch (onLocked) {
      case 'wait':
        handle = await this.context.engine.acquire(spec, options);
        break;
      case 'skip':
      case 'fail':
        handle = await this.context.engine.tryAcquire(spec);
        if (!handle) {
          if (onLocked === 'skip') return undefined;
          throw new LockHeldError(this.name, Messages.semaphoreFull(this.name, this.permits));
        }
        break;
      default:
        throw new InvalidUsageError(`onLocked must be 'wait', 'skip' or 'fail', got ${JSON.stringify(onLocked)}`);
    }
    try {
      return await runWithLock(this.context.engine.scoped(spec.contextKey), handle, () => fn(handle!));
    } finally {
      await handle.release();
    }
  }

  private spec(): QueueLockSpec {
    const { prefix } = this;
    return {
      kind: 'semaphore',
      mode: 'permit',
      name: this.name,
      contextKey: `semaphore:${this.name}`,
      localQueue: false,
      key: (session) => Buffer.concat([prefix, Buffer.from(`${session.leaseHex}-${this.context.nextUnique()}`)]),
      blocking: { key: prefix, rangeEnd: prefixRangeEnd(prefix) },
      value: Buffer.from(this.context.identity),
      turn: new PermitTurn(this.context.ops, prefix, this.permits),
    };
  }
}

/**
 * The semaphore's queue discipline. A key holds a permit when fewer than
 * `permits` keys are older than it, so the holders are always the `permits`
 * oldest keys and permits are granted in arrival (create revision) order.
 *
 * Waiting without a herd: the first waiter (exactly `permits` older keys)
 * watches the name's prefix for the deletion of an older key; every later
 * waiter watches only its predecessor, for a DELETE (it left) or a PUT (it
 * got its permit and "touched" its key, so we may now be the first waiter).
 * A hand-over therefore wakes the first waiter and, through its touch, the
 * next one: O(1) watch events per hand-over, whatever the queue length.
 */
class PermitTurn implements TurnDiscipline {
  private readonly rangeEnd: Buffer;

  constructor(
    private readonly ops: EtcdOps,
    private readonly prefix: Buffer,
    private readonly permits: number,
  ) {
    this.rangeEnd = prefixRangeEnd(prefix);
  }

  /**
   * `If(CreateRevision(myKey)==0) Then(Put(myKey), Range(newest permits+1 keys)) Else(Get(myKey))`:
   * one round trip for an uncontended acquire, idempotent under retry.
   */
  async claim(myKey: Buffer, value: Buffer, leaseId: bigint, what: string): Promise<{ myRevision: bigint; holds: boolean; state: unknown }> {
    const raw = await this.ops.claimKey(myKey, value, leaseId, { key: this.prefix, rangeEnd: this.rangeEnd }, this.permits + 1, what);
    if (raw.created) {
      // Our put is the newest key; everything else in the answer is older.
      const observed: Observed = { standing: this.standing(raw.older, raw.more), headerRevision: raw.headerRevision };
      return { myRevision: raw.myRevision, holds: observed.standing.kind === 'holder', state: observed };
    }
    // A retried claim whose first answer was lost: our key exists; look where it stands.
    const myRevision = raw.myRevision;
    const observed = await this.check(myKey, myRevision, what);
    const holds = observed.standing.kind === 'holder';
    // A successor may have queued while we looked like a waiter: wake it, as after a wait.
    if (holds && !(await this.ops.putIfRevision(myKey, myRevision, value, leaseId, what))) throw new OwnKeyGoneError(myKey);
    return { myRevision, holds, state: observed };
  }

  /**
   * One atomic transaction: our key still exists with our create revision
   * (else our session expired) and the newest `permits` keys older than ours.
   * Their number tells whether we hold (fewer than `permits`), are the first
   * waiter (exactly `permits`, `more` false) or a later one; the first of them
   * is our predecessor.
   *
   * (A `count_only` range would be cheaper, but etcd computes the count before
   * applying `max_create_revision`: it counts every key, older or not.)
   */
  private async check(myKey: Buffer, myRevision: bigint, what: string): Promise<Observed> {
    const res = await this.ops.txn(
      {
        compare: [{ key: myKey, target: 'Create', result: 'Equal', create_revision: myRevision.toString() }],
        success: [
          {
            request_range: {
              key: this.prefix,
              range_end: this.rangeEnd,
              max_create_revision: (myRevision - 1n).toString(),
              sort_order: 'Descend',
              sort_target: 'Create',
              limit: this.permits,
              keys_only: true,
            },
          },
        ],
        failure: [],
      },
      what,
    );
    if (!res.succeeded) throw new OwnKeyGoneError(myKey);
    const range = res.responses[0]!.response_range;
    return { standing: this.standing(range.kvs, range.more), headerRevision: BigInt(res.header.revision) };
  }

  /** `older`: keys older than ours, newest first, at most `permits` of them; `more`: there are further ones. */
  private standing(older: IKeyValue[], more: boolean): Standing {
    if (older.length < this.permits) return { kind: 'holder' };
    if (older.length === this.permits && !more) return { kind: 'first-waiter' };
    return { kind: 'waiter', predecessor: older[0]!.key };
  }

  async wait(claimed: ClaimedKey, signal: AbortSignal, what: string): Promise<void> {
    const { myKey, myRevision } = claimed;
    let observed: Observed | undefined = claimed.state as Observed;
    let waited = false;
    let watchFailures = 0;
    for (;;) {
      if (signal.aborted) throw signal.reason;
      observed ??= await this.check(myKey, myRevision, what);
      const { standing, headerRevision } = observed;
      if (standing.kind === 'holder') {
        // Wake our successor, which watches only us: it may now be the first waiter.
        if (waited && !(await this.ops.putIfRevision(myKey, myRevision, claimed.value, claimed.leaseId, what))) {
          throw new OwnKeyGoneError(myKey);
        }
        return;
      }
      waited = true;
      const outcome =
        standing.kind === 'first-waiter'
          ? await waitForOlderDeletion(this.ops, this.prefix, myRevision, headerRevision, signal)
          : await this.ops.waitForDeletion(standing.predecessor, headerRevision, signal, 'put-or-delete');
      semaphoreDebug.wakeups++;
      if (outcome === 'watch-error') {
        // Compaction or a cancelled watch: back off a little, then re-read the truth.
        await sleep(backoffDelay(watchFailures++, 50, 2_000), signal);
      } else {
        watchFailures = 0;
      }
      observed = undefined;
    }
  }
}

/**
 * Resolves when a key of the prefix created at or before `myRevision` (an
 * older holder, or our own key) is deleted after `afterRevision`, or when the
 * watch fails. Deletions of newer keys (waiters behind us giving up) are
 * filtered out with the previous key-value; when etcd cannot supply it we
 * wake anyway: a spurious wake-up only costs a re-check.
 */
function waitForOlderDeletion(
  ops: EtcdOps,
  prefix: Buffer,
  myRevision: bigint,
  afterRevision: bigint,
  signal: AbortSignal,
): Promise<'deleted' | 'watch-error'> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const watcher = ops.client
      .watch()
      .prefix(prefix)
      .startRevision((afterRevision + 1n).toString())
      .only('delete')
      .withPreviousKV()
      .watcher();
    let connected = false;
    const finish = (settle: () => void, cancel = true) => {
      signal.removeEventListener('abort', onAbort);
      watcher.removeAllListeners();
      // Swallow late errors from a watcher we are tearing down.
      watcher.on('error', () => undefined);
      // After 'error' etcd3 has already dropped the watcher, and cancel() would never settle.
      if (cancel) void watcher.cancel().catch(() => undefined);
      settle();
    };
    const onAbort = () => finish(() => reject(signal.reason));
    signal.addEventListener('abort', onAbort, { once: true });
    watcher.on('connected', () => (connected = true));
    watcher.on('disconnected', () => (connected = false));
    watcher.on('delete', (_kv: IKeyValue, previous?: IKeyValue) => {
      if (previous && BigInt(previous.create_revision) > myRevision) return;
      finish(() => resolve('deleted'));
    });
    watcher.on('error', (err: Error) => {
      // etcd refused to create the watch: let EtcdOps reopen the stream (when it offers that)
      // so later watches of the client do not queue behind the refused one.
      if (!connected) (ops as Partial<{ recoverWatchStream(err: unknown): void }>).recoverWatchStream?.(err);
      finish(() => resolve('watch-error'), false);
    });
  });
}
