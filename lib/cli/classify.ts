// What the keys of a namespace mean: pure functions from a snapshot of etcd (keys, revisions,
// leases) to locks, read/write locks, semaphores, elections, sessions and what cannot be
// classified. No I/O: unit-tested in test/unit/cli-classify.test.ts; rendered by render.ts.
import { FENCING_EPOCH_SHIFT } from '../etcd/etcd-ops.js';
import { leaseHex, RESERVED_NAME_PREFIX } from '../etcd/keys.js';
import { KEY_SHAPES } from '../queue/name-registry.js';

/** One key as etcd returned it. */
export interface RawKey {
  key: Buffer;
  value: Buffer;
  createRevision: bigint;
  modRevision: bigint;
  /** 0n: no lease. */
  lease: bigint;
}

/** What etcd says about one lease (`LeaseTimeToLive`); absent when it could not be asked. */
export interface LeaseInfo {
  /** Seconds left; -1 when etcd says the lease is gone. */
  ttlSeconds: number;
  grantedTtlSeconds: number;
}

/** What the operator told the CLI about names etcd cannot tell apart. */
export interface ClassifyHints {
  /** Names of Go-format keys (`<name>/<lease hex>`) to show as elections. */
  elections?: readonly string[];
  /** Names of Go-format keys to show as mutexes. */
  locks?: readonly string[];
  /** Permits of semaphores (not recorded in etcd: each caller passes its own). */
  permits?: ReadonlyMap<string, number>;
  /** The applications' `fencingEpoch` option (default 0). */
  fencingEpoch?: number;
}

/** One holder or waiter. */
export interface KeyEntry {
  key: string;
  /** The key's value: the holder's identity for locks (empty when not recorded, e.g. `etcdctl lock`), the proclamation for an election. */
  value: string;
  /** The session lease, lowercase hex as in the keys. */
  lease: string;
  /** The create revision: the order in the queue, and "since when" (etcd keeps no wall-clock time). */
  createRevision: bigint;
  modRevision: bigint;
  /** The token the hold would carry: `fencingEpoch × 2^48 + createRevision`. */
  fencingToken: bigint;
  /** Read/write locks: which side. */
  side?: 'read' | 'write';
}

export type QueueKind = 'lock' | 'election' | 'lock or election';

/** A mutex or election (Go's `<name>/<lease hex>`; the two share a format). */
export interface QueueView {
  name: string;
  kind: QueueKind;
  /** The holder, or the leader. */
  holder: KeyEntry;
  /** Waiters or candidates, in the order they will be served. */
  waiters: KeyEntry[];
}

export interface ReadWriteView {
  name: string;
  holders: KeyEntry[];
  heldAs: 'read' | 'write';
  waiters: KeyEntry[];
}

export interface SemaphoreView {
  name: string;
  /** From the `permits` hint; null when not given (etcd does not record it). */
  permits: number | null;
  /** Keys known to hold a permit. */
  holders: KeyEntry[];
  /** Without `permits`: keys that may hold or wait (the count decides). */
  undetermined: KeyEntry[];
  waiters: KeyEntry[];
}

/** Records the library writes for itself (`<namespace>_coordination:<record>/...`), listed, not interpreted. */
export interface LibraryRecordView {
  record: string;
  keys: KeyEntry[];
}

export interface UnclassifiedKey {
  key: string;
  lease: string | null;
  createRevision: bigint;
  reason: string;
}

export interface SessionView {
  lease: string;
  /** null when etcd could not be asked. */
  ttlSeconds: number | null;
  grantedTtlSeconds: number | null;
  /** Identities recorded in this lease's lock, read/write and semaphore keys (election values are proclamations). */
  identities: string[];
  /** How many keys of the namespace are on this lease. */
  keys: number;
}

export interface Inspection {
  namespace: string;
  revision: bigint;
  locks: QueueView[];
  elections: QueueView[];
  readWriteLocks: ReadWriteView[];
  semaphores: SemaphoreView[];
  sessions: SessionView[];
  libraryRecords: LibraryRecordView[];
  unclassified: UnclassifiedKey[];
}

