// Reads one consistent snapshot of a namespace: every key (paged, all pages at the revision of
// the first) and the time-to-live of every lease found on them.
import type { Etcd3 } from 'etcd3';
import type { EtcdOps } from '../etcd/etcd-ops.js';
import { toCoordinationError } from '../etcd/etcd-errors.js';
import { prefixRangeEnd } from '../etcd/keys.js';
import type { LeaseInfo, RawKey } from './classify.js';

/** Keys per range request: bounded answers, whatever the namespace holds. */
const PAGE = 1_000;
/** Lease look-ups in flight at once. */
const LEASE_CONCURRENCY = 16;

export interface Snapshot {
  revision: bigint;
  keys: RawKey[];
  leases: Map<bigint, LeaseInfo>;
}

/** The key range of a namespace: the whole key space for `''`. */
export function namespaceRange(namespace: string): { key: Buffer; rangeEnd: Buffer } {
  if (namespace === '') return { key: Buffer.from([0]), rangeEnd: Buffer.from([0]) };
  const key = Buffer.from(namespace, 'utf8');
  return { key, rangeEnd: prefixRangeEnd(key) };
}

/** Every key of the namespace at one revision, in key order. */
export async function readKeys(ops: EtcdOps, namespace: string): Promise<{ revision: bigint; keys: RawKey[] }> {
  const { key, rangeEnd } = namespaceRange(namespace);
  const keys: RawKey[] = [];
  let start = key;
  let revision: bigint | undefined;
  for (;;) {
    const res = await ops.txn(
      {
        compare: [],
        success: [{ request_range: { key: start, range_end: rangeEnd, limit: PAGE, revision: revision?.toString() } }],
        failure: [],
      },
      `read the keys of namespace ${JSON.stringify(namespace)}`,
    );
    revision ??= BigInt(res.header.revision);
    const found = res.responses[0]!.response_range;
    for (const kv of found.kvs) {
      keys.push({
        key: kv.key,
        value: kv.value,
        createRevision: BigInt(kv.create_revision),
        modRevision: BigInt(kv.mod_revision),
        lease: BigInt(kv.lease),
      });
    }
    if (!found.more || found.kvs.length === 0) return { revision, keys };
    // The next page starts right after the last key: its bytes plus a zero byte.
    start = Buffer.concat([found.kvs[found.kvs.length - 1]!.key, Buffer.from([0])]);
  }
}

/** What etcd says about each lease (absent for a lease it could not be asked about). */
export async function readLeases(client: Etcd3, hosts: readonly string[], leaseIds: Iterable<bigint>, timeoutMs: number): Promise<Map<bigint, LeaseInfo>> {
  const pending = [...new Set(leaseIds)].filter((id) => id !== 0n);
  const leases = new Map<bigint, LeaseInfo>();
  let failure: unknown;
  const worker = async () => {
    for (let id = pending.shift(); id !== undefined; id = pending.shift()) {
      try {
        const res = await client.leaseClient.leaseTimeToLive({ ID: id.toString() }, { deadline: new Date(Date.now() + timeoutMs) });
        leases.set(id, { ttlSeconds: Number(res.TTL), grantedTtlSeconds: Number(res.grantedTTL) });
      } catch (err) {
        failure ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(LEASE_CONCURRENCY, pending.length) }, worker));
  // Keys were readable, so a lease failure is a lasting one (permission): say so, do not hide it.
  if (failure !== undefined && leases.size === 0) {
    throw toCoordinationError(failure, { hosts, username: undefined, what: 'read lease time-to-live', timeoutMs });
  }
  return leases;
}

export async function readSnapshot(ops: EtcdOps, client: Etcd3, namespace: string, timeoutMs: number): Promise<Snapshot> {
  const { revision, keys } = await readKeys(ops, namespace);
  const leases = await readLeases(client, ops.hosts, keys.map((k) => k.lease), timeoutMs);
  return { revision, keys, leases };
}
