// Where the per-tenant job keeps its records (shared by the app, the dashboard and scripts/demo.mjs):
//   <ns>_coordination:members/<lease hex>                 the library's member records
//   <ns>_coordination:shards:tenants:<shard>/<lease hex>  the library's shard keys (oldest = owner)
//   <ns>sample/tenant-runs/<startedAt>-<shard>-<instance> one record per tenant run (JSON, TenantRun)
import { padNumber } from '../sample.keys.js';

/** The shard group of the per-tenant job, and its size. */
export const TENANT_GROUP = 'tenants';
export const TENANT_SHARDS = 16;
/** How long one tenant run works (a run without an end record lasted at most this long: its process died). */
export const TENANT_WORK_MS = 150;

/** One run of the per-tenant job on one shard. */
export interface TenantRun {
  instance: string;
  shard: number;
  fencingToken: string;
  startedAt: number;
  endedAt?: number;
}

export function tenantKeys(namespace: string) {
  const runs = `${namespace}sample/tenant-runs/`;
  return {
    runsPrefix: runs,
    run: (startedAt: number, shard: number, instance: string) => `${runs}${padNumber(startedAt, 15)}-${padNumber(shard, 5)}-${instance}`,
    runsBefore: (time: number) => `${runs}${padNumber(Math.max(0, Math.floor(time)), 15)}`,
    shardsPrefix: `${namespace}_coordination:shards:${TENANT_GROUP}:`,
    membersPrefix: `${namespace}_coordination:members/`,
  };
}
