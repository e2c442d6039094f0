import type { EtcdOps } from '../etcd/etcd-ops.js';
import type { EtcdWatches, WatchEvent } from '../etcd/watch.js';
import { HoldLostError } from '../errors/coordination.errors.js';
import { Messages } from '../coordination.messages.js';
import { backoffDelay, sleep } from '../util/abort.js';
import type { Hold } from './hold.js';

/**
 * The value `LockService.forceRelease` (and the CLI's `release`) writes on a
 * holder's key, followed by who asked, before deleting it: a holder of this
 * library sees it on its key watch, aborts its signal and deletes its key
 * itself, so the next waiter cannot act before the holder was told.
 */
export const FORCE_RELEASE_MARKER = 'nest-etcd-coordination:force-release:';

/** Why a held key is no longer ours, from one event on it (undefined: still ours). */
export function takenBy(event: WatchEvent, hold: Pick<Hold, 'revision' | 'session' | 'mode' | 'name' | 'key'>, kind: string): HoldLostError | undefined {
  const { name, key } = hold;
  if (event.type === 'delete') return new HoldLostError(name, Messages.heldKeyDeleted(kind, name, key));
  const { kv } = event;
  if (BigInt(kv.create_revision) !== hold.revision || BigInt(kv.lease) !== hold.session.leaseId) {
    return new HoldLostError(name, Messages.heldKeyReplaced(kind, name, key));
  }
  const value = kv.value.toString('utf8');
  if (value.startsWith(FORCE_RELEASE_MARKER)) {
    return new HoldLostError(name, Messages.heldKeyForceReleased(kind, name, value.slice(FORCE_RELEASE_MARKER.length)));
  }
  return undefined;
}

/** How {@link HeldKeyWatches} paces itself (internal; tuned by the benchmarks). */
export interface HeldKeyWatchPacing {
  /**
   * A hold starts watching its key this long after it was acquired. Short
   * holds (a lock cycle of a few ms) then cost no watcher at all: creating
   * and cancelling one doubled the CPU of an uncontended cycle. A deletion in
   * that time is not missed, only seen later: the watch starts from the
   * revision at which the hold was known to exist, so etcd replays it.
   */
  deferMs: number;
  /**
   * At most this many watch creations in flight: 10,000 holds taken at once
   * would otherwise flood the client's one gRPC stream and starve the session
   * keepalive (the bench saw the session lost that way).
   */
  maxCreating: number;
  /**
   * At most this many holds get a watcher of their own; the others share ONE
   * watch of the whole namespace. etcd3 keeps its watchers in an array and
   * attaches them one at a time, so each watcher costs O(watchers) work: with
   * 10,000 the client starved its own keepalives and lost the session. The
   * shared watch costs an event per write in the namespace instead, so it is
   * used only beyond this many holds.
   */
  maxOwnWatchers: number;
}

const DEFAULT_PACING: HeldKeyWatchPacing = { deferMs: 100, maxCreating: 32, maxOwnWatchers: 2_000 };

interface PendingWatch {
  start: (created: () => void) => void;
  signal: AbortSignal;
}

/**
 * Watches every held key of an application (through the one watch helper)
 * for as long as each hold lasts, and calls `lost` the moment anyone else
 * deletes it, moves it off our lease, re-creates it, or asks for a force
 * release: the hold's signal must abort then, not at release or session end.
 * Our own writes of the key (a proclamation) keep its create revision and
 * lease and are ignored. When a watch fails (compaction, a cancelled stream)
 * the key is re-read and watched again from that read; `hold.signal` ends it.
 * Creation is deferred and paced (see {@link HeldKeyWatchPacing}).
 */
export class HeldKeyWatches {
  private readonly queue: PendingWatch[] = [];
  private creating = 0;
  private ownWatchers = 0;
  private readonly shared: SharedHeldKeyWatch;

