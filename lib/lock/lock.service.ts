import { Inject, Injectable, type OnModuleDestroy } from '@nestjs/common';
import { RESOLVED_COORDINATION_OPTIONS } from '../coordination.constants.js';
import type { ResolvedCoordinationOptions } from '../coordination.options.js';
import { EtcdOps } from '../etcd/etcd-ops.js';
import { namePrefix, prefixRangeEnd, validateName } from '../etcd/keys.js';
import { SessionService } from '../session/session.service.js';
import { runWithLock } from '../context/coordination.context.js';
import { InvalidUsageError, LockHeldError } from '../errors/coordination.errors.js';
import { Messages } from '../coordination.messages.js';
import type { LockHandle } from './lock-handle.js';
import { QueueLockEngine, type AcquireOptions, type HeldLockInfo, type QueueLockSpec } from './queue-lock.engine.js';
import { createSemaphore, type Semaphore } from './semaphore.js';

/** What to do in `withLock` when the lock is held by someone else. */
export type OnLocked = 'wait' | 'skip' | 'fail';

/** Options of {@link LockService.withLock}. */
export interface WithLockOptions extends AcquireOptions {
  /** `wait` (default) queues; `skip` resolves `undefined` without running; `fail` rejects with LockHeldError. */
  onLocked?: OnLocked;
}

/** Who holds a lock right now. */
export interface LockHolder {
  /** The holder's identity (its `identity` option); empty for holders that store no value, such as `etcdctl lock`. */
  identity: string;
  /** The holder's etcd key. */
  key: string;
  /** The holder's fencing token (its key's create revision). */
  fencingToken: bigint;
  /** The holder's session lease id. */
  leaseId: bigint;
}

/**
 * Distributed mutual exclusion in etcd's own mutex format: the key
 * `<namespace><name>/<lease hex>`, FIFO by create revision, each waiter
 * watching only its predecessor. `etcdctl lock <namespace><name>` and Go's
 * `concurrency.Mutex` exclude and are excluded by these locks.
 */
@Injectable()
export class LockService implements OnModuleDestroy {
  private readonly engine: QueueLockEngine;

  constructor(
    private readonly sessions: SessionService,
    private readonly ops: EtcdOps,
    @Inject(RESOLVED_COORDINATION_OPTIONS) private readonly options: ResolvedCoordinationOptions,
  ) {
    this.engine = new QueueLockEngine(ops, sessions);
  }

  /** The engine shared with the read/write lock (internal). */
  get queueEngine(): QueueLockEngine {
    return this.engine;
  }

  private mutexSpec(name: string): QueueLockSpec {
    validateName('lock', name);
    const prefix = namePrefix(this.options.namespace, name);
    return {
      kind: 'lock',
      mode: 'exclusive',
      name,
      contextKey: `mutex:${name}`,
      localQueue: true,
      key: (session) => Buffer.concat([prefix, Buffer.from(session.leaseHex)]),
      blocking: { key: prefix, rangeEnd: prefixRangeEnd(prefix) },
      value: Buffer.from(this.options.identity),
    };
  }

  /**
   * Read/write lock in the key layout of etcd's Go `recipes.RWMutex`:
   * `<name>/read/<unique>` and `<name>/write/<unique>` on the session lease.
   * Order is FIFO by arrival: a reader waits only for earlier writers, a
   * writer for every earlier holder, and a reader that arrives after a
   * waiting writer queues behind it, so writers are never starved.
   */
  private rwSpec(name: string, mode: 'read' | 'write'): QueueLockSpec {
    validateName('read/write lock', name);
    const base = `${this.options.namespace}${name}/`;
    const mine = Buffer.from(`${base}${mode}/`);
    const blockingPrefix = Buffer.from(mode === 'read' ? `${base}write/` : base);
    const readKey = `rwread:${name}`;
    const writeKey = `rwwrite:${name}`;
    return {
      kind: mode === 'read' ? 'read lock' : 'write lock',
      mode,
      name,
      contextKey: mode === 'read' ? readKey : writeKey,
      // Each hold has its own key, so contenders in one process queue in etcd directly.
      localQueue: false,
      key: (session) => Buffer.concat([mine, Buffer.from(`${session.leaseHex}-${(this.uniqueSequence++).toString(36)}`)]),
      blocking: { key: blockingPrefix, rangeEnd: prefixRangeEnd(blockingPrefix) },
      value: Buffer.from(this.options.identity),
      reentrantFrom: mode === 'read' ? [writeKey] : [],
      conflictsWith: mode === 'write' ? [readKey] : [],
    };
  }

  private uniqueSequence = 0;

