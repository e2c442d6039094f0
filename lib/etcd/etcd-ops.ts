import { Logger } from '@nestjs/common';
import type { Etcd3, IKeyValue, IRangeRequest, ITxnRequest, ITxnResponse, Watcher } from 'etcd3';
import { redact, toCoordinationError } from './etcd-errors.js';
import type { EtcdClientHolder } from './etcd-client.js';

/** A key range `[key, rangeEnd)`, or a single key when rangeEnd is absent. */
export interface KeyRange {
  key: Buffer;
  rangeEnd?: Buffer;
}

/** A key that stands between us and the lock (an older holder or waiter). */
export interface Blocker {
  key: Buffer;
  createRevision: bigint;
}

/** Result of putting our key: our revision and, when known, the newest older key in the blocking range. */
export interface ClaimResult {
  /** Create revision of our key: the fencing token once we own. */
  myRevision: bigint;
  /** Revision of the store when the claim was read. */
  headerRevision: bigint;
  /** True when the key was created by this call (false: it already existed on our lease). */
  created: boolean;
  /** Value stored in the key before this call, when it already existed. */
  existingValue?: Buffer;
  /** Newest key older than ours in the blocking range; undefined = none; 'unknown' = must be looked up. */
  blocker: Blocker | undefined | 'unknown';
}

/** What {@link EtcdOps.claimKey} saw: the keys older than ours (newest first), or that our key already existed. */
export type RawClaim =
  | { created: true; myRevision: bigint; headerRevision: bigint; older: IKeyValue[]; more: boolean }
  | { created: false; myRevision: bigint; headerRevision: bigint; existingValue: Buffer };

/** Result of re-checking our key and looking for the newest older key. */
export type BlockerCheck =
  | { ownKeyGone: true }
  | { ownKeyGone: false; blocker: Blocker | undefined; headerRevision: bigint };

const toBig = (value: string | number | undefined): bigint => BigInt(value ?? 0);

/** The parts of etcd3 1.1.x's internals that {@link recoverRefusedWatch} uses. */
interface Etcd3WatchInternals {
  watchManager?: { state?: number; stream?: object; handleError?: (err: Error) => void };
  pool?: { authenticator?: { invalidateMetadata?: () => void } };
}
/** etcd3's WatchManager state "Connected". */
const WATCH_STREAM_CONNECTED = 2;
/** Watch streams already reopened by recoverRefusedWatch (one reset per stream). */
const resetWatchStreams = new WeakSet<object>();
/**
 * At most one reset per client this often: a refusal that persists (a role that does not
 * cover the namespace) must not make every retry re-authenticate and reopen the stream.
 */
const MIN_RESET_INTERVAL_MS = 5_000;
const lastWatchReset = new WeakMap<object, number>();
const deferredWatchReset = new WeakSet<object>();
const watchLogger = new Logger('Coordination');

/**
 * Call when etcd refused to *create* a watch of `client` (the watcher failed
 * before it was connected on the current stream). etcd3 1.1.x attaches
 * watchers one at a time and then waits forever for the refused one's create
 * response: every later watch of the client hangs. The usual cause is an auth
 * token etcd no longer accepts (it expired, or etcd restarted and forgot its
 * simple tokens): etcd3 refreshes tokens on unary calls only, and a watch
 * stream keeps the token it was opened with. So: drop the cached token and
 * reopen the stream through etcd3's own reconnect path, which re-authenticates
 * and re-creates every attached watcher from its last revision (no event is
 * lost). Every watcher of the library must call this on such a failure.
 */