  constructor(
    private readonly watches: EtcdWatches,
    private readonly ops: EtcdOps,
    namespace = '',
    private readonly pacing: HeldKeyWatchPacing = DEFAULT_PACING,
  ) {
    this.shared = new SharedHeldKeyWatch(watches, ops, Buffer.from(namespace, 'utf8'));
  }

  /** Holds waiting for their deferred watch, in the order they were acquired (so also of their due time). */
  private readonly deferred: Array<{ due: number; hold: Hold; begin: () => void }> = [];
  private deferTimer?: NodeJS.Timeout;

  /** Watches `hold`'s key from `fromRevision` (a revision at which it was ours, plus one). */
  watch(hold: Hold, kind: string, fromRevision: bigint, lost: (reason: HoldLostError) => void): void {
    if (hold.hasEnded) return;
    const begin = () => {
      if (this.ownWatchers >= this.pacing.maxOwnWatchers) return this.shared.add(hold, kind, lost);
      this.ownWatchers++;
      hold.signal.addEventListener('abort', () => this.ownWatchers--, { once: true });
      this.queue.push({ signal: hold.signal, start: (created) => void this.follow(hold, kind, fromRevision, lost, created) });
      this.next();
    };
    // One timer for all deferred holds, not one per hold (with its abort listener): a hold
    // released before it is due costs an array entry, skipped when due.
    this.deferred.push({ due: performance.now() + this.pacing.deferMs, hold, begin });
    if (!this.deferTimer) this.armDeferTimer();
  }

  private armDeferTimer(): void {
    const first = this.deferred[0];
    if (!first) return;
    // Node's timers are the only way to defer by time; unref'd so a hold never keeps the process alive.
    this.deferTimer = setTimeout(() => this.startDue(), Math.max(0, first.due - performance.now()));
    this.deferTimer.unref();
  }

  private startDue(): void {
    this.deferTimer = undefined;
    const now = performance.now();
    let due = 0;
    while (due < this.deferred.length && this.deferred[due]!.due <= now) due++;
    for (const entry of this.deferred.splice(0, due)) if (!entry.hold.hasEnded) entry.begin();
    this.armDeferTimer();
  }

  /** Drops the deferred watches and their timer (shutdown: every hold is ending). */
  close(): void {
    clearTimeout(this.deferTimer);
    this.deferTimer = undefined;
    this.deferred.length = 0;
  }

  /** Starts queued watches while fewer than `maxCreating` creations are in flight. */
  private next(): void {
    while (this.creating < this.pacing.maxCreating && this.queue.length > 0) {
      const pending = this.queue.shift()!;
      if (pending.signal.aborted) continue;
      this.creating++;
      let done = false;
      pending.start(() => {
        if (done) return;
        done = true;
        this.creating--;
        this.next();
      });
    }
  }

  private async follow(hold: Hold, kind: string, fromRevision: bigint, lost: (reason: HoldLostError) => void, created: () => void): Promise<void> {
    const { signal } = hold;
    const what = `watch held ${kind} "${hold.name}"`;
    try {
      let from = fromRevision;
      for (let failures = 0; !signal.aborted; failures++) {
        let reason: HoldLostError | undefined;
        const end = await this.watches.follow({ key: hold.keyBytes, fromRevision: from, onCreated: created }, signal, (event) => {
          reason = takenBy(event, hold, kind);
          return reason !== undefined;
        });
        created(); // also when the watch ended before etcd created it
        if (reason) return lost(reason);
        if (end !== 'failed') return;
        await sleep(backoffDelay(failures, 50, 2_000), signal);
        // Our key, with our create revision, at the revision of this read (none of it is older than it).
        const view = await this.ops.checkOlder(hold.keyBytes, hold.revision, { key: hold.keyBytes }, 1, what);
        if (signal.aborted) return;
        if (!view) return lost(new HoldLostError(hold.name, Messages.heldKeyDeleted(kind, hold.name, hold.key)));
        from = view.headerRevision + 1n;
      }
    } catch {
      // A failed re-read (etcd unreachable) or an abort: the session deadline still bounds the hold.
    } finally {
      created();
    }
  }
}

