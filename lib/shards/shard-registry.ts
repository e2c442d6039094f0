import type { LockService } from '../lock/lock.service.js';

/** What LockService and the decorators need of an application's ShardService (internal). */
export interface ShardServiceHandle {
  /** Graceful leave at shutdown: withdraw from membership, drain, release every shard. */
  leaveForShutdown(): Promise<void>;
}

/**
 * The ShardService of each application, keyed by its LockService: the
 * decorator runtime already resolves the LockService of a call, and
 * LockService's shutdown lets the groups hand their shards on (after their
 * running work) before the engine ends every hold. A separate file without
 * runtime imports, so lock.service.ts and shard.service.ts do not import each other.
 */
const registry = new WeakMap<LockService, ShardServiceHandle>();

export function registerShardService(locks: LockService, service: ShardServiceHandle): void {
  registry.set(locks, service);
}

export function shardServiceFor(locks: LockService): ShardServiceHandle | undefined {
  return registry.get(locks);
}