  /**
   * The cluster-wide counting semaphore `name`: at most `permits` holders at
   * once across every process, FIFO, with the same handles and errors as the
   * mutex (handle mode `'permit'`). Keys: `<namespace><name>/<lease hex>-<n>`,
   * one per hold, on the session lease (a crashed holder's permit comes back
   * after the session TTL). Every caller of one name must pass the same
   * `permits` (1 to 10000): etcd does not store it, and a mismatch is not
   * detected. Cheap to call: the object holds no state.
   */
  semaphore(name: string, permits: number): Semaphore {
    return createSemaphore(
      {
        engine: this.engine,
        ops: this.ops,
        namespace: this.options.namespace,
        identity: this.options.identity,
        nextUnique: () => (this.uniqueSequence++).toString(36),
      },
      name,
      permits,
    );
  }

  /** Waits for the shared (read) side of the read/write lock `name`. */
  async readLock(name: string, options: AcquireOptions = {}): Promise<LockHandle> {
    return this.engine.acquire(this.rwSpec(name, 'read'), options);
  }

  /** Waits for the exclusive (write) side of the read/write lock `name`. */
  async writeLock(name: string, options: AcquireOptions = {}): Promise<LockHandle> {
    return this.engine.acquire(this.rwSpec(name, 'write'), options);
  }

  /** A read hold if no writer holds or waits before us right now, else `null`. */
  async tryReadLock(name: string): Promise<LockHandle | null> {
    return this.engine.tryAcquire(this.rwSpec(name, 'read'));
  }

  /** A write hold if nobody holds or waits right now, else `null`. */
  async tryWriteLock(name: string): Promise<LockHandle | null> {
    return this.engine.tryAcquire(this.rwSpec(name, 'write'));
  }

  /** Runs `fn` under a read hold (see {@link withLock} for `onLocked`). */
  async withReadLock<T>(name: string, fn: (lock: LockHandle) => Promise<T> | T, options: WithLockOptions = {}): Promise<T | undefined> {
    return runHeld(this.engine, this.rwSpec(name, 'read'), fn, options);
  }

  /** Runs `fn` under a write hold (see {@link withLock} for `onLocked`). */
  async withWriteLock<T>(name: string, fn: (lock: LockHandle) => Promise<T> | T, options: WithLockOptions = {}): Promise<T | undefined> {
    return runHeld(this.engine, this.rwSpec(name, 'write'), fn, options);
  }

  /**
   * Waits for the lock in FIFO order. Rejects with LockTimeoutError or
   * LockAbortedError (our waiter key removed), ShutdownError, or an etcd
   * error. Inside a `withLock`/`@WithLock` of the same name it re-enters.
   */
  async acquire(name: string, options: AcquireOptions = {}): Promise<LockHandle> {
    return this.engine.acquire(this.mutexSpec(name), options);
  }

  /** The lock if nobody holds it right now, else `null` at once. */
  async tryAcquire(name: string): Promise<LockHandle | null> {
    return this.engine.tryAcquire(this.mutexSpec(name));
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
    const spec = this.mutexSpec(name);
    return runHeld(this.engine, spec, fn, options);
  }

  /** Who holds the lock now, or `null`. */
  async holder(name: string): Promise<LockHolder | null> {
    const spec = this.mutexSpec(name);
    const kv = await this.ops.oldest(spec.blocking, `read holder of lock "${name}"`);
    if (!kv) return null;
    return {
      identity: kv.value.toString('utf8'),
      key: kv.key.toString('utf8'),
      fencingToken: BigInt(kv.create_revision),
      leaseId: BigInt(kv.lease),
    };
  }

  /** Locks, read/write holds and semaphore permits held by this process right now. */
  heldLocks(): HeldLockInfo[] {
    return this.engine.heldLocks();
  }

  async onModuleDestroy(): Promise<void> {
    this.sessions.beginShutdown();
    await this.engine.shutdown();
  }
}

/** Acquire per `onLocked`, run `fn` in the lock's context, always release (shared with rw locks). */
export async function runHeld<T>(
  engine: QueueLockEngine,
  spec: QueueLockSpec,
  fn: (lock: LockHandle) => Promise<T> | T,
  options: WithLockOptions,
): Promise<T | undefined> {
  if (typeof fn !== 'function') throw new InvalidUsageError('withLock needs a function to run under the lock');
  const onLocked = options.onLocked ?? 'wait';
  let handle: LockHandle | null;
  switch (onLocked) {
    case 'wait':
      handle = await engine.acquire(spec, options);
      break;
    case 'skip':
    case 'fail':
      handle = await engine.tryAcquire(spec);
      if (!handle) {
        if (onLocked === 'skip') return undefined;
        throw new LockHeldError(spec.name, Messages.lockHeld(spec.name));
      }
      break;
    default:
      throw new InvalidUsageError(`onLocked must be 'wait', 'skip' or 'fail', got ${JSON.stringify(onLocked)}`);
  }
  try {
    return await runWithLock(engine.scoped(spec.contextKey), handle, () => fn(handle!));
  } finally {
    await handle.release();
  }
}
