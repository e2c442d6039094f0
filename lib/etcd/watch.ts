import type { IKeyValue, Watcher } from 'etcd3';
import type { EtcdClientHolder } from './etcd-client.js';
import { checkEtcd3Internals, recoverRefusedWatch } from './etcd3-internals.js';

/** What to watch: one key, or every key under a prefix, from a revision on. */
export interface WatchTarget {
  key: Buffer;
  /** Watch every key starting with `key`. */
  prefix?: boolean;
  /** First revision to report (usually the revision our last read saw, plus one). */
  fromRevision: bigint;
  /** Only DELETE events (etcd filters PUTs server-side). */
  deletesOnly?: boolean;
  /** Ask etcd for the previous key-value of each event. */
  previous?: boolean;
  /**
   * Called once etcd has created the watch (its first 'connected'), with the
   * revision etcd reported then (its current revision; `undefined` if the
   * answer carried none). Lets callers pace watch creation, and lets a watch
   * from "now" know what it may have missed.
   */
  onCreated?: (revision: bigint | undefined) => void;
}

/** One watch event: `previous` only when asked for and etcd still had it. */
export interface WatchEvent {
  type: 'put' | 'delete';
  kv: IKeyValue;
  previous?: IKeyValue;
}

/** How a watch ended: the listener asked to stop, the watch failed (compaction, cancellation, refusal), or the signal aborted. */
export type WatchEnd = 'stopped' | 'failed' | 'aborted';

/**
 * The one owner of every etcd watcher of an application: waits, observe
 * loops and the idle anchor all come through here. It recovers a watch
 * that etcd refused to create (see etcd3-internals.ts), and {@link close}
 * cancels every watcher still open and waits for the cancellations, so a
 * client the user owns is left without any watch of ours.
 */
export class EtcdWatches {
  private readonly active = new Set<Watcher>();
  private readonly pendingCancels = new Set<Promise<unknown>>();
  private anchor?: AbortController;
  private anchorRetry?: NodeJS.Timeout;
  private closed = false;
  private internalsChecked = false;

  constructor(private readonly holder: EtcdClientHolder) {}

  /**
   * Counters for benchmarks, leak checks and metrics: watchers opened so far,
   * and waits woken by an event (one per hand-off when there is no herd).
   */
  readonly stats = { opened: 0, wakeups: 0 };

  /** Watchers currently open (the anchor included). */
  get size(): number {
    return this.active.size;
  }

  /**
   * Calls `listener` for each event until it returns true (`'stopped'`), the
   * watch fails (`'failed'`: compaction, refusal, or, for a watch from a past
   * revision, a lost stream; callers re-read the store and watch again, so a
   * lost wake-up is impossible) or `signal` aborts (`'aborted'`). Never rejects.
   */
  follow(target: WatchTarget, signal: AbortSignal, listener: (event: WatchEvent) => boolean | void): Promise<WatchEnd> {
    if (signal.aborted || this.closed) return Promise.resolve('aborted');
    return new Promise<WatchEnd>((resolve) => {
      let builder = this.holder.client.watch();
      let single = target.prefix ? builder.prefix(target.key) : builder.key(target.key);
      single = single.startRevision(target.fromRevision.toString());
      if (target.deletesOnly) single = single.only('delete');
      if (target.previous) single = single.withPreviousKV();
      const watcher = single.watcher();
      this.active.add(watcher);
      this.stats.opened++;
      this.checkInternalsOnce();
      // Whether etcd has created the watch on the current stream (reset on every reconnect).
      let connected = false;
      let done = false;
      const finish = (end: WatchEnd, cancel: boolean) => {
        if (done) return;
        done = true;
        signal.removeEventListener('abort', onAbort);
        this.dispose(watcher, cancel);
        resolve(end);
      };
      const onAbort = () => finish('aborted', true);
      signal.addEventListener('abort', onAbort, { once: true });
      let created = false;
      watcher.on('connected', (res?: { header?: { revision?: string | number } }) => {
        connected = true;
        if (!created) {
          created = true;
          const revision = res?.header?.revision;
          target.onCreated?.(revision === undefined ? undefined : BigInt(revision));
        }
      });
      watcher.on('disconnected', () => {
        connected = false;
        // etcd3 would resume this watcher from the revision of its create response plus one,
        // and etcd answers a create with its CURRENT revision even when the watch starts in the
        // past and has not caught up yet: the events in between would be skipped (Go's client
        // resumes from the last event instead). So a watch from a past revision ends here as
        // 'failed' and its caller re-reads, as after a compaction.
        if (target.fromRevision > 0n) finish('failed', true);
      });
      const deliver = (type: WatchEvent['type']) => (kv: IKeyValue, previous?: IKeyValue) => {
        if (done) return;
        if (listener({ type, kv, previous }) === true) finish('stopped', true);
      };
      watcher.on('put', deliver('put'));
      watcher.on('delete', deliver('delete'));
      watcher.on('error', (err: Error) => {
        if (!connected) recoverRefusedWatch(this.holder.client, err);
        // After 'error' etcd3 has already dropped the watcher, and cancel() would wait forever.
        finish('failed', false);
      });
    });
  }

