import { Inject, Injectable, Logger, type BeforeApplicationShutdown, type OnModuleDestroy } from '@nestjs/common';
import { RESOLVED_COORDINATION_OPTIONS } from '../coordination.constants.js';
import type { ResolvedCoordinationOptions } from '../coordination.options.js';
import { EtcdOps } from '../etcd/etcd-ops.js';
import { SessionService } from '../session/session.service.js';
import { Messages, OperateMessages } from '../coordination.messages.js';
import { leaseHex, namePrefix, validateName } from '../etcd/keys.js';
import { forceReleaseKey, type ForceReleaseOptions, type ForcedRelease } from './force-release.js';
import { QueueEngine } from '../queue/queue.engine.js';
import { QueueLockable, type KeyHolder, type Lockable, type OnLocked, type RunOptions } from '../queue/lockable.js';
import type { AcquireOptions, QueueSpec } from '../queue/queue-spec.js';
import type { LockHandle } from './lock-handle.js';
import { mutexSpec, readWriteSpec, semaphoreSpec, type LockSpecContext } from './lock-specs.js';
import { QueueSemaphore, type Semaphore } from './semaphore.js';
import { ShutdownDrain } from '../shutdown/shutdown-drain.js';
import { GatedLockable, GatedSemaphore } from '../shutdown/gated-lockable.js';
import { shardServiceFor } from '../shards/shard-registry.js';

export type { OnLocked, ForceReleaseOptions, ForcedRelease };
/** Options of {@link LockService.withLock} (the same as every `run`). */
export type WithLockOptions = RunOptions;
/** Who holds a lock right now: the oldest key (same fields as `ElectionService.leader()`). */
export type LockHolder = KeyHolder;
/** A hold of this process, as listed by `LockService.heldLocks()`. */
export type HeldLockInfo = Pick<LockHandle, 'name' | 'key' | 'mode' | 'fencingToken'>;

/** Both sides of one read/write lock. */
export interface ReadWriteLock {
  /** The shared side: readers hold together, after every older writer. */
  readonly read: Lockable<LockHandle>;
  /** The exclusive side: after every older reader and writer. */
  readonly write: Lockable<LockHandle>;
}

/**
 * Distributed mutual exclusion in etcd's own formats: mutexes
 * (`<namespace><name>/<lease hex>`, Go's `concurrency.Mutex`, `etcdctl
 * lock`), read/write locks (Go's `recipes.RWMutex` layout) and counting
 * semaphores, FIFO by create revision, each waiter watching only what
 * concerns it. Every kind has the same verbs ({@link Lockable}); the 0.1
 * methods (`acquire`, `withLock`, `readLock`, ...) remain as shortcuts.
 */
/** How many mutex objects {@link LockService.mutex} keeps for reuse. */
const MUTEX_CACHE_SIZE = 1_024;

@Injectable()
export class LockService implements OnModuleDestroy, BeforeApplicationShutdown {
  private readonly context: LockSpecContext;
  private uniqueSequence = 0;
  private readonly logger = new Logger('Coordination');

  constructor(
    private readonly sessions: SessionService,
    private readonly ops: EtcdOps,
    private readonly engine: QueueEngine,
    @Inject(RESOLVED_COORDINATION_OPTIONS) options: ResolvedCoordinationOptions,
    private readonly drain: ShutdownDrain,
  ) {
    this.context = {
      namespace: options.namespace,
      identity: options.identity,
      nextUnique: () => (this.uniqueSequence++).toString(36),
    };
  }

  private lockable(spec: () => QueueSpec, name: string, kind: string, held: () => string): Lockable<LockHandle> {
    // Validates the name now, not at the first call. Specs are stateless (a hold's unique key suffix
    // is drawn in `key()`), so the object is made once and shared by every call.
    const made = spec();
    return new GatedLockable(new QueueLockable<LockHandle>(this.engine, this.ops, () => made, name, kind, held), this.drain);
  }

  /** Mutexes by name for the shortcuts (`acquire(name)`, ...): stateless, so shared; bounded by clearing. */
  private readonly mutexes = new Map<string, Lockable<LockHandle>>();

  /** The mutex `name`. Cheap to call: the object holds no state. */
  mutex(name: string): Lockable<LockHandle> {
    let mutex = this.mutexes.get(name);
    if (!mutex) {
      mutex = this.lockable(() => mutexSpec(this.context, name), name, 'lock', () => Messages.lockHeld(name));
      // Many one-off names must not grow the map without bound: start over (each entry is cheap to rebuild).
      if (this.mutexes.size >= MUTEX_CACHE_SIZE) this.mutexes.clear();
      this.mutexes.set(name, mutex);
    }
    return mutex;
  }

  /** Both sides of the read/write lock `name`. Cheap to call. */
  readWriteLock(name: string): ReadWriteLock {
    return {
      read: this.lockable(() => readWriteSpec(this.context, name, 'read'), name, 'read lock', () => Messages.lockHeld(name)),
      write: this.lockable(() => readWriteSpec(this.context, name, 'write'), name, 'write lock', () => Messages.lockHeld(name)),
    };
  }

  /**
   * The cluster-wide counting semaphore `name`: at most `permits` (1 to
   * 10000) holders at once across every process, FIFO, with the same handles
   * and errors as the mutex (handle mode `'permit'`). Cheap to call.
   */
  semaphore(name: string, permits: number): Semaphore {
    const made = semaphoreSpec(this.context, name, permits); // validates the name and permits now
    return new GatedSemaphore(new QueueSemaphore(this.engine, this.ops, () => made, name, permits), this.drain);
  }

