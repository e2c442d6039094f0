import type { ICompare, IKeyValue, IRequestOp, ITxnRequest, ITxnResponse } from 'etcd3';
import type { Claim, EtcdOps, KeyRange, QueueView } from '../etcd/etcd-ops.js';
import type { EtcdWatches, WatchEnd, WatchEvent, WatchTarget } from '../etcd/watch.js';
import { prefixRangeEnd } from '../etcd/keys.js';
import { InvalidUsageError, ShutdownError } from '../errors/coordination.errors.js';
import { Messages, TestingMessages } from '../coordination.messages.js';
import { inRange, type FakeStore } from './fake-store.js';

/** What the library's queue engine and services ask of `EtcdOps` (internal). */
export type OpsSurface = Pick<EtcdOps, 'txn' | 'oldest' | 'putIfRevision' | 'fencingToken' | 'claimKey' | 'checkOlder' | 'deleteIfRevision' | 'hosts'>;
/** What the library's queue engine and services ask of `EtcdWatches` (internal). */
export type WatchesSurface = Pick<EtcdWatches, 'follow' | 'next' | 'stats'>;

/**
 * The etcd requests of the library's own queue engine and services (claim,
 * check, guarded put/delete, reading the holder or leader, observing an
 * election), answered from the {@link FakeStore}: the real engine runs on it.
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

  get hosts(): readonly string[] {
    return ['(in-memory testing kit)'];
  }

  async claimKey(myKey: Buffer, value: Buffer, leaseId: bigint, range: KeyRange, limit: number): Promise<Claim> {
    this.check();
    const { createRevision, created } = this.store.claim(myKey, value, leaseId);
    if (!created) {
      return { created: false, myRevision: createRevision, headerRevision: this.store.revision, existingValue: this.store.get(myKey)!.value };
    }
    return { created: true, myRevision: createRevision, headerRevision: this.store.revision, ...this.store.older(range, createRevision, limit) };
  }

  async checkOlder(myKey: Buffer, myRevision: bigint, range: KeyRange, limit: number): Promise<QueueView | undefined> {
    this.check();
    if (this.store.get(myKey)?.create_revision !== myRevision.toString()) return undefined;
    return { headerRevision: this.store.revision, ...this.store.older(range, myRevision, limit) };
  }

  async deleteIfRevision(key: Buffer, createRevision: bigint): Promise<boolean> {
    this.check();
    return this.store.deleteIfRevision(key, createRevision);
  }

  private check(): void {
    if (this.shutdown.aborted) throw new ShutdownError(Messages.shuttingDown());
  }

  /**
   * The shapes the library sends: one range on the success path (observe(), the
   * member list), one unconditional delete (removing a key whose claim answer was
   * lost, withdrawing a member record), one unconditional put on a lease (a member
   * record), and a put or delete guarded by "our key has this create revision"
   * (guardedPut/guardedDelete).
   */
  async txn(request: ITxnRequest, what: string): Promise<ITxnResponse> {
    this.check();
    const ops = request.success ?? [];
    const compares = request.compare ?? [];
    const op = ops[0];
    if (ops.length === 1 && (op!.request_put || op!.request_delete_range) && compares.length <= 1) {
      return this.write(compares[0], op!, what);
    }
    if (compares.length > 0 || ops.length !== 1 || !op!.request_range) {
      throw new InvalidUsageError(TestingMessages.unsupportedRequest(what));
    }
    const range = op!.request_range!;
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

  private write(compare: ICompare | undefined, op: IRequestOp, what: string): ITxnResponse {
    const put = op.request_put ? { key: toBuffer(op.request_put.key), value: toBuffer(op.request_put.value ?? Buffer.alloc(0)) } : undefined;
    const del = op.request_delete_range ? toBuffer(op.request_delete_range.key) : undefined;
    let succeeded: boolean;
    if (compare === undefined && put) {
      this.store.put(put.key, put.value, BigInt(op.request_put!.lease ?? 0));
      succeeded = true;
    } else if (compare === undefined) {
      if (!del) throw new InvalidUsageError(TestingMessages.unsupportedRequest(what));
      this.store.deleteIfRevision(del, undefined);
      succeeded = true;
    } else {
      if (compare.target !== 'Create' || compare.result !== 'Equal') throw new InvalidUsageError(TestingMessages.unsupportedRequest(what));
      succeeded = this.store.guarded(toBuffer(compare.key), BigInt(compare.create_revision ?? 0), { put, delete: del });
    }
    return { header: { revision: this.store.revision.toString() }, succeeded, responses: [] } as unknown as ITxnResponse;
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
  /** The same counters as the real watches keep. */
  readonly stats = { opened: 0, wakeups: 0 };

  constructor(private readonly store: FakeStore) {}

  follow(target: WatchTarget, signal: AbortSignal, listener: (event: WatchEvent) => boolean | void): Promise<WatchEnd> {
    if (signal.aborted) return Promise.resolve('aborted');
    const range: KeyRange = target.prefix ? { key: target.key, rangeEnd: prefixRangeEnd(target.key) } : { key: target.key };
    return new Promise<WatchEnd>((resolve) => {
      // 0: from "now", as etcd does for a watch without a start revision.
      const createdAt = this.store.revision;
      let cursor = target.fromRevision === 0n ? createdAt + 1n : target.fromRevision;
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
      if (target.onCreated) queueMicrotask(() => target.onCreated!(createdAt));
      signal.addEventListener('abort', onAbort, { once: true });
      queueMicrotask(deliver);
    });
  }

  /** As {@link EtcdWatches.next}: the first accepted event, or 'failed'; rejects on abort. */
  async next(target: WatchTarget, signal: AbortSignal, accept: (event: WatchEvent) => boolean = () => true): Promise<WatchEvent | 'failed'> {
    if (signal.aborted) throw signal.reason;
    let seen: WatchEvent | undefined;
    const end = await this.follow(target, signal, (event) => {
      if (!accept(event)) return false;
      seen = event;
      return true;
    });
    if (end === 'aborted') throw signal.reason;
    return seen ?? 'failed';
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
