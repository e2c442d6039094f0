// The held-key watch's pacing: deferred (short holds cost no watcher) and at most N creations in
// flight (a burst of holds must not flood the stream). A stand-in for EtcdWatches records calls.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { HeldKeyWatches, takenBy } from '../../lib/queue/held-key-watch.js';
import type { EtcdWatches, WatchTarget } from '../../lib/etcd/watch.js';
import type { EtcdOps } from '../../lib/etcd/etcd-ops.js';
import type { Hold } from '../../lib/queue/hold.js';

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function fakeHold(i: number): Hold & { abortHold: AbortController } {
  const controller = new AbortController();
  return { abortHold: controller, signal: controller.signal, get hasEnded() { return controller.signal.aborted; }, keyBytes: Buffer.from(`k/${i}`), key: `k/${i}`, name: 'n', revision: 5n, session: { leaseId: 7n }, mode: 'exclusive' } as unknown as Hold & { abortHold: AbortController };
}

function recorder() {
  const started: Array<{ target: WatchTarget; end: () => void }> = [];
  const watches = {
    follow(target: WatchTarget, signal: AbortSignal) {
      return new Promise((resolve) => {
        const end = () => resolve('stopped');
        signal.addEventListener('abort', () => resolve('aborted'), { once: true });
        started.push({ target, end });
      });
    },
  } as unknown as EtcdWatches;
  return { watches, started };
}

describe('held-key watches (pacing)', () => {
  it('a hold released before the deferral never creates a watcher', async () => {
    const { watches, started } = recorder();
    const held = new HeldKeyWatches(watches, {} as EtcdOps, '', { deferMs: 30, maxCreating: 4, maxOwnWatchers: 100 });
    const hold = fakeHold(1);
    held.watch(hold, 'lock', 6n, () => undefined);
    hold.abortHold.abort();
    await delay(60);
    assert.equal(started.length, 0);
  });

  it('starts after the deferral, from the revision given, and keeps at most maxCreating creations in flight', async () => {
    const { watches, started } = recorder();
    const held = new HeldKeyWatches(watches, {} as EtcdOps, '', { deferMs: 10, maxCreating: 3, maxOwnWatchers: 100 });
    const holds = Array.from({ length: 10 }, (_, i) => fakeHold(i));
    for (const hold of holds) held.watch(hold, 'lock', 6n, () => undefined);
    assert.equal(started.length, 0, 'nothing before the deferral');
    await delay(40);
    assert.equal(started.length, 3, 'three creations in flight');
    assert.equal(started[0]!.target.fromRevision, 6n);
    started[0]!.target.onCreated!(9n); // etcd created the first: one more may start
    started[0]!.target.onCreated!(9n); // a second call counts once
    assert.equal(started.length, 4);
    holds[1]!.abortHold.abort(); // a hold that ends frees its slot too
    await delay(5);
    assert.equal(started.length, 5);
    for (const hold of holds) hold.abortHold.abort();
  });

  it('beyond maxOwnWatchers, holds share one watch of the namespace (read once when they join), dispatched by key', async () => {
    const { watches, started } = recorder();
    const reads: string[] = [];
    const ops = { checkOlder: async (key: Buffer) => (reads.push(key.toString()), key.toString() === 'k/3' ? undefined : { older: [], more: false, headerRevision: 9n }) } as unknown as EtcdOps;
    const held = new HeldKeyWatches(watches, ops, 'ns/', { deferMs: 1, maxCreating: 10, maxOwnWatchers: 2 });
    const holds = Array.from({ length: 5 }, (_, i) => fakeHold(i));
    const lost: string[] = [];
    for (const hold of holds) held.watch(hold, 'lock', 6n, (reason) => lost.push(`${hold.key}: ${reason.message}`));
    await delay(30);
    const shared = started.filter((s) => s.target.prefix);
    assert.equal(started.length - shared.length, 2, 'two holds have a watcher of their own');
    assert.equal(shared.length, 1, 'the other three share one');
    assert.equal(shared[0]!.target.key.toString(), 'ns/');
    assert.equal(shared[0]!.target.fromRevision, 0n);
    assert.deepEqual(reads.sort(), ['k/2', 'k/3', 'k/4'], 'each joining hold is read once');
    assert.equal(lost.length, 1, 'k/3 was already gone when it joined');
    assert.match(lost[0]!, /^k\/3: .*deleted by someone else/);
    for (const hold of holds) hold.abortHold.abort();
  });

  it('tells a held key taken from us apart from our own writes', () => {
    const hold = fakeHold(1);
    const kv = (over: Record<string, unknown>) => ({ key: hold.keyBytes, value: Buffer.from('me'), create_revision: '5', mod_revision: '9', lease: '7', version: '2', ...over }) as never;
    assert.equal(takenBy({ type: 'put', kv: kv({}) }, hold, 'lock'), undefined, 'a proclamation (same create revision and lease)');
    assert.match(takenBy({ type: 'delete', kv: kv({}) }, hold, 'lock')!.message, /deleted by someone else/);
    assert.match(takenBy({ type: 'put', kv: kv({ lease: '0' }) }, hold, 'lock')!.message, /moved off our session lease/);
    assert.match(takenBy({ type: 'put', kv: kv({ create_revision: '8' }) }, hold, 'lock')!.message, /re-created/);
    const marker = { type: 'put' as const, kv: kv({ value: Buffer.from('nest-etcd-coordination:force-release:ops') }) };
    assert.match(takenBy(marker, hold, 'lock')!.message, /force-released by "ops"/);
  });
});
