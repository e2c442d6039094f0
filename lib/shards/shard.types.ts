/** Who owns a shard right now, as etcd says (the oldest key of the shard's queue). */
export interface ShardOwner {
  readonly group: string;
  readonly shard: number;
  /** The owner's `identity` option. */
  readonly identity: string;
  /** The owner's member id (its session lease in hex, as in `MembershipService.members()`). */
  readonly memberId: string;
  readonly leaseId: bigint;
  /** The owner's fencing token for this shard. */
  readonly fencingToken: bigint;
  /** The shard's etcd key held by the owner. */
  readonly key: string;
}

/** Counters of one group in this application (benchmarks, dashboards). */
export interface ShardGroupStats {
  /** Shards taken (etcd confirmed our key is the oldest). */
  acquired: number;
  /** Shards handed on gracefully (rebalanced away, or closed). */
  released: number;
  /** Shards lost without a release (session ended, key deleted). */
  lost: number;
}
