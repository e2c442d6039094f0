import { Inject, Injectable } from '@nestjs/common';
import { Range } from 'etcd3';
import { Interval } from '@nestjs/schedule';
import { ForEachOwnedShard, ShardService, type ShardContext, type ShardGroup } from '../coordination.js';
import { SampleEtcd } from '../etcd/sample-etcd.js';
import { SAMPLE_CONFIG, type SampleConfig } from '../sample.config.js';
import { simulateWork } from '../jobs/work.js';
import { TENANT_GROUP, TENANT_SHARDS, TENANT_WORK_MS, tenantKeys, type TenantRun } from './tenant.keys.js';

const RETENTION_MS = 10 * 60_000;

/**
 * A per-tenant job spread over every instance: the tenants hash onto 16
 * shards, each instance runs the job for the shards it owns. Each run is
 * recorded in etcd (start and end) with a write guarded by the shard's hold,
 * so the demo can check from etcd alone that no shard ever ran on two
 * instances at once.
 */
@Injectable()
export class TenantJobs {
  readonly group: ShardGroup;
  private readonly keys;
  runs = 0;

  constructor(
    shards: ShardService,
    private readonly etcd: SampleEtcd,
    @Inject(SAMPLE_CONFIG) private readonly config: SampleConfig,
  ) {
    this.group = shards.group(TENANT_GROUP, { shards: TENANT_SHARDS });
    this.keys = tenantKeys(config.namespace);
  }

  /** Every second, once per owned shard. */
  @Interval('tenant-sync', 1_000)
  @ForEachOwnedShard(TENANT_GROUP)
  async syncTenants(shard: ShardContext): Promise<void> {
    const run: TenantRun = { instance: this.config.instanceId, shard: shard.shard, fencingToken: shard.fencingToken.toString(), startedAt: Date.now() };
    const key = this.keys.run(run.startedAt, run.shard, run.instance);
    // Guarded by the shard's key: refused (HoldLostError) if the shard is no longer ours.
    await shard.hold.guardedPut(key, JSON.stringify(run));
    await simulateWork(TENANT_WORK_MS, shard.signal);
    shard.hold.throwIfLost();
    await shard.hold.guardedPut(key, JSON.stringify({ ...run, endedAt: Date.now() }));
    this.runs++;
  }

  /** Drops tenant-run records older than 10 minutes (every instance; idempotent). */
  @Interval('tenant-trim', 60_000)
  async trim(): Promise<void> {
    await this.etcd.client.delete().range(new Range(this.keys.runsPrefix, this.keys.runsBefore(Date.now() - RETENTION_MS))).catch(() => undefined);
  }
}
