import { Inject, Injectable, type OnModuleDestroy } from '@nestjs/common';
import { RESOLVED_COORDINATION_OPTIONS } from '../coordination.constants.js';
import type { ResolvedCoordinationOptions } from '../coordination.options.js';
import { EtcdOps } from '../etcd/etcd-ops.js';
import { validateName } from '../etcd/keys.js';
import { QueueEngine } from '../queue/queue.engine.js';
import { SessionService } from '../session/session.service.js';
import { LockService } from '../lock/lock.service.js';
import { MembershipService } from '../membership/membership.service.js';
import { InvalidUsageError, ShutdownError } from '../errors/coordination.errors.js';
import { Messages, ShardMessages } from '../coordination.messages.js';
import { ShardGroup } from './shard-group.js';
import { registerShardService, shardServiceFor, type ShardServiceHandle } from './shard-registry.js';

/** Options of {@link ShardService.group}. */
export interface ShardGroupOptions {
  /** How many shards (integer, 1 to 16384; e.g. 64 or 1024). Every member must use the same count. */
  shards: number;
}

/** The largest shard count: the rule scores shards x members pairs on every membership change. */
export const MAX_SHARDS = 16_384;

/** How long shutdown lets running shard work finish before the engine ends every hold (its signal aborts then). */
const SHUTDOWN_DRAIN_MS = 10_000;

/** The ShardService of the application whose LockService is `locks` (internal, for the decorators). */
export function shardServiceOf(locks: LockService): ShardService | undefined {
  return shardServiceFor(locks) as ShardService | undefined;
}

/**
 * Sharded ownership: named groups of N shards spread over the live members
 * (see {@link ShardGroup}). A member owns a shard only while it holds the
 * shard's key on its session lease; shards move only after the previous
 * owner's key is gone.
 */
@Injectable()
export class ShardService implements OnModuleDestroy, ShardServiceHandle {
  private readonly groups = new Map<string, ShardGroup>();
  private leaving?: Promise<void>;

  constructor(
    private readonly sessions: SessionService,
    private readonly ops: EtcdOps,
    private readonly engine: QueueEngine,
    private readonly membership: MembershipService,
    locks: LockService,
    @Inject(RESOLVED_COORDINATION_OPTIONS) private readonly options: ResolvedCoordinationOptions,
  ) {
    registerShardService(locks, this);
  }

  /**
   * The shard group `name` with `shards` shards, opened on first call (this
   * member then takes part in it until shutdown or `close()`); later calls
   * return the same group. Call it early (constructor, `onModuleInit`).
   */
  group(name: string, options: ShardGroupOptions): ShardGroup {
    validateName('shard group', name);
    if (typeof options !== 'object' || options === null) throw new InvalidUsageError(Messages.optionsNotObject('ShardService.group'));
    const { shards } = options;
    if (typeof shards !== 'number' || !Number.isInteger(shards) || shards < 1 || shards > MAX_SHARDS) {
      throw new InvalidUsageError(ShardMessages.invalidShardCount(name, shards, MAX_SHARDS));
    }
    const existing = this.groups.get(name);
    if (existing) {
      if (existing.shards !== shards) throw new InvalidUsageError(ShardMessages.groupRedefined(name, existing.shards, shards));
      return existing;
    }
    if (this.sessions.shutdownSignal.aborted) throw new ShutdownError(Messages.shuttingDown());
    const group = new ShardGroup(name, shards, {
      engine: this.engine,
      ops: this.ops,
      membership: this.membership,
      namespace: this.options.namespace,
      identity: this.options.identity,
      shutdown: this.sessions.shutdownSignal,
    });
    this.groups.set(name, group);
    // A member of a group must be in the member list: the rule assigns shards over it.
    void this.membership.join();
    return group;
  }

  /** The open group `name`, if any. */
  find(name: string): ShardGroup | undefined {
    return this.groups.get(name);
  }

  /** Leaves the group gracefully (drain, release) and forgets it. */
  async close(name: string): Promise<void> {
    const group = this.groups.get(name);
    if (!group) return;
    await group.close();
    this.groups.delete(name);
  }

  /**
   * Graceful leave (called by LockService at shutdown, before the engine
   * ends every hold): our member record goes first, so the other members
   * queue for our shards at once; then every group lets its running work
   * finish (at most 10 s) and releases its shards, which the next owners
   * take within a round trip.
   */
  leaveForShutdown(): Promise<void> {
    this.leaving ??= (async () => {
      // No group: nothing to hand over, and MembershipService withdraws by itself without holding up
      // the other shutdown hooks (a resigning leader's delete would wait behind ours).
      if (this.groups.size === 0) return;
      await this.membership.leave().catch(() => undefined);
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.allSettled([...this.groups.values()].map((group) => group.close())),
        new Promise((resolve) => (timer = setTimeout(resolve, SHUTDOWN_DRAIN_MS))),
      ]);
      clearTimeout(timer);
      this.groups.clear();
    })();
    return this.leaving;
  }

  onModuleDestroy(): Promise<void> {
    return this.leaveForShutdown();
  }
}
