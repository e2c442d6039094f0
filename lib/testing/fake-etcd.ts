import type { IKeyValue, ITxnRequest, ITxnResponse } from 'etcd3';
import type { EtcdOps, KeyRange } from '../etcd/etcd-ops.js';
import type { EtcdWatches, WatchEnd, WatchEvent, WatchTarget } from '../etcd/watch.js';
import { prefixRangeEnd } from '../etcd/keys.js';
import { InvalidUsageError, ShutdownError } from '../errors/coordination.errors.js';
import { Messages, TestingMessages } from '../coordination.messages.js';
import { inRange, type FakeStore } from './fake-store.js';

/** What the library's services ask of `EtcdOps` once the queue algorithm is the fake engine's (internal). */
export type OpsSurface = Pick<EtcdOps, 'txn' | 'oldest' | 'putIfRevision' | 'fencingToken'>;
/** What the library's services ask of `EtcdWatches` (internal). */
export type WatchesSurface = Pick<EtcdWatches, 'follow'>;

/**
 * The etcd requests the reused services make (reading the holder or leader,
 * observing an election, proclaiming), answered from the {@link FakeStore}.
 * Fencing tokens are create revisions, as in etcd (no epoch).
 */
export class FakeOps implements OpsSurface {
  constructor(
    private readonly store: FakeStore,
    private readonly shutdown: AbortSignal,
  ) {}

  fencingToken(createRevision: bigint): bigint {
    return createRevision;
  }

  private check(): void {
    if (this.shutdown.aborted) throw new ShutdownError(Messages.shuttingDown());
  }

  /** Only the shape `observe()` sends: one range request on the success path, no compares. */
  async txn(request: ITxnRequest, what: string): Promise<ITxnResponse> {
    this.check();
    const ops = request.success ?? [];
    if ((request.compare?.length ?? 0) > 0 || ops.length !== 1 || !ops[0]!.request_range) {
      throw new InvalidUsageError(TestingMessages.unsupportedRequest(what));
    }
    const range = ops[0]!.request_range;
    const kvs = this.read({ key: toBuffer(range.key), rangeEnd: range.range_end === undefined ? undefined : toBuffer(range.range_end) });
    const limit = Number(range.limit ?? 0);
    const response = {
      header: { revision: this.store.revision.toString() },
      succeeded: true,
      responses: [{ response_range: { kvs: limit > 0 ? kvs.slice(0, limit) : kvs, count: String(kvs.length), more: limit > 0 && kvs.length > limit } }],
    };
    return response as unknown as ITxnResponse;
  }

  async oldest(range: KeyRange): Promise<IKeyValue | undefined> {
    this.check();
    return this.read(range)[0];
  }

  async putIfRevision(key: Buffer, createRevision: bigint, value: Buffer): Promise<boolean> {
    this.check();
    return this.store.putIfRevision(key, createRevision, value);
  }

  private read(range: KeyRange): IKeyValue[] {
    return range.rangeEnd ? this.store.range(range) : [this.store.get(range.key)].filter((kv): kv is IKeyValue => kv !== undefined);
  }
}

function toBuffer(value: unknown): Buffer {
  if (Buffer.isBuffer(value)) return value;
  if (typeof value === 'string') return Buffer.from(value);
  throw new InvalidUsageError(TestingMessages.unsupportedRequest('a key that is not a Buffer'));
}

/**
 * Watches over the {@link FakeStore}: replay from `fromRevision`, then every
 * change, delivered in a microtask. A start revision older than the kept
 * history fails the watch (like a compacted revision), and callers re-read.
 */
export class FakeWatches implements WatchesSurface {
  private readonly active = new Set<() => void>();

  constructor(private readonly store: FakeStore) {}

  follow(target: WatchTarget, signal: AbortSignal, listener: (event: WatchEvent) => boolean | void): Promise<WatchEnd> {
    if (signal.aborted) return Promise.resolve('aborted');
    const range: KeyRange = target.prefix ? { key: target.key, rangeEnd: prefixRangeEnd(target.key) } : { key: target.key };
    return new Promise<WatchEnd>((resolve) => {
      let cursor = target.fromRevision;
      let done = false;
      const finish = (end: WatchEnd) => {
        if (done) return;
        done = true;
        stop();
        this.active.delete(close);
        signal.removeEventListener('abort', onAbort);
        resolve(end);
      };
      const onAbort = () => finish('aborted');
      const close = () => finish('aborted');
      const deliver = () => {
        if (done) return;
        if (cursor < this.store.oldestReplayable && cursor <= this.store.revision) return finish('failed');
        const events = this.store.eventsSince(cursor);
        cursor = this.store.revision + 1n;
        for (const { type, kv, previous } of events) {
          if (target.deletesOnly && type !== 'delete') continue;
          if (!inRange(kv.key, range)) continue;
          if (listener(target.previous ? { type, kv, previous } : { type, kv }) === true) return finish('stopped');
        }
      };
      const stop = this.store.onChange(deliver);
      this.active.add(close);
      signal.addEventListener('abort', onAbort, { once: true });
      queueMicrotask(deliver);
    });
  }

  /** Ends every open watch (shutdown). */
  close(): void {
    for (const close of [...this.active]) close();
  }

  /** Watches currently open (for leak checks). */
  get size(): number {
    return this.active.size;
  }
}
