import type { IKeyValue } from 'etcd3';
import type { EtcdOps } from '../etcd/etcd-ops.js';
import { prefixRangeEnd } from '../etcd/keys.js';
import { runWithLock } from '../context/coordination.context.js';
import { InvalidUsageError, LockHeldError } from '../errors/coordination.errors.js';
import { Messages } from '../coordination.messages.js';
import type { CoordinationHold, Hold } from './hold.js';
import type { QueueEngine } from './queue.engine.js';
import type { AcquireOptions, QueueSpec } from './queue-spec.js';

/** What to do in `run`/`withLock` when the hold is taken by someone else. */
export type OnLocked = 'wait' | 'skip' | 'fail';

/** Options of {@link Lockable.run} (and `withLock`, `withPermit`, ...). */
export interface RunOptions extends AcquireOptions {
  /** `wait` (default) queues; `skip` resolves `undefined` without running; `fail` rejects with LockHeldError. */
  onLocked?: OnLocked;
}

/**
 * The oldest key of a lock, semaphore or election: its holder, or its
 * leader. `holder()` and `leader()` both describe it with these fields.
 */
export interface KeyHolder {
  /** The holder's identity (the value of its key; empty for holders that store none, such as `etcdctl lock`). */
  identity: string;
  /** The value stored in the key: the identity, or for an election the proclaimed value. Same as `identity`. */
  value: string;
  /** The holder's etcd key. */
  key: string;
  /** The holder's fencing token: its key's create revision. */
  fencingToken: bigint;
  /** The key's create revision (the 0.1 name in `LeaderInfo`): equal to `fencingToken` unless the `fencingEpoch` option is set. */
  revision: bigint;
  /** The holder's session lease id. */
  leaseId: bigint;
}

/**
 * One API shape for every kind: a mutex, either side of a read/write lock,
 * a semaphore and an election all offer these verbs with the same options
 * and results (for an election, `acquire` is the campaign and `release()`
 * the resignation).
 */
export interface Lockable<H extends CoordinationHold> {
  /** The name. */
  readonly name: string;
  /** The kind, as messages name it: "lock", "read lock", "write lock", "semaphore", "election". */
  readonly kind: string;
  /** Waits for the hold in FIFO order (LockTimeoutError, LockAbortedError, ShutdownError, etcd errors). */
  acquire(options?: AcquireOptions): Promise<H>;
  /** The hold if it is free right now (nobody older holds or waits), else `null` at once. */
  tryAcquire(): Promise<H | null>;
  /** Runs `fn` under the hold and always releases it; see {@link RunOptions.onLocked}. */
  run<T>(fn: (hold: H) => Promise<T> | T, options?: RunOptions & { onLocked?: 'wait' | 'fail' }): Promise<T>;
  run<T>(fn: (hold: H) => Promise<T> | T, options: RunOptions & { onLocked: 'skip' }): Promise<T | undefined>;
  run<T>(fn: (hold: H) => Promise<T> | T, options?: RunOptions): Promise<T | undefined>;
  /** The oldest key (holder or leader) right now, or `null`. One etcd read. */
  holder(): Promise<KeyHolder | null>;
}

/** Describes a key as a {@link KeyHolder}. */
export function toKeyHolder(kv: IKeyValue, ops: Pick<EtcdOps, 'fencingToken'>): KeyHolder {
  const value = kv.value.toString('utf8');
  const revision = BigInt(kv.create_revision);
  return { identity: value, value, key: kv.key.toString('utf8'), fencingToken: ops.fencingToken(revision), revision, leaseId: BigInt(kv.lease) };
}

/** The oldest key under `spec.prefix`. */
export async function oldestHolder(ops: EtcdOps, prefix: Buffer, what: string): Promise<KeyHolder | null> {
  const kv = await ops.oldest({ key: prefix, rangeEnd: prefixRangeEnd(prefix) }, what);
  return kv ? toKeyHolder(kv, ops) : null;
}

/** A {@link Lockable} over the queue engine for one spec (mutex, read, write, semaphore) (internal). */
export class QueueLockable<H extends CoordinationHold> implements Lockable<H> {
  constructor(
    private readonly engine: QueueEngine,
    private readonly ops: EtcdOps,
    private readonly spec: () => QueueSpec<Hold>,
    readonly name: string,
    readonly kind: string,
    private readonly heldMessage: () => string,
  ) {}

  acquire(options?: AcquireOptions): Promise<H> {
    return this.engine.acquire(this.spec(), options) as unknown as Promise<H>;
  }

  tryAcquire(): Promise<H | null> {
    return this.engine.tryAcquire(this.spec()) as unknown as Promise<H | null>;
  }

  run<T>(fn: (hold: H) => Promise<T> | T, options?: RunOptions & { onLocked?: 'wait' | 'fail' }): Promise<T>;
  run<T>(fn: (hold: H) => Promise<T> | T, options: RunOptions & { onLocked: 'skip' }): Promise<T | undefined>;
  run<T>(fn: (hold: H) => Promise<T> | T, options?: RunOptions): Promise<T | undefined>;
  run<T>(fn: (hold: H) => Promise<T> | T, options: RunOptions = {}): Promise<T | undefined> {
    return runHeld<T, H>(
      {
        kind: this.kind,
        name: this.name,
        contextKey: this.engine.scoped(this.spec().contextKey),
        acquire: (opts) => this.acquire(opts),
        tryAcquire: () => this.tryAcquire(),
        heldMessage: this.heldMessage,
      },
      fn,
      options,
    );
  }

  holder(): Promise<KeyHolder | null> {
    return oldestHolder(this.ops, this.spec().prefix, `read holder of ${this.kind} "${this.name}"`);
  }
}

/** How {@link runHeld} gets and scopes a hold of one kind. */
export interface RunTarget<H extends CoordinationHold> {
  kind: string;
  name: string;
  /** The async-context key of the hold (re-entry). */
  contextKey: string;
  acquire(options: AcquireOptions): Promise<H>;
  tryAcquire(): Promise<H | null>;
  /** The LockHeldError message for `onLocked: 'fail'`. */
  heldMessage(): string;
  /** Runs `fn` in extra context of the kind (the election's leadership context). */
  enter?<T>(hold: H, fn: () => T): T;
}

/** Acquire per `onLocked`, run `fn` in the hold's async context, always release. */
export async function runHeld<T, H extends CoordinationHold>(target: RunTarget<H>, fn: (hold: H) => Promise<T> | T, options: RunOptions): Promise<T | undefined> {
  if (typeof fn !== 'function') throw new InvalidUsageError(Messages.runNeedsFunction(target.kind));
  const onLocked = options?.onLocked ?? 'wait';
  let hold: H | null;
  switch (onLocked) {
    case 'wait':
      hold = await target.acquire(options);
      break;
    case 'skip':
    case 'fail':
      hold = await target.tryAcquire();
      if (!hold) {
        if (onLocked === 'skip') return undefined;
        throw new LockHeldError(target.name, target.heldMessage());
      }
      break;
    default:
      throw new InvalidUsageError(Messages.invalidOnLocked(onLocked));
  }
  const held = hold;
  try {
    const run = () => fn(held);
    return await runWithLock(target.contextKey, held, target.enter ? () => target.enter!(held, run) : run);
  } finally {
    await held.release();
  }
}
