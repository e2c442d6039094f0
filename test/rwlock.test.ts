import { afterEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Injectable } from '@nestjs/common';
import { etcdFixture } from './harness/etcd.js';
import {
  InvalidNameError,
  InvalidUsageError,
  LockAbortedError,
  LockService,
  LockTimeoutError,
  WithLock,
  currentLock,
  type LockHandle,
} from '../lib/index.js';
import { closeApps, createApp, delay, eventually, keysExceptMembers, keysUnder, rawClient, uniqueNamespace } from './support/apps.js';
import { spawnWorker } from './support/workers.js';

/** Shared by every instance of Documents (two apps in this process): who is inside right now. */
const inside = { readers: 0, writers: 0, maxReaders: 0, violations: [] as string[] };

@Injectable()
class Documents {
  @WithLock('doc', { mode: 'read' })
  async read(ms: number): Promise<bigint> {
    inside.readers++;
    inside.maxReaders = Math.max(inside.maxReaders, inside.readers);
    if (inside.writers !== 0) inside.violations.push('reader inside with a writer');
    await delay(ms);
    inside.readers--;
    return currentLock('doc')!.fencingToken;
  }

  @WithLock('doc', { mode: 'write' })
  async write(ms: number): Promise<bigint> {
    inside.writers++;
    if (inside.writers !== 1 || inside.readers !== 0) inside.violations.push(`writer inside with ${JSON.stringify(inside)}`);
    await delay(ms);
    inside.writers--;
    return currentLock('doc')!.fencingToken;
  }

  /** Lock upgrade: a write inside a read of the same name would wait for itself. */
  @WithLock('doc', { mode: 'read' })
  async upgrade(): Promise<bigint> {
    return this.write(1);
  }

  /** write -> read -> write in one call chain: both inner holds re-enter the outer write. */
  @WithLock('doc', { mode: 'write' })
  async nested(): Promise<bigint[]> {
    const outer = currentLock('doc')!;
    const inner = await this.readThenWrite();
    return [outer.fencingToken, ...inner];
  }

  @WithLock('doc', { mode: 'read' })
  async readThenWrite(): Promise<bigint[]> {
    const read = currentLock('doc')!;
    const write = await this.innerWrite();
    return [read.fencingToken, write];
  }

  @WithLock('doc', { mode: 'write' })
  async innerWrite(): Promise<bigint> {
    return currentLock('doc')!.fencingToken;
  }
}

