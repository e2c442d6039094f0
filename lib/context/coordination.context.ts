import { AsyncLocalStorage } from 'node:async_hooks';
import type { LockHandle } from '../lock/lock-handle.js';
import type { CoordinationHold } from '../queue/hold.js';
import type { LeadershipContext } from '../election/leadership.js';

/** What the current async call chain holds (internal store). */
interface CoordinationStore {
  readonly locks: ReadonlyMap<string, CoordinationHold>;
  readonly leadership: ReadonlyMap<string, LeadershipContext>;
}

const storage = new AsyncLocalStorage<CoordinationStore>();
const EMPTY: CoordinationStore = { locks: new Map(), leadership: new Map() };

/** Runs `fn` with `handle` added to the current context (used by withLock and the decorators). */
export function runWithLock<T>(contextKey: string, handle: CoordinationHold, fn: () => T): T {
  const store = storage.getStore() ?? EMPTY;
  const locks = new Map(store.locks);
  locks.set(contextKey, handle);
  return storage.run({ locks, leadership: store.leadership }, fn);
}

/** Runs `fn` with leadership of `election` in the current context (used by @LeaderOnly). */
export function runWithLeadership<T>(election: string, context: LeadershipContext, fn: () => T): T {
  const store = storage.getStore() ?? EMPTY;
  const leadership = new Map(store.leadership);
  leadership.set(election, context);
  return storage.run({ locks: store.locks, leadership }, fn);
}

/** Internal: the handle of `contextKey` held by the current call chain, if still held. */
export function heldInContext(contextKey: string): CoordinationHold | undefined {
  const handle = storage.getStore()?.locks.get(contextKey);
  return handle && !handle.signal.aborted ? handle : undefined;
}

/**
 * The lock held by the current call chain (inside `withLock` or a
 * `@WithLock` method): its fencing token and AbortSignal. With no name, the
 * innermost lock. `undefined` outside any lock.
 */
export function currentLock(name?: string): LockHandle | undefined {
  const store = storage.getStore();
  if (!store) return undefined;
  let last: LockHandle | undefined;
  for (const handle of store.locks.values()) {
    if (handle.mode === 'leader') continue; // leaderships are currentLeadership()'s
    if (name !== undefined && handle.name === name) return handle as LockHandle;
    last = handle as LockHandle;
  }
  return name === undefined ? last : undefined;
}

/**
 * The leadership the current call chain runs under (inside a `@LeaderOnly`
 * method): fencing token and AbortSignal. With no name, the innermost one.
 */
export function currentLeadership(election?: string): LeadershipContext | undefined {
  const store = storage.getStore();
  if (!store) return undefined;
  if (election !== undefined) return store.leadership.get(election);
  let last: LeadershipContext | undefined;
  for (const context of store.leadership.values()) last = context;
  return last;
}
