import type { EtcdServer } from '../test/harness/etcd.js';
import type { GoBuild } from './go.js';

/** What every section gets from the runner. */
export interface BenchContext {
  etcd: EtcdServer;
  /** Smaller sample counts (BENCH_QUICK=1): a smoke run of the whole pipeline. */
  quick: boolean;
  log(message: string): void;
  /** The Go yardstick (etcd's own concurrency.Mutex / Election), or why it is not available. */
  go: GoBuild;
}

/** Reference latencies of plain etcd requests, measured in section 1 and used by later targets. */
export interface References {
  /** p50 of a put on an existing lease (one etcd write round trip), ms. */
  writeP50: number;
  /** p50 of a linearizable get (one read round trip), ms. */
  readP50: number;
  /** p50 from the start of a put to the arrival of its watch event at another client, ms. */
  writeToWatchEventP50: number;
}
