import type { IKeyValue, IRangeRequest, IRangeResponse, ITxnRequest, ITxnResponse } from 'etcd3';
import { HistoryGuard } from './history-guard.js';
import { toCoordinationError } from './etcd-errors.js';
import type { EtcdClientHolder } from './etcd-client.js';
import { ShutdownError } from '../errors/coordination.errors.js';
import { Messages } from '../coordination.messages.js';
import { Instrumentation } from '../observability/instrumentation.js';

/** A key range `[key, rangeEnd)`, or a single key when rangeEnd is absent. */
export interface KeyRange {
  key: Buffer;
  rangeEnd?: Buffer;
}

/** A key older than ours in the range a turn policy reads. */
export interface OlderKey {
  key: Buffer;
  createRevision: bigint;
}

/** What a claim or a check saw: the keys older than ours (newest first), at most the limit asked for. */
export interface QueueView {
  older: OlderKey[];
  /** More older keys exist beyond `older`. */
  more: boolean;
  /** Revision of the store when it was read: watch from the next one. */
  headerRevision: bigint;
}

/** Result of {@link EtcdOps.claimKey}. */
export type Claim =
  | ({ created: true; myRevision: bigint } & QueueView)
  /** Our key already existed on our lease (a retried claim): its standing must be checked. */
  | { created: false; myRevision: bigint; headerRevision: bigint; existingValue: Buffer };

/** Fencing tokens carry the epoch above bit 48: revisions stay far below 2^48, tokens below 2^63. */
export const FENCING_EPOCH_SHIFT = 48n;
export const MAX_FENCING_EPOCH = 32_767;

const toBig = (value: string | number | undefined): bigint => BigInt(value ?? 0);
const toOlderKey = (kv: IKeyValue): OlderKey => ({ key: kv.key, createRevision: toBig(kv.create_revision) });

/**
 * The etcd requests of the recipes (mutex, election, read/write lock,
 * semaphore), each with a deadline and typed errors. Every request is a single
 * round trip and idempotent, so a transport-level retry cannot do harm.
 */
export class EtcdOps {
  private readonly epochBase: bigint;

  constructor(
    private readonly holder: EtcdClientHolder,
    private readonly requestTimeoutMs: number,
    private readonly history: HistoryGuard = new HistoryGuard(),
    fencingEpoch = 0,
    readonly instrumentation: Instrumentation = Instrumentation.plain(),
  ) {
    this.epochBase = BigInt(fencingEpoch) << FENCING_EPOCH_SHIFT;
  }

  /** The etcd endpoints, for messages. */
  get hosts(): readonly string[] {
    return this.holder.hosts;
  }

  /**
   * The fencing token of a key created at `createRevision`: the revision,
   * plus the `fencingEpoch` option in the high bits, so tokens keep growing
   * across a loss of etcd's history when operators raise the epoch.
   */
  fencingToken(createRevision: bigint): bigint {
    return this.epochBase + createRevision;
  }

  private callOptions() {
    return { deadline: new Date(Date.now() + this.requestTimeoutMs) };
  }

  private mapError(err: unknown, what: string, operation: 'txn' | 'range' = 'txn'): Error {
    // After shutdown etcd3 reports a closed client as "unavailable": say what really happened.
    if (this.holder.closed) return new ShutdownError(Messages.shuttingDown());
    this.instrumentation.etcdError(operation, err);
    return toCoordinationError(err, {
      hosts: this.holder.hosts,
      username: this.holder.username,
      what,
      timeoutMs: this.requestTimeoutMs,
    });
  }

  async txn(request: ITxnRequest, what: string): Promise<ITxnResponse> {
    if (this.holder.closed) throw new ShutdownError(Messages.shuttingDown());
    const sent = this.history.begin();
    let res: ITxnResponse;
    try {
      res = await this.holder.client.kv.txn(request, this.callOptions());
    } catch (err) {
      throw this.mapError(err, what);
    }
    this.history.observe(res.header, sent, this.holder.hosts);
    return res;
  }

  async range(request: IRangeRequest, what: string): Promise<IKeyValue[]> {
    if (this.holder.closed) throw new ShutdownError(Messages.shuttingDown());
    const sent = this.history.begin();
    let res: IRangeResponse;
    try {
      res = await this.holder.client.kv.range(request, this.callOptions());
    } catch (err) {
      throw this.mapError(err, what, 'range');
    }
    this.history.observe(res.header, sent, this.holder.hosts);
    return res.kvs;
  }

