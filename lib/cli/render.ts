// Renders an Inspection (classify.ts) as text tables or JSON. Pure: no I/O.
import type { Inspection, KeyEntry, QueueView, SemaphoreView } from './classify.js';

/** Context of one drawing: where it was read, and (with --watch) when keys were first seen. */
export interface RenderContext {
  endpoints: readonly string[];
  at: Date;
  /** --watch: key -> when this watch first saw it; `watchStartedAt` for keys present at the start. */
  firstSeen?: ReadonlyMap<string, number>;
  watchStartedAt?: number;
}

const MAX_CELL = 48;

/** Text safe for one table cell: controls, format characters and separators made visible, long text cut. */
export function cell(text: string, max = MAX_CELL): string {
  const visible = text.replace(/[\p{Cc}\p{Cf}\u2028\u2029]/gu, (ch) => `<U+${ch.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}>`);
  return visible.length > max ? `${visible.slice(0, max - 1)}…` : visible;
}

/** Left-aligned columns separated by two spaces; the last column is not padded. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

const identity = (value: string) => (value === '' ? '(not recorded)' : cell(value));
const time = (ms: number) => new Date(ms).toISOString().slice(11, 19);

function since(entry: KeyEntry, context: RenderContext): string {
  const rev = `rev ${entry.createRevision}`;
  const seen = context.firstSeen?.get(entry.key);
  if (seen === undefined || context.watchStartedAt === undefined) return rev;
  return seen <= context.watchStartedAt ? `${rev}, before ${time(seen)}` : `${rev}, seen ${time(seen)}`;
}

function entryCells(entry: KeyEntry, context: RenderContext, holds: boolean): string[] {
  return [identity(entry.value), entry.lease, since(entry, context), holds ? entry.fencingToken.toString() : '-'];
}

const ENTRY_HEADER = ['IDENTITY', 'LEASE', 'SINCE', 'FENCING TOKEN'];
const none = '  (none)';

function queueRows(views: QueueView[], context: RenderContext, holderRole: string, waiterRole: string, withKind: boolean): string[][] {
  const rows: string[][] = [];
  for (const view of views) {
    const lead = (first: boolean) => (withKind ? [first ? cell(view.name) : '', first ? view.kind : ''] : [first ? cell(view.name) : '']);
    rows.push([...lead(true), holderRole, ...entryCells(view.holder, context, true)]);
    view.waiters.forEach((w, i) => rows.push([...lead(false), `${waiterRole} ${i + 1}`, ...entryCells(w, context, false)]));
  }
  return rows;
}

function semaphoreSummary(view: SemaphoreView): string {
  if (view.permits !== null) return `${view.holders.length} of ${view.permits} used, ${view.waiters.length} waiting`;
  const maybe = view.undetermined.length;
  return `${view.holders.length}${maybe > 0 ? `+ (${maybe} more hold or wait)` : ''} used, count not stored`;
}

function ttl(seconds: number | null): string {
  if (seconds === null) return '?';
  return seconds < 0 ? 'expired' : `${seconds} s`;
}

/** The inspection as text tables. */
export function renderText(inspection: Inspection, context: RenderContext): string {
  const out: string[] = [];
  out.push(
    `etcd ${context.endpoints.join(',')}  namespace ${JSON.stringify(inspection.namespace)}  ` +
      `revision ${inspection.revision}  at ${context.at.toISOString()}`,
  );
  const section = (title: string, body: string | undefined) => out.push('', title, body ?? none);

  section('LOCKS (mutexes; etcd\'s format, as etcdctl lock)', inspection.locks.length === 0 ? undefined :
    table(['NAME', 'KIND', 'ROLE', ...ENTRY_HEADER], queueRows(inspection.locks, context, 'holder', 'waiter', true)));

  section('READ/WRITE LOCKS', inspection.readWriteLocks.length === 0 ? undefined : table(['NAME', 'ROLE', ...ENTRY_HEADER], inspection.readWriteLocks.flatMap((view) => [
    ...view.holders.map((h, i) => [i === 0 ? cell(view.name) : '', `${h.side} holder`, ...entryCells(h, context, true)]),
    ...view.waiters.map((w, i) => ['', `waiter ${i + 1} (${w.side})`, ...entryCells(w, context, false)]),
  ])));

  section('SEMAPHORES', inspection.semaphores.length === 0 ? undefined : table(['NAME', 'PERMITS', 'ROLE', ...ENTRY_HEADER], inspection.semaphores.flatMap((view) => {
    const head = (i: number) => (i === 0 ? [cell(view.name), semaphoreSummary(view)] : ['', '']);
    let row = 0;
    return [
      ...view.holders.map((h) => [...head(row++), 'holder', ...entryCells(h, context, true)]),
      ...view.undetermined.map((u) => [...head(row++), 'holds or waits', ...entryCells(u, context, false)]),
      ...view.waiters.map((w, i) => [...head(row++), `waiter ${i + 1}`, ...entryCells(w, context, false)]),
    ];
  })));

  section('ELECTIONS', inspection.elections.length === 0 ? undefined :
    table(['NAME', 'ROLE', 'VALUE', 'LEASE', 'SINCE', 'FENCING TOKEN'], queueRows(inspection.elections, context, 'leader', 'candidate', false)));

  section('SESSIONS (leases of the keys above)', inspection.sessions.length === 0 ? undefined :
    table(['LEASE', 'TTL LEFT', 'GRANTED', 'KEYS', 'IDENTITY'], inspection.sessions.map((s) => [
      s.lease, ttl(s.ttlSeconds), ttl(s.grantedTtlSeconds), String(s.keys), s.identities.length === 0 ? '(not recorded)' : s.identities.map((i) => cell(i)).join(', '),
    ])));

  if (inspection.libraryRecords.length > 0) {
    section('LIBRARY RECORDS (the library\'s own keys; listed, not interpreted)', table(['RECORD', 'KEYS', 'FIRST KEY'], inspection.libraryRecords.map((r) => [
      cell(r.record), String(r.keys.length), cell(r.keys[0]?.key ?? '', 80),
    ])));
  }

  section('UNCLASSIFIED KEYS (not written by the library or etcd\'s recipes, as far as can be told)', inspection.unclassified.length === 0 ? undefined :
    table(['KEY', 'LEASE', 'REVISION', 'WHY'], inspection.unclassified.map((u) => [cell(u.key, 80), u.lease ?? '-', String(u.createRevision), u.reason])));

  out.push(
    '',
    'SINCE is the key\'s create revision: etcd keeps no wall-clock time' + (context.firstSeen ? ' (seen: when this watch first saw the key)' : '') + '.',
    'A mutex and an election share Go\'s <name>/<lease hex> format: use --election / --lock to tell them apart.',
    'Sessions are the leases found on these keys; a session that holds no key here is not listed.',
  );
  return `${out.join('\n')}\n`;
}

/** The inspection as JSON: bigints (revisions, tokens) as decimal strings, lease ids as hex. */
export function renderJson(inspection: Inspection, context: RenderContext): string {
  const document = { endpoints: context.endpoints, at: context.at.toISOString(), ...inspection };
  return JSON.stringify(document, (_key, value: unknown) => (typeof value === 'bigint' ? value.toString() : value));
}