export const REASONS = {
  noName: 'no "<name>/" in the key: not a lock, election or semaphore key',
  noLease: 'not on a lease: holds and candidates always are',
  leaseMismatch: 'its lease hex does not match the lease the key is on',
  unknownShape: 'a key shape the library and etcd\'s recipes do not write',
  mixed: (kinds: readonly string[]) => `keys of several kinds under one name (${kinds.join(', ')}): no holder can be told`,
} as const;

type Shape = 'session' | 'permit' | 'readWrite';

/** The shape of `suffix` (after `<name>/`) for a key on `lease`, or why it has none. */
export function shapeOf(suffix: string, lease: bigint): Shape | { reason: string } {
  const hex = lease === 0n ? '' : leaseHex(lease);
  if (KEY_SHAPES.readWrite.test(suffix)) return lease === 0n ? { reason: REASONS.noLease } : 'readWrite';
  const session = KEY_SHAPES.session.test(suffix);
  const permit = KEY_SHAPES.permit.test(suffix);
  if (!session && !permit) return { reason: REASONS.unknownShape };
  if (lease === 0n) return { reason: REASONS.noLease };
  const keyHex = session ? suffix : suffix.slice(0, suffix.indexOf('-'));
  if (keyHex !== hex) return { reason: REASONS.leaseMismatch };
  return session ? 'session' : 'permit';
}

const byQueueOrder = (a: KeyEntry, b: KeyEntry) =>
  a.createRevision < b.createRevision ? -1 : a.createRevision > b.createRevision ? 1 : a.key < b.key ? -1 : a.key > b.key ? 1 : 0;

function entryOf(raw: RawKey, epoch: bigint): KeyEntry {
  return {
    key: raw.key.toString('utf8'),
    value: raw.value.toString('utf8'),
    lease: leaseHex(raw.lease),
    createRevision: raw.createRevision,
    modRevision: raw.modRevision,
    fencingToken: epoch + raw.createRevision,
  };
}

/**
 * Classifies every key of a namespace. `keys` are full etcd keys (namespace
 * included), `leases` what etcd said about each lease found on them.
 */