describe('read/write lock (real etcd)', () => {
  const etcd = etcdFixture();
  const raw = () => rawClient(etcd().endpoint);
  afterEach(closeApps);

  async function lockApp(namespace: string, identity: string, extra: Record<string, unknown> = {}) {
    const app = await createApp({ hosts: etcd().endpoint, namespace, identity, sessionTtl: 2, ...extra });
    return { app, locks: app.get(LockService) };
  }

  /** Marks a rejection as handled now (asserted later), so a slow test cannot turn it into an unhandled rejection. */
  const later = <T>(promise: Promise<T>): Promise<T> => {
    promise.catch(() => undefined);
    return promise;
  };

  /** Resolves to true if `promise` settled within `ms`. */
  const settlesWithin = (promise: Promise<unknown>, ms: number) =>
    Promise.race([promise.then(() => true, () => true), delay(ms).then(() => false)]);

  it('readers overlap across sessions; a writer excludes readers and writers; keys follow recipes.RWMutex', async () => {
    const ns = uniqueNamespace('overlap');
    const [a, b, c] = await Promise.all(['a', 'b', 'c'].map((id) => lockApp(ns, id)));
    const client = raw();
    try {
      const readers = await Promise.all([a!, b!, c!].map(({ locks }) => locks.readLock('doc', { timeout: 10_000 })));
      const readKeys = await keysUnder(client, `${ns}doc/read/`);
      assert.equal(readKeys.length, 3, 'three readers hold at once');
      for (const r of readers) {
        assert.equal(r.mode, 'read');
        assert.ok(r.isHeld());
        assert.match(r.key, new RegExp(`^${ns}doc/read/[0-9a-f]+-[0-9a-z]+$`));
      }
      assert.equal(new Set(readers.map((r) => r.fencingToken)).size, 3, 'each hold has its own key and token');

      assert.equal(await a!.locks.tryWriteLock('doc'), null, 'no write while reading');
      assert.equal((await keysUnder(client, `${ns}doc/`)).length, 3, 'a refused try leaves no key');
      const writer = a!.locks.writeLock('doc');
      await eventually(async () => (await keysUnder(client, `${ns}doc/write/`)).length === 1, 5_000, 'writer queued');
      await readers[0]!.release();
      await readers[1]!.release();
      assert.equal(await settlesWithin(writer, 300), false, 'the writer waits for every earlier reader');
      await readers[2]!.release();
      const w = await writer;
      assert.equal(w.mode, 'write');
      assert.ok(w.fencingToken > readers[2]!.fencingToken);
      assert.match(w.key, new RegExp(`^${ns}doc/write/[0-9a-f]+-[0-9a-z]+$`));

      assert.equal(await b!.locks.tryReadLock('doc'), null, 'no read while writing');
      assert.equal(await c!.locks.tryWriteLock('doc'), null, 'no second writer');
      const reader = b!.locks.readLock('doc');
      await eventually(async () => (await keysUnder(client, `${ns}doc/read/`)).length === 1, 5_000, 'reader queued');
      const writer2 = c!.locks.writeLock('doc');
      await eventually(async () => (await keysUnder(client, `${ns}doc/write/`)).length === 2, 5_000, 'second writer queued');
      assert.equal(await settlesWithin(Promise.race([reader, writer2]), 300), false, 'both wait for the writer');
      await w.release();
      const r = await reader;
      assert.equal(await settlesWithin(writer2, 200), false, 'the second writer waits for the reader');
      await r.release();
      await (await writer2).release();
      assert.deepEqual(await keysExceptMembers(client, ns), []);
    } finally {
      client.close();
    }
  });

  it('mixed readers and writers in 3 OS processes: a writer is always alone, readers only share with readers', async () => {
    const ns = uniqueNamespace('mix');
    const workers = ['p1', 'p2', 'p3'].map((id) => spawnWorker({ use: ['contention'], hosts: etcd().endpoint, namespace: ns, identity: id, ttl: 5 }));
    const client = raw();
    try {
      await Promise.all(workers.map((w) => w.waitForMessage('ready', 20_000)));
      for (const w of workers) w.send({ type: 'mix', name: 'shared', key: `${ns}inside`, rounds: 10, parallel: 2, writeRatio: 0.3 });
      const results = await Promise.all(workers.map((w) => w.waitForMessage((m) => m.type === 'mixed' || m.type === 'error', 60_000)));
      for (const result of results) {
        assert.equal(result.type, 'mixed', JSON.stringify(result));
        assert.deepEqual(result.violations, []);
      }
      const reads = results.reduce((n, r) => n + Number(r.reads), 0);
      const writes = results.reduce((n, r) => n + Number(r.writes), 0);
      assert.equal(reads + writes, 60);
      assert.ok(reads > 0 && writes > 0, `reads ${reads}, writes ${writes}`);
      assert.deepEqual(JSON.parse((await client.get(`${ns}inside`).string())!), { readers: 0, writers: 0 });
      assert.deepEqual(await keysUnder(client, `${ns}shared/`), []);
    } finally {
      client.close();
      await Promise.all(workers.map((w) => w.kill('SIGTERM')));
    }
  });

  it('is FIFO: a reader arriving after a waiting writer queues behind it; adjacent readers are let in together', async () => {
    const ns = uniqueNamespace('fifo');
    const apps = await Promise.all(['a', 'b', 'c'].map((id) => lockApp(ns, id)));
    const client = raw();
    try {
      const log: string[] = [];
      const handles = new Map<string, LockHandle>();
      const r1 = await apps[0]!.locks.readLock('q');
      handles.set('R1', r1);
      // Arrival order: W2 R3 R4 W5 R6, each queued (key visible) before the next arrives.
      const plan: Array<['read' | 'write', string]> = [['write', 'W2'], ['read', 'R3'], ['read', 'R4'], ['write', 'W5'], ['read', 'R6']];
      const waits: Promise<void>[] = [];
      for (const [i, [mode, label]] of plan.entries()) {
        const { locks } = apps[(i + 1) % apps.length]!;
        const acquiring = mode === 'read' ? locks.readLock('q') : locks.writeLock('q');
        waits.push(acquiring.then((h) => { log.push(label); handles.set(label, h); }));
        await eventually(async () => (await keysUnder(client, `${ns}q/`)).length === i + 2, 5_000, `${label} queued`);
        if (label === 'R3') {
          assert.equal(await apps[1]!.locks.tryReadLock('q'), null, 'a try-reader behind a waiting writer is refused');
        }
      }
      await delay(200);
      assert.deepEqual(log, [], 'R3 must not join R1: W2 waits before it');

      await r1.release();
      await eventually(() => log.length === 1, 5_000, 'W2 after R1');
      assert.deepEqual(log, ['W2']);
      await delay(150);
      assert.deepEqual(log, ['W2'], 'nobody joins a writer');

      await handles.get('W2')!.release();
      await eventually(() => log.length === 3, 5_000, 'R3 and R4 after W2');
      assert.deepEqual([...log.slice(1)].sort(), ['R3', 'R4'], 'adjacent readers hold together');
      await handles.get('R3')!.release();
      await delay(150);
      assert.equal(log.length, 3, 'W5 waits for R4 too');
      await handles.get('R4')!.release();
      await eventually(() => log.length === 4, 5_000, 'W5 after R4');
      assert.equal(log[3], 'W5');
      await delay(150);
      assert.equal(log.length, 4, 'R6 waits for W5');
      await handles.get('W5')!.release();
      await Promise.all(waits);
      assert.equal(log[4], 'R6');
      const tokens = ['R1', 'W2', 'R3', 'R4', 'W5', 'R6'].map((l) => handles.get(l)!.fencingToken);
      for (let i = 1; i < tokens.length; i++) assert.ok(tokens[i]! > tokens[i - 1]!, 'tokens follow arrival order');
      await handles.get('R6')!.release();
      assert.deepEqual(await keysExceptMembers(client, ns), []);
    } finally {
      client.close();
    }
  });

  it('never starves a writer: it gets the lock while overlapping readers keep arriving, and later readers wait for it', async () => {
    const ns = uniqueNamespace('starve');
    const apps = await Promise.all(['r1', 'r2', 'r3', 'w'].map((id) => lockApp(ns, id)));
    const readerLog: Array<{ token: bigint; at: number }> = [];
    let stop = false;
    const readerLoop = async (locks: LockService, startDelay: number) => {
      await delay(startDelay);
      while (!stop) {
        const h = await locks.readLock('s', { timeout: 20_000 });
        readerLog.push({ token: h.fencingToken, at: Date.now() });
        await delay(150);
        await h.release();
      }
    };
    const loops = apps.slice(0, 3).map(({ locks }, i) => readerLoop(locks, i * 50));
    try {
      // Let the readers establish a continuous overlap: some reader always holds from here on.
      await eventually(() => readerLog.length >= 6, 10_000, 'readers running');
      const writer = await apps[3]!.locks.writeLock('s', { timeout: 15_000 });
      const acquiredAt = Date.now();
      await delay(200);
      const releasedAt = Date.now();
      await writer.release();
      await eventually(() => readerLog.some((r) => r.at >= releasedAt), 10_000, 'readers continue after the writer');
      stop = true;
      await Promise.all(loops);
      const jumped = readerLog.filter((r) => r.token > writer.fencingToken && r.at < releasedAt);
      assert.deepEqual(jumped, [], 'no reader that arrived after the writer got in before the writer released');
      assert.ok(readerLog.some((r) => r.token < writer.fencingToken && r.at < acquiredAt), 'readers held before the writer');
    } finally {
      stop = true;
      await Promise.allSettled(loops);
    }
  });

  it('timeout and abort reject with typed errors, remove the waiter key, and let readers queued behind a writer in', async () => {
    const ns = uniqueNamespace('cancel');
    const [a, b, c] = await Promise.all(['a', 'b', 'c'].map((id) => lockApp(ns, id)));
    const client = raw();
    try {
      const r1 = await a!.locks.readLock('t');
      const writer = later(b!.locks.writeLock('t', { timeout: 800 }));
      await eventually(async () => (await keysUnder(client, `${ns}t/write/`)).length === 1, 5_000, 'writer queued');
      const r3 = c!.locks.readLock('t');
      await eventually(async () => (await keysUnder(client, `${ns}t/read/`)).length === 2, 5_000, 'reader queued behind writer');
      assert.equal(await settlesWithin(r3, 200), false, 'the reader waits for the waiting writer');
      await assert.rejects(writer, (err: unknown) => err instanceof LockTimeoutError && err.code === 'LOCK_TIMEOUT' && /"t"/.test(err.message));
      const third = await r3; // the writer's key is gone: the reader joins R1
      assert.ok(r1.isHeld() && third.isHeld());
      assert.deepEqual(await keysUnder(client, `${ns}t/write/`), [], 'timed-out writer key removed');
      await Promise.all([r1.release(), third.release()]);

      const w = await a!.locks.writeLock('t');
      const controller = new AbortController();
      const abortedReader = later(b!.locks.readLock('t', { signal: controller.signal }));
      const abortedWriter = later(c!.locks.writeLock('t', { signal: controller.signal }));
      await eventually(async () => (await keysUnder(client, `${ns}t/`)).length === 3, 5_000, 'both queued');
      controller.abort(new Error('caller gave up'));
      for (const waiting of [abortedReader, abortedWriter]) {
        await assert.rejects(waiting, (err: unknown) => err instanceof LockAbortedError && (err.cause as Error).message === 'caller gave up');
      }
      const timedOutReader = b!.locks.readLock('t', { timeout: 200 });
      await assert.rejects(timedOutReader, LockTimeoutError);
      assert.deepEqual(await keysUnder(client, `${ns}t/`), [w.key], 'only the holder key remains');
      assert.equal(await b!.locks.withReadLock('t', async () => 'ran', { onLocked: 'skip' }), undefined);
      await assert.rejects(b!.locks.withWriteLock('t', async () => 'ran', { onLocked: 'fail' }), { code: 'LOCK_HELD' });
      await w.release();
      assert.deepEqual(await keysExceptMembers(client, ns), []);
    } finally {
      client.close();
    }
  });

  it('a SIGKILLed writer passes to waiting readers, and a SIGKILLed reader to a waiting writer, within TTL + 2 s', async () => {
    const ns = uniqueNamespace('crash');
    const ttl = 2;
    const [writerProc, readerProc] = ['victim-w', 'victim-r'].map((id) =>
      spawnWorker({ use: ['locks'], hosts: etcd().endpoint, namespace: ns, identity: id, ttl }),
    );
    const client = raw();
    try {
      await Promise.all([writerProc!.waitForMessage('ready', 20_000), readerProc!.waitForMessage('ready', 20_000)]);
      writerProc!.send({ type: 'write', name: 'c', id: 'w' });
      const held = await writerProc!.waitForMessage('acquired');
      const { locks } = await lockApp(ns, 'survivor');
      const readers = Promise.all([locks.readLock('c'), locks.readLock('c')]);
      await eventually(async () => (await keysUnder(client, `${ns}c/read/`)).length === 2, 5_000, 'readers queued');
      let killedAt = Date.now();
      await writerProc!.kill('SIGKILL');
      const [r1, r2] = await readers;
      let elapsed = Date.now() - killedAt;
      assert.ok(elapsed <= (ttl + 2) * 1000, `readers took ${elapsed} ms`);
      assert.ok(r1.fencingToken > BigInt(String(held.token)));
      await Promise.all([r1.release(), r2.release()]);

      readerProc!.send({ type: 'read', name: 'c', id: 'r' });
      await readerProc!.waitForMessage('acquired');
      const writer = locks.writeLock('c');
      await eventually(async () => (await keysUnder(client, `${ns}c/write/`)).length === 1, 5_000, 'writer queued');
      killedAt = Date.now();
      await readerProc!.kill('SIGKILL');
      const w = await writer;
      elapsed = Date.now() - killedAt;
      assert.ok(elapsed <= (ttl + 2) * 1000, `writer took ${elapsed} ms`);
      await w.release();
      assert.deepEqual(await keysExceptMembers(client, ns), []);
    } finally {
      client.close();
      await Promise.all([writerProc!.kill('SIGKILL'), readerProc!.kill('SIGKILL')]);
    }
  });

  it("@WithLock({ mode: 'read' | 'write' }) on providers of two apps: reads overlap, writes exclude, upgrade refused, nesting in a write re-enters", async () => {
    const ns = uniqueNamespace('decorated');
    const client = raw();
    try {
      const apps = await Promise.all(
        ['d1', 'd2'].map((identity) => createApp({ hosts: etcd().endpoint, namespace: ns, identity, sessionTtl: 2, providers: [Documents] })),
      );
      const [d1, d2] = apps.map((app) => app.get(Documents));
      Object.assign(inside, { readers: 0, writers: 0, maxReaders: 0, violations: [] });
      await Promise.all([d1!.read(150), d2!.read(150), d1!.read(150)]);
      assert.equal(inside.maxReaders, 3, 'reads of both apps overlap');
      const runs = [d1!.read(40), d2!.write(40), d1!.write(40), d2!.read(40), d1!.read(40), d2!.write(40)];
      const tokens = await Promise.all(runs);
      assert.deepEqual(inside.violations, []);
      assert.equal(new Set(tokens).size, tokens.length);

      await assert.rejects(d1!.upgrade(), (err: unknown) => err instanceof InvalidUsageError && /would wait for itself/.test(err.message));
      const nested = await d2!.nested();
      assert.equal(new Set(nested).size, 1, `write -> read -> write share one hold: ${nested.join(', ')}`);
      assert.deepEqual(await keysExceptMembers(client, ns), []);
    } finally {
      client.close();
    }
  });

  it('refuses lock upgrade through the API (InvalidUsageError, nothing left behind) and bad names', async () => {
    const ns = uniqueNamespace('upgrade');
    const { locks } = await lockApp(ns, 'u');
    const client = raw();
    try {
      await locks.withReadLock('x', async (read) => {
        await assert.rejects(locks.writeLock('x'), InvalidUsageError);
        await assert.rejects(locks.tryWriteLock('x'), InvalidUsageError);
        await assert.rejects(locks.withWriteLock('x', async () => 1), InvalidUsageError);
        // A read inside a read re-enters the outer hold.
        const again = await locks.readLock('x');
        assert.equal(again.fencingToken, read.fencingToken);
        await again.release();
        assert.equal((await keysUnder(client, `${ns}x/`)).length, 1);
        // Another name is another lock.
        assert.equal(await locks.withWriteLock('y', async (w) => w.mode), 'write');
      });
      // Downgrade: a read inside a write shares the write hold.
      await locks.withWriteLock('x', async (write) => {
        const read = await locks.withReadLock('x', async (r) => r);
        assert.equal(read!.fencingToken, write.fencingToken);
      });
      for (const bad of ['', 'a/b', ' x']) {
        await assert.rejects(locks.readLock(bad), InvalidNameError);
        await assert.rejects(locks.tryWriteLock(bad), InvalidNameError);
      }
      await assert.rejects(locks.readLock('ok', { timeout: Number.NaN }), { code: 'INVALID_USAGE' });
      assert.deepEqual(await keysExceptMembers(client, ns), []);
    } finally {
      client.close();
    }
  });
});
