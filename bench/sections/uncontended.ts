// 1. Uncontended acquire + release: LockService vs etcd3's Lock vs two raw writes.
import { Etcd3 } from 'etcd3';
import { LockService } from '../../lib/index.js';
import { createBenchApp, msBetween, nowNs } from '../common.js';
import { startYardstick, type GoPeer } from '../go.js';
import type { BenchContext, References } from '../context.js';
import { ratio, summarize, type Summary } from '../stats.js';

type Variant = 'ours' | 'etcd3Lock' | 'twoWriteBound' | 'rawSameTxns' | 'read' | 'watch' | 'go' | 'rawGoRequests';
/** [whole cycle, first step, second step] in ms. */
type Sample = [number, number, number];

export interface UncontendedResult {
  method: string;
  samplesPerVariant: number;
  ours: { cycle: Summary; acquire: Summary; release: Summary };
  etcd3Lock: { cycle: Summary; acquire: Summary; release: Summary };
  twoWriteBound: { cycle: Summary; put: Summary; delete: Summary };
  /** The library's two transactions (claim, guarded delete) sent raw through etcd3: the protocol's cost without the library's JS. */
  rawSameTxns: { cycle: Summary; claim: Summary; release: Summary };
  reference: { writeRtt: Summary; readRtt: Summary; writeToWatchEvent: Summary };
  /**
   * etcd's own Go concurrency.Mutex (Lock + Unlock: one Txn, one DeleteRange) in a Go process, and the
   * same two requests sent through etcd3 from Node; absent when Go is not available (goSkipped says why).
   */
  go?: { cycle: Summary; lock: Summary; unlock: Summary };
  rawGoRequests?: { cycle: Summary; lock: Summary; unlock: Summary };
  goSkipped?: string;
  goRatios?: { oursOverGoP50: number; rawGoRequestsOverGoP50: number; etcd3LockOverGoP50: number; rawSameTxnsOverGoP50: number };
  ratios: {
    etcd3LockOverOursP50: number;
    etcd3LockOverOursP99: number;
    oursOverBoundP50: number;
    oursOverBoundP99: number;
    /** What the txn shape costs over plain put/delete. */
    rawSameTxnsOverBoundP50: number;
    /** What the library's own code costs over the same requests sent raw. */
    oursOverRawSameTxnsP50: number;
  };
}

