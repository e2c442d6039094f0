// @ForEachOwnedShard / @ShardOwned with @nestjs/schedule in both orders, ShardGroup and
// MembershipService in-process (two applications in one process, real etcd), bad input.
import 'reflect-metadata';
import { afterEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Injectable } from '@nestjs/common';
import { Interval, ScheduleModule } from '@nestjs/schedule';
import { firstValueFrom, filter } from 'rxjs';
import { etcdFixture } from './harness/etcd.js';
import {
  ForEachOwnedShard,
  InvalidOptionsError,
  InvalidUsageError,
  MembershipService,
  ModuleNotInitializedError,
  ShardOwned,
  ShardService,
  currentShard,
  shardOfKey,
  type ShardContext,
} from '../lib/index.js';
import { closeApps, createApp, eventually, keysUnder, rawClient, uniqueNamespace } from './support/apps.js';

const SHARDS = 8;

@Injectable()
class TenantJobs {
  runs: Array<{ job: string; shard: number; token: bigint; inContext: boolean }> = [];
  constructor(readonly shards: ShardService) {
    shards.group('tenants', { shards: SHARDS });
  }

  @Interval('each-above', 40) @ForEachOwnedShard('tenants')
  async eachAbove(shard: ShardContext) {
    this.runs.push({ job: 'above', shard: shard.shard, token: shard.fencingToken, inContext: currentShard('tenants') === shard });
  }

  @ForEachOwnedShard('tenants') @Interval('each-below', 40)
  async eachBelow(shard: ShardContext) {
    this.runs.push({ job: 'below', shard: shard.shard, token: shard.fencingToken, inContext: currentShard()?.shard === shard.shard });
  }

  @ShardOwned('tenants', (tenantId: string) => tenantId)
  async handle(tenantId: string) {
    return { tenantId, shard: currentShard('tenants')?.shard, held: currentShard('tenants')?.hold.isHeld() };
  }

  @ShardOwned('tenants', (tenantId: string) => tenantId)
  handleSync(tenantId: string) {
    return `sync ${tenantId}`;
  }

  @ForEachOwnedShard('not-opened')
  async unopened(_shard: ShardContext) {
    throw new Error('must not run');
  }
}

describe('shard decorators and groups in-process (real etcd)', () => {
  const etcd = etcdFixture();
  afterEach(closeApps);

  const app = (ns: string, identity: string, extra: object = {}) =>
    createApp({ hosts: etcd().endpoint, namespace: ns, identity, sessionTtl: 2, imports: [ScheduleModule.forRoot()], providers: [TenantJobs], ...extra });

  it('runs once per owned shard in both decorator orders, guards keyed work, fails closed, hands shards on at close', async () => {
    const ns = uniqueNamespace('shard-deco');
    const one = await app(ns, 'one', { memberValue: { zone: 'a' } });
    const two = await app(ns, 'two');
    const groupOne = one.get(ShardService).find('tenants')!;
    const groupTwo = two.get(ShardService).find('tenants')!;
    await eventually(() => groupOne.ownedShards().size + groupTwo.ownedShards().size === SHARDS && groupOne.ownedShards().size === SHARDS / 2, 20_000, 'shards spread');
    const members = await firstValueFrom(one.get(MembershipService).members$.pipe(filter((list) => list.length === 2)));
    assert.deepEqual(members.map((m) => m.identity), ['one', 'two']);
    assert.deepEqual(members[0]!.value, { zone: 'a' });
    assert.equal(members[1]!.value, null);

    const jobsOne = one.get(TenantJobs);
    const jobsTwo = two.get(TenantJobs);
    jobsOne.runs = [];
    jobsTwo.runs = [];
    await eventually(() => jobsOne.runs.length > 20 && jobsTwo.runs.length > 20, 10_000, 'scheduled runs');
    for (const [jobs, group] of [[jobsOne, groupOne], [jobsTwo, groupTwo]] as const) {
      const owned = group.ownedShards();
      for (const job of ['above', 'below']) {
        const runs = jobs.runs.filter((r) => r.job === job);
        assert.ok(runs.length > 0, `${job} ran`);
        assert.ok(runs.every((r) => owned.has(r.shard) && r.inContext), `${job}: only owned shards, in their context`);
      }
    }

    // Keyed work: exactly one of the two applications runs it.
    const keyed = ['acme', 'globex', 'initech', 'umbrella', 'hooli', 'stark'];
    for (const key of keyed) {
      const shard = shardOfKey('tenants', key, SHARDS);
      const [a, b] = [await jobsOne.handle(key), await jobsTwo.handle(key)];
      assert.equal([a, b].filter((x) => x !== undefined).length, 1, `${key}: one owner runs it`);
      assert.deepEqual(a ?? b, { tenantId: key, shard, held: true });
      assert.equal(groupOne.isOwner(key) ? jobsOne.handleSync(key) : jobsTwo.handleSync(key), `sync ${key}`);
      assert.equal(groupOne.isOwner(key) ? jobsTwo.handleSync(key) : jobsOne.handleSync(key), undefined);
      const owner = await groupTwo.ownerOf(key);
      assert.equal(owner?.identity, groupOne.isOwner(key) ? 'one' : 'two');
    }

    // Fail closed: an unopened group, an instance Nest did not create, bad keys and shards.
    await assert.rejects(jobsOne.unopened({} as ShardContext), InvalidUsageError);
    await assert.rejects(new TenantJobs(one.get(ShardService)).handle('acme'), ModuleNotInitializedError);
    assert.throws(() => groupOne.isOwner(42 as unknown as string), InvalidUsageError);
    assert.throws(() => groupOne.ownsShard(SHARDS), InvalidUsageError);
    assert.throws(() => one.get(ShardService).group('tenants', { shards: 9 }), /already exists with 8 shards/);
    assert.throws(() => one.get(ShardService).group('other', { shards: 0 }), InvalidUsageError);
    assert.throws(() => one.get(ShardService).group('bad/name', { shards: 4 }), /shard group/);
    await assert.rejects(one.get(MembershipService).setValue(10n), InvalidUsageError);

    // Closing one application hands its shards to the other (graceful: no TTL wait).
    const closedAt = Date.now();
    await one.close();
    await eventually(() => groupTwo.ownedShards().size === SHARDS, 10_000, 'all shards on two');
    assert.ok(Date.now() - closedAt < 2_000 + 3_000, 'moved without waiting for the 2 s lease (loose bound)');
    await two.close();
    const client = rawClient(etcd().endpoint);
    try {
      assert.deepEqual(await keysUnder(client, ns), [], 'nothing left in etcd');
    } finally {
      client.close();
    }
  });

  it('refuses a memberValue that is not JSON at bootstrap', async () => {
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    await assert.rejects(createApp({ hosts: etcd().endpoint, namespace: uniqueNamespace('bad-value'), memberValue: cyclic }), InvalidOptionsError);
  });
});
