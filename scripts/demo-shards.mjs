// The demo's checks of the per-tenant job (sample-app/tenants/), from etcd only:
//   - a sampler reads the tenant shard keys every 200 ms during the demo (owner = oldest key);
//   - at the end, every tenant-run record is read: no shard may have two runs by different
//     instances that overlap in time (a run without an end record lasted at most its work time:
//     its process died or froze, and a frozen owner's run is aborted on resume);
//   - after each failover, every shard was owned again by a live instance.
import path from 'node:path';
import { pathToFileURL } from 'node:url';

export async function startShardSampler(client, namespace, buildDir) {
  const { tenantKeys, TENANT_SHARDS, TENANT_WORK_MS } = await import(pathToFileURL(path.join(buildDir, 'sample-app', 'tenants', 'tenant.keys.js')).href);
  const keys = tenantKeys(namespace);
  const samples = [];
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      try {
        const res = await client.getAll().prefix(keys.shardsPrefix).exec();
        const oldest = new Map();
        for (const kv of res.kvs) {
          const shard = Number(kv.key.toString().slice(keys.shardsPrefix.length).split('/')[0]);
          const rev = BigInt(kv.create_revision);
          const seen = oldest.get(shard);
          if (!seen || rev < seen.rev) oldest.set(shard, { rev, identity: kv.value.toString() });
        }
        samples.push({ at: Date.now(), owners: Array.from({ length: TENANT_SHARDS }, (_, s) => oldest.get(s)?.identity ?? null) });
      } catch {
        // etcd busy: the next sample will do
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
      const records = await client.getAll().prefix(keys.runsPrefix).strings();
      const runs = Object.values(records).map((v) => JSON.parse(v));
      return { samples, runs, shards: TENANT_SHARDS, workMs: TENANT_WORK_MS };
    },
  };
}

export function shardChecks(ctx, data, secs) {
  const checks = [];
  const check = (name, ok, detail) => checks.push({ name, ok, detail });
  const { samples, runs, shards, workMs } = data;
  const byShard = new Map();
  for (const run of runs) {
    const list = byShard.get(run.shard) ?? [];
    list.push({ ...run, end: run.endedAt ?? run.startedAt + workMs });
    byShard.set(run.shard, list);
  }
  const overlaps = [];
  for (const [shard, list] of byShard) {
    list.sort((a, b) => a.startedAt - b.startedAt);
    for (let i = 0; i < list.length; i++) {
      for (let j = i + 1; j < list.length && list[j].startedAt < list[i].end; j++) {
        if (list[j].instance !== list[i].instance) overlaps.push({ shard, a: list[i], b: list[j] });
      }
    }
  }
  const instances = new Set(runs.map((r) => r.instance));
  check(
    'no tenant shard was ever run by two instances at once',
    runs.length > 0 && overlaps.length === 0,
    overlaps.length
      ? overlaps.slice(0, 3).map((o) => `shard ${o.shard}: ${o.a.instance} (token ${o.a.fencingToken}) and ${o.b.instance} (token ${o.b.fencingToken})`).join('; ')
      : `${runs.length} tenant runs over ${byShard.size}/${shards} shards on ${instances.size} instances, none overlapping`,
  );
  // A leadership hand-over moves no shard (its instance stays): only failovers are checked here.
  for (const h of ctx.handovers.filter((handover) => handover.kind !== 'handover')) {
    const back = samples.find((s) => s.at > h.signalAt && s.owners.every((o) => o !== null && o !== h.from));
    check(
      `every tenant shard owned again after ${h.kind} of ${h.from}`,
      back !== undefined,
      back ? `all ${shards} shards held by live instances ${secs(back.at - h.signalAt)} after the signal` : `some shard still without a live owner at the end`,
    );
  }
  return checks;
}
