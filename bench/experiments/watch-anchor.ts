// EXPERIMENT, not part of the normal bench: what the proposed "watch anchor" fix in
// lib/etcd/etcd-ops.ts would change, applied from outside by wrapping EtcdOps.
//
// etcd3 1.1.2 destroys its watch stream when the last watcher of a client is cancelled
// (WatchManager.destroyStream -> stream.cancel()); the stream's CANCELLED error reaches
// ConnectionPool.markFailed, which calls Host.resetAllServices(): the client's whole gRPC
// channel is closed and reopened, and the unary calls in flight on it fail and are retried.
// A lock waiter cancels its only watcher on every handoff, so every handoff pays that.
// Keeping one idle watcher per client ("anchor", on a key nobody writes) keeps the stream.
//
//   node scripts/bench.mjs --no-build ... with
//   NODE_OPTIONS=--import=./.cache/bench-build/bench/experiments/watch-anchor.js
// (NODE_OPTIONS reaches the worker processes too).
import type { Etcd3, Watcher } from 'etcd3';
import { EtcdOps } from '../../lib/etcd/etcd-ops.js';

const ANCHOR_KEY = Buffer.from('\u0000nest-etcd-coordination/watch-anchor');
const anchors = new WeakMap<Etcd3, Watcher>();

function ensureAnchor(client: Etcd3): void {
  if (anchors.has(client)) return;
  const watcher = client.watch().key(ANCHOR_KEY).watcher();
  watcher.on('error', () => undefined);
  anchors.set(client, watcher);
}

const proto = EtcdOps.prototype as unknown as {
  waitForDeletion: (this: EtcdOps, ...args: unknown[]) => Promise<unknown>;
  oldest: (this: EtcdOps, ...args: unknown[]) => Promise<unknown>;
};
const waitForDeletion = proto.waitForDeletion;
proto.waitForDeletion = function anchoredWait(this: EtcdOps, ...args: unknown[]) {
  ensureAnchor(this.client);
  return waitForDeletion.apply(this, args);
};
// The election's observe loop watches through ops.client directly and reads through
// txn(); anchor on the first request of any kind too.
const txn = EtcdOps.prototype.txn;
EtcdOps.prototype.txn = function anchoredTxn(this: EtcdOps, ...args: Parameters<EtcdOps['txn']>) {
  ensureAnchor(this.client);
  return txn.apply(this, args);
};
process.env.BENCH_EXPERIMENT = 'watch-anchor';
