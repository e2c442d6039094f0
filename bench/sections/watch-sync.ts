// Part of section 2: what a watch that starts at a past revision costs. etcd 3.4 puts a watcher
// whose start revision is not in the future into its "unsynced" group, and catches those up in a
// loop that runs every 100 ms (mvcc/watchable_store.go, syncWatchersLoop). A lock waiter watches
// its predecessor from (claim revision + 1); once any other write has happened since its claim (on
// a busy lock: other waiters' claims), its watch starts unsynced and the predecessor's DELETE can
// wait for the next tick of that loop. Measured here with two raw etcd3 clients, no library code.
import { Etcd3 } from 'etcd3';
import { msBetween, nowNs, sleep } from '../common.js';
import type { BenchContext } from '../context.js';
import { summarize, type Summary } from '../stats.js';

export interface WatchSyncResult {
  method: string;
  /** Watch from (put revision + 1) with no other write since: a synced watcher. DELETE -> event, ms. */
  synced: Summary;
  /** The same after one unrelated write: the watcher starts unsynced. DELETE -> event, ms. */
  unsynced: Summary;
}

export async function watchSync(ctx: BenchContext): Promise<WatchSyncResult> {
  const trials = ctx.quick ? 6 : 25;
  const writer = new Etcd3({ hosts: ctx.etcd.endpoint });
  const watcherClient = new Etcd3({ hosts: ctx.etcd.endpoint });
  const out: Record<'synced' | 'unsynced', number[]> = { synced: [], unsynced: [] };
  try {
    await writer.get('warm').string();
    await watcherClient.get('warm').string();
    for (let i = 0; i < trials * 2; i++) {
      const kind = i % 2 === 0 ? 'synced' : 'unsynced';
      const key = `watch-sync/${kind}-${i}`;
      const put = await writer.put(key).value('x').exec();
      if (kind === 'unsynced') await writer.put('watch-sync/other').value(String(i));
      const watcher = await watcherClient.watch().key(key).startRevision((BigInt(put.header.revision) + 1n).toString()).create();
      const event = new Promise<bigint>((resolve) => watcher.once('delete', () => resolve(nowNs())));
      // A random phase against etcd's 100 ms sync loop.
      await sleep(Math.random() * 5);
      const t0 = nowNs();
      await writer.delete().key(key);
      const at = await Promise.race([event, sleep(5_000).then(() => undefined)]);
      await watcher.cancel();
      if (at === undefined) throw new Error(`no DELETE event for ${key} within 5 s`);
      out[kind].push(msBetween(t0, at));
      await sleep(Math.random() * 100);
    }
  } finally {
    writer.close();
    watcherClient.close();
  }
  return {
    method:
      `${trials} trials each, alternating: put k; [unsynced only: put another key]; watch k from (put revision + 1) on a second ` +
      'client (resolved when etcd confirmed the watch); delete k; time from before the delete to the DELETE event. A random ' +
      'pause of 0-100 ms between trials spreads them over the phase of etcd\'s 100 ms sync loop.',
    synced: summarize(out.synced),
    unsynced: summarize(out.unsynced),
  };
}