const READS_IN_FLIGHT = 16;

interface SharedEntry {
  hold: Hold;
  kind: string;
  lost: (reason: HoldLostError) => void;
}

/**
 * One watch of the namespace for the holds beyond `maxOwnWatchers`
 * (internal): events are dispatched by key. A hold that joins after the
 * watch started is read once (its key may have changed before it joined);
 * the watch stops when the last such hold ends.
 */
class SharedHeldKeyWatch {
  private readonly entries = new Map<string, SharedEntry>();
  private controller?: AbortController;
  /** Joining holds' reads, at most READS_IN_FLIGHT at once (a burst of holds must not become a burst of reads). */
  private readonly reads: Array<() => Promise<void>> = [];
  private reading = 0;

  constructor(
    private readonly watches: EtcdWatches,
    private readonly ops: EtcdOps,
    private readonly prefix: Buffer,
  ) {}

  add(hold: Hold, kind: string, lost: (reason: HoldLostError) => void): void {
    const id = hold.keyBytes.toString('hex');
    let ended = false;
    const entry: SharedEntry = { hold, kind, lost: (reason) => {
      if (ended) return;
      ended = true;
      this.remove(id, entry);
      lost(reason);
    } };
    this.entries.set(id, entry);
    hold.signal.addEventListener('abort', () => this.remove(id, entry), { once: true });
    this.ensureRunning();
    // The watch runs from "now": what happened to this key before is what a read shows.
    this.reads.push(async () => {
      if (hold.signal.aborted) return;
      const view = await this.ops.checkOlder(hold.keyBytes, hold.revision, { key: hold.keyBytes }, 1, `watch held ${kind} "${hold.name}"`).catch(
        () => true as const, // etcd unreachable: the session deadline still bounds the hold
      );
      if (!view && !hold.signal.aborted) entry.lost(new HoldLostError(hold.name, Messages.heldKeyDeleted(kind, hold.name, hold.key)));
    });
    this.nextRead();
  }

  private nextRead(): void {
    while (this.reading < READS_IN_FLIGHT && this.reads.length > 0) {
      const read = this.reads.shift()!;
      this.reading++;
      void read().finally(() => {
        this.reading--;
        this.nextRead();
      });
    }
  }

  private remove(id: string, entry: SharedEntry): void {
    if (this.entries.get(id) === entry) this.entries.delete(id);
    if (this.entries.size === 0) {
      this.controller?.abort();
      this.controller = undefined;
    }
  }

  private ensureRunning(): void {
    if (this.controller) return;
    const controller = new AbortController();
    this.controller = controller;
    void (async () => {
      for (let failures = 0; !controller.signal.aborted; failures++) {
        const end = await this.watches.follow({ key: this.prefix, prefix: true, fromRevision: 0n }, controller.signal, (event) => {
          const entry = this.entries.get(event.kv.key.toString('hex'));
          const reason = entry && takenBy(event, entry.hold, entry.kind);
          if (entry && reason) entry.lost(reason);
          return false;
        });
        if (end !== 'failed') return;
        await sleep(backoffDelay(failures, 50, 2_000), controller.signal).catch(() => undefined);
        // Re-read every hold we follow: the watch starts again from "now".
        for (const entry of [...this.entries.values()]) {
          const { hold, kind } = entry;
          const view = await this.ops.checkOlder(hold.keyBytes, hold.revision, { key: hold.keyBytes }, 1, `watch held ${kind} "${hold.name}"`).catch(() => true as const);
          if (!view && !hold.signal.aborted) entry.lost(new HoldLostError(hold.name, Messages.heldKeyDeleted(kind, hold.name, hold.key)));
        }
      }
    })();
  }
}