  /**
   * Creates `myKey` on `lease` unless it exists (etcd's
   * `If(CreateRevision(k)==0) Then(Put) Else(Get)`) and, in the same
   * transaction, reads the `limit` newest keys of `range` older than ours, so
   * an uncontended acquire costs one round trip. Idempotent under retry.
   */
  async claimKey(myKey: Buffer, value: Buffer, leaseId: bigint, range: KeyRange, limit: number, what: string): Promise<Claim> {
    const newest: IRangeRequest = {
      key: range.key,
      range_end: range.rangeEnd,
      sort_order: 'Descend',
      sort_target: 'Create',
      // The range runs after the put in the same transaction, so it may include our own key.
      limit: limit + 1,
      keys_only: true,
    };
    const res = await this.txn(
      {
        compare: [{ key: myKey, target: 'Create', result: 'Equal', create_revision: 0 }],
        success: [{ request_put: { key: myKey, value, lease: leaseId.toString() } }, { request_range: newest }],
        failure: [{ request_range: { key: myKey } }],
      },
      what,
    );
    const headerRevision = toBig(res.header.revision);
    if (res.succeeded) {
      const found = res.responses[1]!.response_range;
      const older = found.kvs.filter((kv) => toBig(kv.create_revision) < headerRevision).map(toOlderKey);
      return { created: true, myRevision: headerRevision, headerRevision, older: older.slice(0, limit), more: found.more || older.length > limit };
    }
    const existing = res.responses[0]!.response_range.kvs[0];
    if (!existing) throw new Error(Messages.claimFoundNoKey(what));
    return { created: false, myRevision: toBig(existing.create_revision), headerRevision, existingValue: existing.value };
  }

  /**
   * Atomically checks that our key still exists with our revision (if not,
   * our session expired or someone deleted it: we must not believe we hold
   * anything) and reads the `limit` newest keys of `range` created before us.
   * `undefined` when our key is gone.
   *
   * (A `count_only` range would be cheaper for the semaphore, but etcd 3.4
   * computes the count before applying `max_create_revision`.)
   */
  async checkOlder(myKey: Buffer, myRevision: bigint, range: KeyRange, limit: number, what: string): Promise<QueueView | undefined> {
    const res = await this.txn(
      {
        compare: [{ key: myKey, target: 'Create', result: 'Equal', create_revision: myRevision.toString() }],
        success: [
          {
            request_range: {
              key: range.key,
              range_end: range.rangeEnd,
              max_create_revision: (myRevision - 1n).toString(),
              sort_order: 'Descend',
              sort_target: 'Create',
              limit,
              keys_only: true,
            },
          },
        ],
        failure: [],
      },
      what,
    );
    if (!res.succeeded) return undefined;
    const found = res.responses[0]!.response_range;
    return { older: found.kvs.map(toOlderKey), more: found.more, headerRevision: toBig(res.header.revision) };
  }

  /** Deletes `key` only if it is still the key we created (never a newer holder's). */
  async deleteIfRevision(key: Buffer, createRevision: bigint, what: string): Promise<boolean> {
    const res = await this.txn(
      {
        compare: [{ key, target: 'Create', result: 'Equal', create_revision: createRevision.toString() }],
        success: [{ request_delete_range: { key } }],
        failure: [],
      },
      what,
    );
    return res.succeeded;
  }

  /** Puts `value` on `key` only if it is still the key we created (proclaim, or a wake-up touch). */
  async putIfRevision(key: Buffer, createRevision: bigint, value: Buffer, leaseId: bigint, what: string): Promise<boolean> {
    const res = await this.txn(
      {
        compare: [{ key, target: 'Create', result: 'Equal', create_revision: createRevision.toString() }],
        success: [{ request_put: { key, value, lease: leaseId.toString() } }],
        failure: [],
      },
      what,
    );
    return res.succeeded;
  }

  /** The oldest key of a range (the holder / leader), or undefined. */
  async oldest(range: KeyRange, what: string): Promise<IKeyValue | undefined> {
    const kvs = await this.range(
      { key: range.key, range_end: range.rangeEnd, sort_order: 'Ascend', sort_target: 'Create', limit: 1 },
      what,
    );
    return kvs[0];
  }
}