  /**
   * Resolves with the first event that `accept` takes (default: any), or
   * `'failed'` when the watch fails; rejects with `signal.reason` on abort.
   */
  async next(target: WatchTarget, signal: AbortSignal, accept: (event: WatchEvent) => boolean = () => true): Promise<WatchEvent | 'failed'> {
    if (signal.aborted) throw signal.reason;
    let seen: WatchEvent | undefined;
    const end = await this.follow(target, signal, (event) => {
      if (!accept(event)) return false;
      seen = event;
      this.stats.wakeups++;
      return true;
    });
    if (end === 'aborted') throw signal.reason;
    return seen ?? 'failed';
  }

  /**
   * etcd3 1.1.x tears down its whole gRPC connection when the client's last
   * watcher is cancelled (failing every request in flight), and a waiter
   * cancels its only watcher at every hand-off. One idle watcher on a key
   * nobody writes, kept for the application's lifetime, keeps the stream up.
   * It lives inside the namespace so a role limited to the namespace may watch it.
   */
  openAnchor(namespace: string): void {
    if (this.closed || this.anchor) return;
    const key = Buffer.from(`${namespace}\u0000nest-etcd-coordination-watch-anchor`);
    const anchor = new AbortController();
    this.anchor = anchor;
    void this.follow({ key, fromRevision: 0n }, anchor.signal, () => false).then((end) => {
      if (this.anchor !== anchor) return;
      this.anchor = undefined;
      if (end !== 'failed' || this.closed) return;
      // etcd3 drops a watcher after 'error'; open a new one a little later.
      this.anchorRetry = setTimeout(() => this.openAnchor(namespace), 1_000);
      this.anchorRetry.unref();
    });
  }

  /** Cancels every open watcher (anchor included) and waits, bounded, for the cancellations. */
  async close(timeoutMs: number): Promise<void> {
    this.closed = true;
    clearTimeout(this.anchorRetry);
    this.anchor?.abort();
    this.anchor = undefined;
    for (const watcher of [...this.active]) this.dispose(watcher, true);
    if (this.pendingCancels.size === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled([...this.pendingCancels]),
      new Promise((resolve) => {
        timer = setTimeout(resolve, timeoutMs);
      }),
    ]);
    clearTimeout(timer);
  }

  private dispose(watcher: Watcher, cancel: boolean): void {
    if (!this.active.delete(watcher)) return;
    watcher.removeAllListeners();
    // Swallow late errors from a watcher we are tearing down.
    watcher.on('error', () => undefined);
    if (!cancel) return;
    const cancelled = watcher.cancel().catch(() => undefined);
    this.pendingCancels.add(cancelled);
    void cancelled.finally(() => this.pendingCancels.delete(cancelled));
  }

  private checkInternalsOnce(): void {
    if (this.internalsChecked) return;
    this.internalsChecked = true;
    checkEtcd3Internals(this.holder.client);
  }
}