export function recoverRefusedWatch(client: Etcd3, err: unknown): void {
  const internals = client as unknown as Etcd3WatchInternals;
  const manager = internals.watchManager;
  const stream = manager?.stream;
  if (!manager || typeof manager.handleError !== 'function' || manager.state !== WATCH_STREAM_CONNECTED || !stream) return;
  if (resetWatchStreams.has(stream)) return;
  const wait = (lastWatchReset.get(manager) ?? -Infinity) + MIN_RESET_INTERVAL_MS - Date.now();
  if (wait > 0) {
    if (!deferredWatchReset.has(manager)) {
      deferredWatchReset.add(manager);
      setTimeout(() => {
        deferredWatchReset.delete(manager);
        recoverRefusedWatch(client, err);
      }, wait).unref();
    }
    return;
  }
  lastWatchReset.set(manager, Date.now());
  resetWatchStreams.add(stream);
  const reason = err instanceof Error ? err.message : String(err);
  watchLogger.warn(`etcd refused to create a watch (${redact(reason)}); re-authenticating and reopening the watch stream`);
  internals.pool?.authenticator?.invalidateMetadata?.();
  manager.handleError(new Error(`watch creation refused: ${redact(reason)}`));
}

/**
 * The etcd requests of the recipes (mutex, election, read/write lock,
 * semaphore), each with a deadline and typed errors. Every request is a single
 * round trip and idempotent, so a transport-level retry cannot do harm.
 */
export class EtcdOps {
  private readonly pendingWatchCancels = new Set<Promise<unknown>>();

  constructor(
    private readonly holder: EtcdClientHolder,
    private readonly requestTimeoutMs: number,
  ) {}

  get client(): Etcd3 {
    return this.holder.client;
  }

  private callOptions() {
    return { deadline: new Date(Date.now() + this.requestTimeoutMs) };
  }

  private mapError(err: unknown, what: string): Error {
    return toCoordinationError(err, {
      hosts: this.holder.hosts,
      username: this.holder.username,
      what,
      timeoutMs: this.requestTimeoutMs,
    });
  }

  async txn(request: ITxnRequest, what: string): Promise<ITxnResponse> {
    try {
      return await this.client.kv.txn(request, this.callOptions());
    } catch (err) {
      throw this.mapError(err, what);
    }
  }

  async range(request: IRangeRequest, what: string): Promise<IKeyValue[]> {
    try {
      return (await this.client.kv.range(request, this.callOptions())).kvs;
    } catch (err) {
      throw this.mapError(err, what);
    }
  }

  /**
   * Creates `myKey` on `lease` unless it exists (etcd's
   * `If(CreateRevision(k)==0) Then(Put) Else(Get)`) and, in the same
   * transaction, reads the `limit` newest keys of `blocking`, so an
   * uncontended acquire costs one round trip. Idempotent under retry.
   */
  async claimKey(myKey: Buffer, value: Buffer, leaseId: bigint, blocking: KeyRange, limit: number, what: string): Promise<RawClaim> {
    const newest: IRangeRequest = {
      key: blocking.key,
      range_end: blocking.rangeEnd,
      sort_order: 'Descend',
      sort_target: 'Create',
      limit,
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
      // The range ran after the put in the same transaction, so it may include our own key.
      const range = res.responses[1]!.response_range;
      const older = range.kvs.filter((kv) => toBig(kv.create_revision) < headerRevision);
      return { created: true, myRevision: headerRevision, headerRevision, older, more: range.more };
    }
    const existing = res.responses[0]!.response_range.kvs[0];
    if (!existing) throw new Error(`etcd transaction for ${what} found no key on the failure path`);
    return { created: false, myRevision: toBig(existing.create_revision), headerRevision, existingValue: existing.value };
  }

  /** {@link claimKey} for the queue locks: the newest older key of `blocking` is our blocker. */
  async claim(myKey: Buffer, value: Buffer, leaseId: bigint, blocking: KeyRange, what: string): Promise<ClaimResult> {
    const raw = await this.claimKey(myKey, value, leaseId, blocking, 2, what);
    if (!raw.created) {
      return { myRevision: raw.myRevision, headerRevision: raw.headerRevision, created: false, existingValue: raw.existingValue, blocker: 'unknown' };
    }
    const older = raw.older[0];
    return {
      myRevision: raw.myRevision,
      headerRevision: raw.headerRevision,
      created: true,
      blocker: older ? { key: older.key, createRevision: toBig(older.create_revision) } : undefined,
    };
  }

