// etcd's own Prometheus metrics (GET /metrics on the client URL) and a client-side
// counter of watch events, so event counts per handoff come from two independent sources.
import { Watcher } from 'etcd3';

export type MetricSample = Map<string, number>;

/** All series of `GET <clientUrl>/metrics`, keyed by `name{labels}`. */
export async function scrapeMetrics(clientUrl: string): Promise<MetricSample> {
  const res = await fetch(`${clientUrl}/metrics`);
  if (!res.ok) throw new Error(`GET ${clientUrl}/metrics answered ${res.status}`);
  const text = await res.text();
  const sample: MetricSample = new Map();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    if (space < 0) continue;
    const value = Number(line.slice(space + 1));
    if (Number.isFinite(value)) sample.set(line.slice(0, space), value);
  }
  return sample;
}

/** Sum of the series named `name` whose label text passes `filter`. */
export function metricSum(sample: MetricSample, name: string, filter: (labels: string) => boolean = () => true): number {
  let total = 0;
  for (const [series, value] of sample) {
    const brace = series.indexOf('{');
    const seriesName = brace < 0 ? series : series.slice(0, brace);
    if (seriesName !== name) continue;
    if (filter(brace < 0 ? '' : series.slice(brace))) total += value;
  }
  return total;
}

/** What the benchmark reads from etcd's metrics. */
export interface EtcdCounters {
  /** etcd_debugging_mvcc_events_total: events sent to watchers (after each watcher's filters), all streams. */
  watchEventsSent: number;
  /** etcd_debugging_mvcc_watcher_total (gauge): watchers open now. */
  watchers: number;
  /** etcd_debugging_mvcc_watch_stream_total (gauge): gRPC watch streams open now. */
  watchStreams: number;
  /** grpc_server_started_total for etcdserverpb.Watch/Watch: watch streams ever opened. */
  watchStreamsOpened: number;
  /** grpc_server_handled_total, unary calls, by method (Range, Txn, Put, DeleteRange, LeaseGrant, LeaseRevoke, ...). */
  unary: Record<string, number>;
}

export async function etcdCounters(clientUrl: string): Promise<EtcdCounters> {
  const sample = await scrapeMetrics(clientUrl);
  const unary: Record<string, number> = {};
  for (const [series, value] of sample) {
    if (!series.startsWith('grpc_server_handled_total{') || !series.includes('grpc_type="unary"')) continue;
    const method = /grpc_method="([^"]+)"/.exec(series)?.[1];
    if (method) unary[method] = (unary[method] ?? 0) + value;
  }
  return {
    watchEventsSent: metricSum(sample, 'etcd_debugging_mvcc_events_total'),
    watchers: metricSum(sample, 'etcd_debugging_mvcc_watcher_total'),
    watchStreams: metricSum(sample, 'etcd_debugging_mvcc_watch_stream_total'),
    watchStreamsOpened: metricSum(sample, 'grpc_server_started_total', (l) => l.includes('grpc_method="Watch"') && l.includes('etcdserverpb.Watch')),
    unary,
  };
}

/** Counter differences between two snapshots (unary calls per method, events). */
export function counterDelta(
  before: EtcdCounters,
  after: EtcdCounters,
): { watchEventsSent: number; watchStreamsOpened: number; unary: Record<string, number>; unaryTotal: number } {
  const unary: Record<string, number> = {};
  let unaryTotal = 0;
  for (const [method, value] of Object.entries(after.unary)) {
    const d = value - (before.unary[method] ?? 0);
    if (d !== 0) unary[method] = d;
    unaryTotal += d;
  }
  return {
    watchEventsSent: after.watchEventsSent - before.watchEventsSent,
    watchStreamsOpened: after.watchStreamsOpened - before.watchStreamsOpened,
    unary,
    unaryTotal,
  };
}

// ------------------------------------------------------------------- client side

let clientEvents = 0;
let clientDisconnects = 0;
let installed = false;

/**
 * Counts, in this process, every watch event etcd3's Watcher receives (each
 * watcher emits 'data' with the events of one WatchResponse). Installed once;
 * read with clientWatchEvents().
 */
export function installClientWatchCounter(): void {
  if (installed) return;
  installed = true;
  const proto = Watcher.prototype as unknown as { emit: (event: string | symbol, ...args: unknown[]) => boolean };
  const original = proto.emit;
  proto.emit = function countingEmit(this: unknown, event: string | symbol, ...args: unknown[]): boolean {
    if (event === 'data') {
      const events = (args[0] as { events?: unknown[] } | undefined)?.events;
      if (Array.isArray(events)) clientEvents += events.length;
    } else if (event === 'disconnected') {
      // etcd3 lost the watch stream under this watcher; it re-subscribes after a backoff.
      clientDisconnects++;
    }
    return original.call(this, event, ...args);
  };
}

export function clientWatchEvents(): number {
  return clientEvents;
}

export function clientWatchDisconnects(): number {
  return clientDisconnects;
}
