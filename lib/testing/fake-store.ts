import type { IKeyValue } from 'etcd3';
import type { KeyRange, OlderKey } from '../etcd/etcd-ops.js';
import type { WatchEvent } from '../etcd/watch.js';

/** One key of the in-memory store, as etcd keeps it (internal). */
interface Entry {
  key: Buffer;
  value: Buffer;
  createRevision: bigint;
  modRevision: bigint;
  version: bigint;
  leaseId: bigint;
}

/** A change of the store, with the revision it made (internal). */
interface LoggedEvent extends WatchEvent {
  revision: bigint;
}

/** How many events a watch can replay from (older ones are "compacted"). */
const HISTORY_LIMIT = 10_000;

/** Whether `key` lies in `range` (`[key, rangeEnd)`, or the single key). */
export function inRange(key: Buffer, range: KeyRange): boolean {
  if (!range.rangeEnd) return key.equals(range.key);
  return Buffer.compare(key, range.key) >= 0 && Buffer.compare(key, range.rangeEnd) < 0;
}

function toKeyValue(entry: Entry): IKeyValue {
  return {
    key: entry.key,
    value: entry.value,
    create_revision: entry.createRevision.toString(),
    mod_revision: entry.modRevision.toString(),
    version: entry.version.toString(),
    lease: entry.leaseId.toString(),
  };
}

/**
 * An in-memory stand-in for etcd's key-value store in one process: keys with
 * create and mod revisions and a lease, one revision counter (so fencing
 * tokens strictly grow, as in etcd), an event history that watches replay
 * from a revision, and deletion of every key of a lease when it ends.
 * Changes are announced in a microtask, never in the middle of a write.
 */
export class FakeStore {
  private rev = 1n;
  private readonly entries = new Map<string, Entry>();
  private readonly history: LoggedEvent[] = [];
  private readonly listeners = new Set<() => void>();
  private notifyScheduled = false;

  /** The store's current revision (etcd starts at 1). */
  get revision(): bigint {
    return this.rev;
  }

  /** The oldest revision a watch can still start from. */
  get oldestReplayable(): bigint {
    return this.history[0]?.revision ?? this.rev + 1n;
  }

  get(key: Buffer): IKeyValue | undefined {
    const entry = this.entries.get(key.toString('hex'));
    return entry && toKeyValue(entry);
  }

  /** Puts `key` unless it exists; returns its create revision and whether it was created. */
  claim(key: Buffer, value: Buffer, leaseId: bigint): { createRevision: bigint; created: boolean } {
    const existing = this.entries.get(key.toString('hex'));
    if (existing) return { createRevision: existing.createRevision, created: false };
    const revision = ++this.rev;
    const entry: Entry = { key, value, createRevision: revision, modRevision: revision, version: 1n, leaseId };
    this.entries.set(key.toString('hex'), entry);
    this.log({ type: 'put', kv: toKeyValue(entry), revision });
    return { createRevision: revision, created: true };
  }

  /** Puts `value` into `key` on `leaseId`, creating or replacing it (an unconditional put, e.g. a member record). */
  put(key: Buffer, value: Buffer, leaseId: bigint): void {
    const entry = this.entries.get(key.toString('hex'));
    if (!entry) {
      this.claim(key, value, leaseId);
      return;
    }
    const previous = toKeyValue(entry);
    Object.assign(entry, { value, leaseId, modRevision: ++this.rev, version: entry.version + 1n });
    this.log({ type: 'put', kv: toKeyValue(entry), previous, revision: this.rev });
  }

  /** Puts `value` into `key` if it still has create revision `createRevision`. */
  putIfRevision(key: Buffer, createRevision: bigint, value: Buffer): boolean {
    const entry = this.entries.get(key.toString('hex'));
    if (!entry || entry.createRevision !== createRevision) return false;
    const previous = toKeyValue(entry);
    entry.value = value;
    entry.modRevision = ++this.rev;
    entry.version++;
    this.log({ type: 'put', kv: toKeyValue(entry), previous, revision: this.rev });
    return true;
  }