  /**
   * Atomically checks that our key still exists with our revision (if not,
   * our session expired: we must not believe we hold anything) and finds the
   * newest key of `blocking` created before us.
   */
  async checkBlocker(myKey: Buffer, myRevision: bigint, blocking: KeyRange, what: string): Promise<BlockerCheck> {
    const res = await this.txn(
      {
        compare: [{ key: myKey, target: 'Create', result: 'Equal', create_revision: myRevision.toString() }],
        success: [
          {
            request_range: {
              key: blocking.key,
              range_end: blocking.rangeEnd,
              max_create_revision: (myRevision - 1n).toString(),
              sort_order: 'Descend',
              sort_target: 'Create',
              limit: 1,
              keys_only: true,
            },
          },
        ],
        failure: [],
      },
      what,
    );
    if (!res.succeeded) return { ownKeyGone: true };
    const kv = res.responses[0]!.response_range.kvs[0];
    return {
      ownKeyGone: false,
      headerRevision: toBig(res.header.revision),
      blocker: kv ? { key: kv.key, createRevision: toBig(kv.create_revision) } : undefined,
    };
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

  /**
   * Resolves when `key` is deleted at a revision after `afterRevision`, or
   * when the watch fails (compaction, cancellation): callers re-check the
   * store in a loop, so a spurious wake-up is harmless and a lost one is not
   * possible. Rejects with `signal.reason` on abort.
   */
  waitForDeletion(key: Buffer, afterRevision: bigint, signal: AbortSignal, events: 'delete' | 'put-or-delete' = 'delete'): Promise<'deleted' | 'changed' | 'watch-error'> {
    if (signal.aborted) return Promise.reject(signal.reason);
    return new Promise((resolve, reject) => {
      let builder = this.client.watch().key(key).startRevision((afterRevision + 1n).toString());
      if (events === 'delete') builder = builder.only('delete');
      const watcher: Watcher = builder.watcher();
      let connected = false;
      const finish = (settle: () => void, cancel = true) => {
        signal.removeEventListener('abort', onAbort);
        watcher.removeAllListeners();
        // Swallow late errors from a watcher we are tearing down.
        watcher.on('error', () => undefined);
        // After 'error' etcd3 has already dropped the watcher, and cancel() would wait forever.
        if (cancel) {
          const cancelled = watcher.cancel().catch(() => undefined);
          this.pendingWatchCancels.add(cancelled);
          void cancelled.finally(() => this.pendingWatchCancels.delete(cancelled));
        }
        settle();
      };
      const onAbort = () => finish(() => reject(signal.reason));
      signal.addEventListener('abort', onAbort, { once: true });
      // Whether etcd has created the watch on the current stream (reset on every reconnect).
      watcher.on('connected', () => (connected = true));
      watcher.on('disconnected', () => (connected = false));
      watcher.on('delete', () => finish(() => resolve('deleted')));
      if (events === 'put-or-delete') watcher.on('put', () => finish(() => resolve('changed')));
      watcher.on('error', (err: Error) => {
        if (!connected) this.recoverWatchStream(err);
        finish(() => resolve('watch-error'), false);
      });
    });
  }

  /** See {@link recoverRefusedWatch}. */
  recoverWatchStream(err: unknown): void {
    recoverRefusedWatch(this.client, err);
  }

  /** Waits (bounded) for watch cancellations still in flight, so shutdown leaves no watch behind. */
  async drainWatches(timeoutMs: number): Promise<void> {
    if (this.pendingWatchCancels.size === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled([...this.pendingWatchCancels]),
      new Promise((r) => { timer = setTimeout(r, timeoutMs); }),
    ]);
    clearTimeout(timer);
  }
}