export function classify(
  namespace: string,
  revision: bigint,
  keys: readonly RawKey[],
  leases: ReadonlyMap<bigint, LeaseInfo>,
  hints: ClassifyHints = {},
): Inspection {
  const epoch = BigInt(hints.fencingEpoch ?? 0) << FENCING_EPOCH_SHIFT;
  const elections = new Set(hints.elections ?? []);
  const locksHint = new Set(hints.locks ?? []);
  const result: Inspection = {
    namespace, revision, locks: [], elections: [], readWriteLocks: [], semaphores: [], sessions: [], libraryRecords: [], unclassified: [],
  };
  const unclassified = (raw: RawKey, reason: string) =>
    result.unclassified.push({ key: raw.key.toString('utf8'), lease: raw.lease === 0n ? null : leaseHex(raw.lease), createRevision: raw.createRevision, reason });
  const namespaceBytes = Buffer.from(namespace, 'utf8');

  // Group by name (the text between the namespace and the first '/').
  const groups = new Map<string, Array<{ raw: RawKey; suffix: string }>>();
  for (const raw of keys) {
    const rest = raw.key.subarray(namespaceBytes.length).toString('utf8');
    const slash = rest.indexOf('/');
    if (slash <= 0) {
      unclassified(raw, REASONS.noName);
      continue;
    }
    const name = rest.slice(0, slash);
    const group = groups.get(name) ?? [];
    group.push({ raw, suffix: rest.slice(slash + 1) });
    groups.set(name, group);
  }

  const sessionIdentities = new Map<bigint, Set<string>>();
  const noteIdentity = (raw: RawKey) => {
    const value = raw.value.toString('utf8');
    if (value === '') return;
    const set = sessionIdentities.get(raw.lease) ?? new Set<string>();
    set.add(value);
    sessionIdentities.set(raw.lease, set);
  };

  for (const [name, group] of [...groups].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    if (name.startsWith(RESERVED_NAME_PREFIX)) {
      result.libraryRecords.push({ record: name, keys: group.map(({ raw }) => entryOf(raw, epoch)).sort(byQueueOrder) });
      continue;
    }
    const shapes = group.map(({ raw, suffix }) => shapeOf(suffix, raw.lease));
    const bad = shapes.findIndex((shape) => typeof shape !== 'string');
    if (bad >= 0) {
      // One key we cannot read makes the queue order of the whole name unknowable.
      group.forEach(({ raw }, i) => {
        const shape = shapes[i]!;
        unclassified(raw, typeof shape === 'string' ? `under a name with unreadable keys (${group[bad]!.raw.key.toString('utf8')})` : shape.reason);
      });
      continue;
    }
    const kinds = [...new Set(shapes as Shape[])];
    if (kinds.length > 1) {
      const labels = kinds.map((k) => (k === 'session' ? 'lock/election' : k === 'permit' ? 'semaphore' : 'read/write lock'));
      group.forEach(({ raw }) => unclassified(raw, REASONS.mixed(labels)));
      continue;
    }
    const entries = group.map(({ raw, suffix }) => {
      const entry = entryOf(raw, epoch);
      if (kinds[0] === 'readWrite') entry.side = suffix.startsWith('read/') ? 'read' : 'write';
      return entry;
    }).sort(byQueueOrder);
    const kind = kinds[0]!;
    if (kind === 'session') {
      const queueKind: QueueKind = elections.has(name) ? 'election' : locksHint.has(name) ? 'lock' : 'lock or election';
      const view: QueueView = { name, kind: queueKind, holder: entries[0]!, waiters: entries.slice(1) };
      (queueKind === 'election' ? result.elections : result.locks).push(view);
      if (queueKind !== 'election') group.forEach(({ raw }) => noteIdentity(raw));
    } else if (kind === 'readWrite') {
      result.readWriteLocks.push(readWriteView(name, entries));
      group.forEach(({ raw }) => noteIdentity(raw));
    } else {
      result.semaphores.push(semaphoreView(name, entries, hints.permits?.get(name)));
      group.forEach(({ raw }) => noteIdentity(raw));
    }
  }

  const keysPerLease = new Map<bigint, number>();
  for (const raw of keys) if (raw.lease !== 0n) keysPerLease.set(raw.lease, (keysPerLease.get(raw.lease) ?? 0) + 1);
  result.sessions = [...keysPerLease]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([lease, count]) => {
      const info = leases.get(lease);
      return {
        lease: leaseHex(lease),
        ttlSeconds: info ? info.ttlSeconds : null,
        grantedTtlSeconds: info ? info.grantedTtlSeconds : null,
        identities: [...(sessionIdentities.get(lease) ?? [])].sort(),
        keys: count,
      };
    });
  result.unclassified.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return result;
}

/**
 * The turn rule of the read/write lock (`lib/lock/lock-specs.ts`): a writer
 * holds when it is the oldest key; readers hold when no writer is older.
 */
export function readWriteView(name: string, entries: KeyEntry[]): ReadWriteView {
  if (entries[0]!.side === 'write') return { name, holders: [entries[0]!], heldAs: 'write', waiters: entries.slice(1) };
  const firstWriter = entries.findIndex((e) => e.side === 'write');
  const split = firstWriter < 0 ? entries.length : firstWriter;
  return { name, holders: entries.slice(0, split), heldAs: 'read', waiters: entries.slice(split) };
}

/**
 * The semaphore's rule: the `permits` oldest keys hold. Without the count
 * (etcd does not record it) only a lower bound is known: the oldest key
 * holds, and so does every key up to the newest one that was touched on
 * grant (a waiter re-puts its key when it gets its permit: mod > create).
 */
export function semaphoreView(name: string, entries: KeyEntry[], permits: number | undefined): SemaphoreView {
  if (permits !== undefined) {
    return { name, permits, holders: entries.slice(0, permits), undetermined: [], waiters: entries.slice(permits) };
  }
  let known = 1;
  entries.forEach((e, i) => {
    if (e.modRevision > e.createRevision) known = Math.max(known, i + 1);
  });
  return { name, permits: null, holders: entries.slice(0, known), undetermined: entries.slice(known), waiters: [] };
}
