import { setImmediate as setImmediatePromise } from 'node:timers/promises';
import { Observable } from 'rxjs';
import type { EtcdOps } from '../etcd/etcd-ops.js';
import type { EtcdWatches } from '../etcd/watch.js';
import { prefixRangeEnd } from '../etcd/keys.js';
import { toKeyHolder } from '../queue/lockable.js';
import { backoffDelay, operationSignal, sleep } from '../util/abort.js';
import { sameLeader, type LeaderInfo } from './leadership.js';

/**
 * The leader of one election (Go's `Election.Observe`): the current one (or
 * null) first, then every change, proclamations included. One read of the
 * oldest candidate, then one prefix watch from that revision: a PUT of the
 * leader's key is a proclamation, a PUT into an empty election is the new
 * leader, the leader's DELETE means re-read. Keeps watching through etcd
 * outages (with backoff); completes when `stop` aborts.
 */
export function observeLeader(ops: EtcdOps, watches: EtcdWatches, prefix: Buffer, name: string, stop: AbortSignal): Observable<LeaderInfo | null> {
  return new Observable<LeaderInfo | null>((subscriber) => {
    const unsubscribed = new AbortController();
    const op = operationSignal({ others: [stop, unsubscribed.signal] });
    let current: LeaderInfo | null | undefined;
    const publish = (leader: LeaderInfo | null) => {
      if (current !== undefined && sameLeader(current, leader)) return;
      current = leader;
      subscriber.next(leader);
    };
    const loop = async () => {
      const range = { key: prefix, rangeEnd: prefixRangeEnd(prefix) };
      for (let failures = 0; !op.signal.aborted; ) {
        let fromRevision: bigint;
        try {
          const res = await ops.txn(
            { success: [{ request_range: { key: range.key, range_end: range.rangeEnd, sort_order: 'Ascend', sort_target: 'Create', limit: 1 } }] },
            `observe election "${name}"`,
          );
          const kv = res.responses[0]!.response_range.kvs[0];
          publish(kv ? toKeyHolder(kv, ops) : null);
          fromRevision = BigInt(res.header.revision) + 1n;
          failures = 0;
        } catch {
          await sleep(backoffDelay(failures++, 200, 5_000), op.signal).catch(() => undefined);
          continue;
        }
        const end = await watches.follow({ key: prefix, prefix: true, fromRevision }, op.signal, ({ type, kv }) => {
          const leader = current ?? null;
          const key = kv.key.toString('utf8');
          if (type === 'delete') return key === leader?.key; // the leader left: re-read
          // The first candidate after an empty election leads; a PUT of the leader's key is a proclamation.
          if (leader === null || key === leader.key) publish(toKeyHolder(kv, ops));
          return false;
        });
        if (end === 'failed') await sleep(200, op.signal).catch(() => undefined);
        // The leader left. If this application's own campaign is next, the same DELETE is on its
        // way to it on this stream: let it take the turn before this re-read (measured: it came
        // about 2 ms later otherwise, on the failover's critical path). One macrotask, no timer.
        else if (end === 'stopped') await setImmediatePromise();
      }
    };
    void loop().then(
      () => subscriber.complete(),
      (err) => subscriber.error(err),
    );
    return () => {
      unsubscribed.abort();
      op.dispose();
    };
  });
}
