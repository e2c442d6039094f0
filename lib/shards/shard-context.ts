import { AsyncLocalStorage } from 'node:async_hooks';
import type { CoordinationHold } from '../queue/hold.js';

/**
 * One owned shard, as guarded code sees it: passed to `@ForEachOwnedShard`
 * methods and `ShardGroup.runInShard` callbacks, and returned by
 * {@link currentShard} inside them.
 */
export interface ShardContext {
  /** The shard group's name. */
  readonly group: string;
  /** The shard number, 0 .. shards-1. */
  readonly shard: number;
  /** The fencing token of our hold of the shard (create revision of its key): pass it to the resources you write. */
  readonly fencingToken: bigint;
  /** Aborts when the shard is lost (session deadline, before etcd could give it to another member) or at shutdown. */
  readonly signal: AbortSignal;
  /** The underlying hold (guardedPut/guardedDelete, ownershipCompare, isHeld, throwIfLost). */
  readonly hold: CoordinationHold;
}

const storage = new AsyncLocalStorage<ReadonlyMap<string, ShardContext>>();

/** Runs `fn` with `context` added to the async context (internal). */
export function runWithShard<T>(context: ShardContext, fn: () => T): T {
  const shards = new Map(storage.getStore());
  shards.set(context.group, context);
  return storage.run(shards, fn);
}

/**
 * The shard the current call chain runs for (inside `@ForEachOwnedShard`,
 * `@ShardOwned` or `ShardGroup.runInShard`): of `group`, or the innermost one.
 * `undefined` outside any.
 */
export function currentShard(group?: string): ShardContext | undefined {
  const store = storage.getStore();
  if (!store) return undefined;
  if (group !== undefined) return store.get(group);
  let last: ShardContext | undefined;
  for (const context of store.values()) last = context;
  return last;
}