export async function uncontended(ctx: BenchContext): Promise<{ result: UncontendedResult; refs: References }> {
  const hosts = ctx.etcd.endpoint;
  const rounds = ctx.quick ? 4 : 40;
  const block = ctx.quick ? 10 : 25;
  const warmup = ctx.quick ? 10 : 50;
  const app = await createBenchApp({ hosts, identity: 'bench-uncontended', namespace: 'u/', election: false });
  const raw = new Etcd3({ hosts });
  const watchClient = new Etcd3({ hosts });
  const lease = raw.lease(60);
  let goPeer: GoPeer | undefined;
  try {
    if (ctx.go.binary) goPeer = await startYardstick(ctx.go.binary, hosts, 'go-uncontended');
    const locks = app.get(LockService);
    const leaseId = await lease.grant();
    const identity = Buffer.from('bench-uncontended');
    const rawPrefix = Buffer.from('u-raw/cycle/');
    const rawEnd = Buffer.from('u-raw/cycle0');
    const rawKey = Buffer.concat([rawPrefix, Buffer.from(BigInt(leaseId).toString(16))]);
    const goPrefix = Buffer.from('u-go-raw/cycle/');
    const goEnd = Buffer.from('u-go-raw/cycle0');
    const goKey = Buffer.concat([goPrefix, Buffer.from(BigInt(leaseId).toString(16))]);
    /** n cycles of Go's Mutex in the Go process, timed there. */
    const goBlock = async (n: number): Promise<Sample[]> => {
      goPeer!.send({ type: 'cycle', name: 'u-go/cycle', n });
      const reply = await goPeer!.waitForMessage('cycles', 60_000 + n * 1_000);
      return reply.samples as Sample[];
    };
    const watcher = await watchClient.watch().key('u-watch/k').only('put').create();
    let onEvent: ((at: bigint) => void) | undefined;
    watcher.on('put', () => {
      const at = nowNs();
      onEvent?.(at);
      onEvent = undefined;
    });

    const run: Record<Variant, () => Promise<Sample>> = {
      ours: async () => {
        const t0 = nowNs();
        const handle = await locks.acquire('cycle');
        const t1 = nowNs();
        await handle.release();
        const t2 = nowNs();
        return [msBetween(t0, t2), msBetween(t0, t1), msBetween(t1, t2)];
      },
      etcd3Lock: async () => {
        const t0 = nowNs();
        const lock = raw.lock('u-etcd3/cycle');
        await lock.acquire();
        const t1 = nowNs();
        await lock.release();
        const t2 = nowNs();
        return [msBetween(t0, t2), msBetween(t0, t1), msBetween(t1, t2)];
      },
      twoWriteBound: async () => {
        const t0 = nowNs();
        await raw.put('u-bound/cycle').value('').lease(leaseId);
        const t1 = nowNs();
        await raw.delete().key('u-bound/cycle');
        const t2 = nowNs();
        return [msBetween(t0, t2), msBetween(t0, t1), msBetween(t1, t2)];
      },
      rawSameTxns: async () => {
        const t0 = nowNs();
        const claim = await raw.kv.txn({
          compare: [{ key: rawKey, target: 'Create', result: 'Equal', create_revision: 0 }],
          success: [
            { request_put: { key: rawKey, value: identity, lease: leaseId } },
            { request_range: { key: rawPrefix, range_end: rawEnd, sort_order: 'Descend', sort_target: 'Create', limit: 3, keys_only: true } },
          ],
          failure: [{ request_range: { key: rawKey } }],
        }, { deadline: new Date(Date.now() + 5_000) });
        const t1 = nowNs();
        await raw.kv.txn({
          compare: [{ key: rawKey, target: 'Create', result: 'Equal', create_revision: claim.header.revision }],
          success: [{ request_delete_range: { key: rawKey } }],
          failure: [],
        }, { deadline: new Date(Date.now() + 5_000) });
        const t2 = nowNs();
        return [msBetween(t0, t2), msBetween(t0, t1), msBetween(t1, t2)];
      },
      read: async () => {
        const t0 = nowNs();
        await raw.get('u-bound/cycle').buffer();
        const ms = msBetween(t0, nowNs());
        return [ms, ms, 0];
      },
      rawGoRequests: async () => {
        // What concurrency.Mutex sends: Txn(If CreateRevision(k)=0 Then Put(k, lease), Get(prefix, first create)
        // Else Get(k), Get(prefix, first create)), then Unlock = Delete(k).
        const t0 = nowNs();
        await raw.kv.txn({
          compare: [{ key: goKey, target: 'Create', result: 'Equal', create_revision: 0 }],
          success: [
            { request_put: { key: goKey, value: Buffer.alloc(0), lease: leaseId } },
            { request_range: { key: goPrefix, range_end: goEnd, sort_order: 'Ascend', sort_target: 'Create', limit: 1 } },
          ],
          failure: [
            { request_range: { key: goKey } },
            { request_range: { key: goPrefix, range_end: goEnd, sort_order: 'Ascend', sort_target: 'Create', limit: 1 } },
          ],
        });
        const t1 = nowNs();
        await raw.kv.deleteRange({ key: goKey });
        const t2 = nowNs();
        return [msBetween(t0, t2), msBetween(t0, t1), msBetween(t1, t2)];
      },
      go: () => Promise.reject(new Error('run in blocks by the Go process')),
      watch: async () => {
        const event = new Promise<bigint>((resolve) => (onEvent = resolve));
        const t0 = nowNs();
        await raw.put('u-watch/k').value(String(t0));
        const t1 = nowNs();
        const at = await event;
        return [msBetween(t0, at), msBetween(t0, t1), 0];
      },
    };
    const variants = (Object.keys(run) as Variant[]).filter((v) => goPeer || (v !== 'go' && v !== 'rawGoRequests'));
    const runBlock = async (v: Variant, n: number): Promise<Sample[]> => {
      if (v === 'go') return goBlock(n);
      const out: Sample[] = [];
      for (let i = 0; i < n; i++) out.push(await run[v]());
      return out;
    };
    for (const v of variants) await runBlock(v, warmup);

    const samples: Record<Variant, Sample[]> = { ours: [], etcd3Lock: [], twoWriteBound: [], rawSameTxns: [], read: [], watch: [], go: [], rawGoRequests: [] };
    for (let r = 0; r < rounds; r++) {
      // Interleave in short blocks, rotating the order, so the machine's drifting load hits all alike.
      for (let k = 0; k < variants.length; k++) {
        const v = variants[(r + k) % variants.length]!;
        samples[v].push(...(await runBlock(v, block)));
      }
    }
    watcher.removeAllListeners();
    await watcher.cancel();

    const col = (v: Variant, i: 0 | 1 | 2) => summarize(samples[v].map((s) => s[i]));
    const ours = { cycle: col('ours', 0), acquire: col('ours', 1), release: col('ours', 2) };
    const etcd3Lock = { cycle: col('etcd3Lock', 0), acquire: col('etcd3Lock', 1), release: col('etcd3Lock', 2) };
    const twoWriteBound = { cycle: col('twoWriteBound', 0), put: col('twoWriteBound', 1), delete: col('twoWriteBound', 2) };
    const rawSameTxns = { cycle: col('rawSameTxns', 0), claim: col('rawSameTxns', 1), release: col('rawSameTxns', 2) };
    const reference = {
      writeRtt: summarize([...samples.twoWriteBound.map((s) => s[1]), ...samples.watch.map((s) => s[1])]),
      readRtt: col('read', 0),
      writeToWatchEvent: col('watch', 0),
    };
    const goPart: Pick<UncontendedResult, 'go' | 'rawGoRequests' | 'goSkipped' | 'goRatios'> = goPeer
      ? (() => {
          const go = { cycle: col('go', 0), lock: col('go', 1), unlock: col('go', 2) };
          const rawGo = { cycle: col('rawGoRequests', 0), lock: col('rawGoRequests', 1), unlock: col('rawGoRequests', 2) };
          return {
            go,
            rawGoRequests: rawGo,
            goRatios: {
              oursOverGoP50: ratio(ours.cycle.p50, go.cycle.p50),
              rawGoRequestsOverGoP50: ratio(rawGo.cycle.p50, go.cycle.p50),
              etcd3LockOverGoP50: ratio(etcd3Lock.cycle.p50, go.cycle.p50),
              rawSameTxnsOverGoP50: ratio(rawSameTxns.cycle.p50, go.cycle.p50),
            },
          };
        })()
      : { goSkipped: ctx.go.unavailable ?? 'Go yardstick not started' };
    const result: UncontendedResult = {
      ...goPart,
      method:
        `${rounds} rounds x ${block} sequential cycles per variant, variants interleaved per round (rotating order), ` +
        `after ${warmup} warm-up cycles each. ours = LockService.acquire(name) + handle.release() (one Nest app, one session); ` +
        "etcd3Lock = client.lock(name).acquire() + release() (etcd3 1.1.2: LeaseGrant + Txn, then LeaseRevoke); " +
        'twoWriteBound = raw etcd3 put(key).lease(existing lease) + delete(key); rawSameTxns = the two transactions LockService ' +
        'sends (claim: compare create_revision=0, put + range of the 2 newest keys; release: compare create_revision, delete) ' +
        'sent with client.kv.txn. go = etcd\'s own Go concurrency.Mutex Lock + Unlock (clientv3 3.4.23, one session) in a Go ' +
        'process, timed there in blocks of the same size; rawGoRequests = the two requests Go\'s Mutex sends (its Txn, then a ' +
        'DeleteRange) sent through etcd3 from Node. Reference: write = a put on a lease, ' +
        'read = linearizable get, writeToWatchEvent = put start -> watch event at a second client.',
      samplesPerVariant: rounds * block,
      ours,
      etcd3Lock,
      twoWriteBound,
      rawSameTxns,
      reference,
      ratios: {
        etcd3LockOverOursP50: ratio(etcd3Lock.cycle.p50, ours.cycle.p50),
        etcd3LockOverOursP99: ratio(etcd3Lock.cycle.p99, ours.cycle.p99),
        oursOverBoundP50: ratio(ours.cycle.p50, twoWriteBound.cycle.p50),
        oursOverBoundP99: ratio(ours.cycle.p99, twoWriteBound.cycle.p99),
        rawSameTxnsOverBoundP50: ratio(rawSameTxns.cycle.p50, twoWriteBound.cycle.p50),
        oursOverRawSameTxnsP50: ratio(ours.cycle.p50, rawSameTxns.cycle.p50),
      },
    };
    const refs: References = {
      writeP50: reference.writeRtt.p50,
      readP50: reference.readRtt.p50,
      writeToWatchEventP50: reference.writeToWatchEvent.p50,
    };
    return { result, refs };
  } finally {
    await lease.revoke().catch(() => undefined);
    await goPeer?.close();
    await app.close();
    raw.close();
    watchClient.close();
  }
}