  /**
   * Waits for the lock in FIFO order. Rejects with LockTimeoutError or
   * LockAbortedError (our waiter key removed), ShutdownError, or an etcd
   * error. Inside a `withLock`/`@WithLock` of the same name it re-enters.
   */
  acquire(name: string, options: AcquireOptions = {}): Promise<LockHandle> {
    // Not `async`: returning the inner promise from an async function costs extra microtask turns
    // on every lock cycle. A bad name still rejects (it does not throw).
    try {
      return this.mutex(name).acquire(options);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** The lock if nobody holds it right now, else `null` at once. */
  async tryAcquire(name: string): Promise<LockHandle | null> {
    return this.mutex(name).tryAcquire();
  }

  /**
   * Runs `fn` while holding the lock and always releases it. The handle (and
   * {@link currentLock}) gives the fencing token and an AbortSignal that
   * aborts if the lock is lost.
   */
  withLock<T>(name: string, fn: (lock: LockHandle) => Promise<T> | T, options?: WithLockOptions & { onLocked?: 'wait' | 'fail' }): Promise<T>;
  withLock<T>(name: string, fn: (lock: LockHandle) => Promise<T> | T, options: WithLockOptions & { onLocked: 'skip' }): Promise<T | undefined>;
  withLock<T>(name: string, fn: (lock: LockHandle) => Promise<T> | T, options?: WithLockOptions): Promise<T | undefined>;
  async withLock<T>(name: string, fn: (lock: LockHandle) => Promise<T> | T, options: WithLockOptions = {}): Promise<T | undefined> {
    return this.mutex(name).run(fn, options);
  }

  /** Who holds the lock now (the oldest key), or `null`. */
  async holder(name: string): Promise<LockHolder | null> {
    return this.mutex(name).holder();
  }

  /** Waits for the shared (read) side of the read/write lock `name`. */
  async readLock(name: string, options: AcquireOptions = {}): Promise<LockHandle> {
    return this.readWriteLock(name).read.acquire(options);
  }

  /** Waits for the exclusive (write) side of the read/write lock `name`. */
  async writeLock(name: string, options: AcquireOptions = {}): Promise<LockHandle> {
    return this.readWriteLock(name).write.acquire(options);
  }

  /** A read hold if no writer holds or waits before us right now, else `null`. */
  async tryReadLock(name: string): Promise<LockHandle | null> {
    return this.readWriteLock(name).read.tryAcquire();
  }

  /** A write hold if nobody holds or waits right now, else `null`. */
  async tryWriteLock(name: string): Promise<LockHandle | null> {
    return this.readWriteLock(name).write.tryAcquire();
  }

  /** Runs `fn` under a read hold (see {@link withLock} for `onLocked`). */
  async withReadLock<T>(name: string, fn: (lock: LockHandle) => Promise<T> | T, options: WithLockOptions = {}): Promise<T | undefined> {
    return this.readWriteLock(name).read.run(fn, options);
  }

  /** Runs `fn` under a write hold (see {@link withLock} for `onLocked`). */
  async withWriteLock<T>(name: string, fn: (lock: LockHandle) => Promise<T> | T, options: WithLockOptions = {}): Promise<T | undefined> {
    return this.readWriteLock(name).write.run(fn, options);
  }

  /** Locks, read/write holds and semaphore permits held by this process right now (not leaderships). */
  heldLocks(): HeldLockInfo[] {
    return this.engine
      .holds()
      .filter((hold) => hold.mode !== 'leader')
      .map(({ name, key, mode, fencingToken }) => ({ name, key, mode: mode as LockHandle['mode'], fencingToken }));
  }

  /**
   * Operator's tool: deletes the current holder's key of the mutex `name`
   * (whoever holds it, in any process, `etcdctl lock` included) so the next
   * waiter gets the lock. The delete compares the key's create revision, so a
   * newer holder is never deleted; pass `{ revision }` to delete only the
   * holder you saw. A read/write lock or semaphore can have several holders:
   * pass `{ key }` naming the one to delete (refused with InvalidUsageError
   * otherwise). Returns what was deleted, or `null` when nothing was (nobody
   * held it, or it changed hands meanwhile). Logs who did it (this
   * instance's identity) at warn.
   *
   * A holder of this library is told first: a force-release marker is written
   * on its key, its watch of held keys sees it, its signal aborts with
   * HoldLostError and it deletes its key itself, so the next waiter cannot act
   * before the holder was told. A holder that does not answer within
   * `graceMs` (default 3000: dead, stopped, a Go or `etcdctl` holder) has its
   * key deleted anyway. Read/write keys are deleted at once (a write would
   * reorder Go peers). Fence what the lock protects all the same.
   */
  async forceRelease(name: string, options: ForceReleaseOptions = {}): Promise<ForcedRelease | null> {
    validateName('lock', name);
    const released = await forceReleaseKey(this.ops, name, namePrefix(this.context.namespace, name), { by: this.context.identity, ...options });
    if (released) {
      this.logger.warn(OperateMessages.forceReleased(this.context.identity, name, released.key, leaseHex(released.leaseId), released.revision, released.identity));
    }
    return released;
  }

  /** Shutdown, step 1: the drain begins (new guarded calls are refused; running ones go on). */
  onModuleDestroy(): void {
    this.drain.begin();
  }

  /**
   * Shutdown, step 2 (the HTTP server still serves): waits for the running
   * guarded runs up to `shutdownTimeout`, then ends every hold (signal
   * first, then the key) before the session is revoked.
   */
  async beforeApplicationShutdown(): Promise<void> {
    await this.drain.settle();
    this.sessions.beginShutdown();
    // Shard groups hand their shards on after their running work, before every hold ends below.
    await shardServiceFor(this)?.leaveForShutdown();
    await this.engine.shutdown();
  }
}