  /** Deletes `key` if it still has create revision `createRevision` (guarded, like every delete of the library). */
  deleteIfRevision(key: Buffer, createRevision: bigint | undefined): boolean {
    const entry = this.entries.get(key.toString('hex'));
    if (!entry || (createRevision !== undefined && entry.createRevision !== createRevision)) return false;
    this.remove(entry, ++this.rev);
    return true;
  }

  /**
   * A guarded write (`hold.guardedPut/guardedDelete`): applies `put`/`delete` of plain keys only
   * if `guard` still has create revision `createRevision`; returns whether it did.
   */
  guarded(guard: Buffer, createRevision: bigint, op: { put?: { key: Buffer; value: Buffer }; delete?: Buffer }): boolean {
    const owner = this.entries.get(guard.toString('hex'));
    if (!owner || owner.createRevision !== createRevision) return false;
    if (op.put) {
      const existing = this.entries.get(op.put.key.toString('hex'));
      if (existing) this.putIfRevision(op.put.key, existing.createRevision, op.put.value);
      else this.claim(op.put.key, op.put.value, 0n);
    }
    if (op.delete) this.deleteIfRevision(op.delete, undefined);
    return true;
  }

  /** Deletes every key of `leaseId` (a lease that expired or was revoked), in one revision. */
  deleteLease(leaseId: bigint): number {
    const doomed = [...this.entries.values()].filter((entry) => entry.leaseId === leaseId);
    if (doomed.length === 0) return 0;
    const revision = ++this.rev;
    for (const entry of doomed) this.remove(entry, revision);
    return doomed.length;
  }

  private remove(entry: Entry, revision: bigint): void {
    this.entries.delete(entry.key.toString('hex'));
    const previous = toKeyValue(entry);
    const kv: IKeyValue = { ...previous, value: Buffer.alloc(0), mod_revision: revision.toString(), version: '0', create_revision: '0', lease: '0' };
    this.log({ type: 'delete', kv, previous, revision });
  }

  /** Keys of `range`, oldest first. */
  range(range: KeyRange): IKeyValue[] {
    return [...this.entries.values()]
      .filter((entry) => inRange(entry.key, range))
      .sort((a, b) => (a.createRevision < b.createRevision ? -1 : 1))
      .map(toKeyValue);
  }

  /** The keys of `range` older than `myRevision`, newest first, at most `limit`; `more` if others exist. */
  older(range: KeyRange, myRevision: bigint, limit: number): { older: OlderKey[]; more: boolean } {
    const all = [...this.entries.values()]
      .filter((entry) => entry.createRevision < myRevision && inRange(entry.key, range))
      .sort((a, b) => (a.createRevision > b.createRevision ? -1 : 1))
      .map((entry) => ({ key: entry.key, createRevision: entry.createRevision }));
    return { older: all.slice(0, limit), more: all.length > limit };
  }

  /** Events with a revision of at least `fromRevision`, in order. */
  eventsSince(fromRevision: bigint): readonly LoggedEvent[] {
    const first = this.history.findIndex((event) => event.revision >= fromRevision);
    return first < 0 ? [] : this.history.slice(first);
  }

  /** Calls `listener` (in a microtask) after every change until the returned function is called. */
  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Resolves after the next change, or rejects with `signal.reason`. */
  nextChange(signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.reject(signal.reason);
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        stop();
        reject(signal.reason);
      };
      const stop = this.onChange(() => {
        stop();
        signal.removeEventListener('abort', onAbort);
        resolve();
      });
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  private log(event: LoggedEvent): void {
    this.history.push(event);
    if (this.history.length > HISTORY_LIMIT) this.history.splice(0, this.history.length - HISTORY_LIMIT);
    if (this.notifyScheduled) return;
    this.notifyScheduled = true;
    queueMicrotask(() => {
      this.notifyScheduled = false;
      for (const listener of [...this.listeners]) listener();
    });
  }

  /** How many change listeners are registered (for leak checks). */
  get listenerCount(): number {
    return this.listeners.size;
  }
}
