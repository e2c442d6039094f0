// The contract every kind of hold must pass, as cases over an environment: real etcd
// (test/contract.test.ts) or the testing kit's in-memory fake (test/contract-fake.test.ts).
// A new kind gets all of it by adding one line to KINDS.
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { INestApplicationContext } from '@nestjs/common';
import {
  ElectionService,
  LockAbortedError,
  LockService,
  LockTimeoutError,
  type CoordinationHold,
  type Lockable,
} from '../lib/index.js';
import { delay, eventually, membersPrefix, uniqueNamespace } from './support/apps.js';

type App = INestApplicationContext;

/** Where the contract runs: how to make applications that share one store, and how to look into it. */
export interface ContractEnvironment {
  /** Shown in the suite names. */
  label: string;
  before(): void | Promise<void>;
  after(): Promise<void>;
  /** `n` applications in namespace `ns`, identities app-0..app-n-1, on one shared store. */
  apps(ns: string, n: number): Promise<App[]>;
  /** Every key under `ns`. */
  keys(ns: string): Promise<string[]>;
  /** The current revision of the store `ns` lives in (a request that writes nothing leaves it unchanged). */
  revision(ns: string): Promise<bigint>;
  /** Two applications in `ns`: `cut`, whose session `lose()` ends, and `other`. */
  sessionLoss(ns: string): Promise<{ cut: App; other: App; lose(): Promise<void>; restore(): Promise<void>; dispose(): Promise<void> }>;
}

interface Kind {
  label: string;
  /** The hold under test, in `app`. */
  make(app: App, name: string): Lockable<CoordinationHold>;
  /** Holds that make `make(...)` wait: `capacity` holds of the same kind, or a writer for a reader. */
  block(app: App, name: string): Promise<CoordinationHold[]>;
  /** Whether waiters are granted one after another in arrival order (false: they share, like readers). */
  exclusive: boolean;
}

const locks = (app: App) => app.get(LockService);
const same = (capacity: number, make: Kind['make']): Kind['block'] => async (app, name) => {
  const holds: CoordinationHold[] = [];
  for (let i = 0; i < capacity; i++) holds.push(await make(app, name).acquire());
  return holds;
};

const mutex: Kind['make'] = (app, name) => locks(app).mutex(name);
const read: Kind['make'] = (app, name) => locks(app).readWriteLock(name).read;
const write: Kind['make'] = (app, name) => locks(app).readWriteLock(name).write;
const semaphore = (permits: number): Kind['make'] => (app, name) => locks(app).semaphore(name, permits);
const election: Kind['make'] = (app, name) => app.get(ElectionService).election(name);

const KINDS: Kind[] = [
  { label: 'mutex', make: mutex, block: same(1, mutex), exclusive: true },
  { label: 'read lock', make: read, block: async (app, name) => [await write(app, name).acquire()], exclusive: false },
  { label: 'write lock', make: write, block: same(1, write), exclusive: true },
  { label: 'semaphore(1)', make: semaphore(1), block: same(1, semaphore(1)), exclusive: true },
  { label: 'semaphore(3)', make: semaphore(3), block: same(3, semaphore(3)), exclusive: true },
  { label: 'election', make: election, block: same(1, election), exclusive: true },
];

/**
 * Defines the contract's cases for every kind against `env` (real etcd, or the
 * testing kit's in-memory fake). Call it at the top level of a test file.
 */
export function defineContract(env: ContractEnvironment): void {
  for (const kind of KINDS) {
    describe(`contract: ${kind.label} (${env.label})`, () => {
      before(() => env.before());
      after(() => env.after());

      const apps = (ns: string, n: number) => env.apps(ns, n);
      const keys = (ns: string) => env.keys(ns);

      /** Closes the apps and checks that nothing of theirs is left in etcd. */
      async function finish(ns: string, list: App[]): Promise<void> {
        await Promise.all(list.map((app) => app.close()));
        assert.deepEqual(await keys(ns), [], 'nothing left in etcd');
      }

      it('serves waiters in arrival order once the blockers leave', async () => {
        const ns = uniqueNamespace('fifo');
        const [blocker, ...waiters] = await apps(ns, 4);
        const blocks = await kind.block(blocker!, 'q');
        const granted: number[] = [];
        const done = waiters.map(async (app, i) => {
          await delay(i * 150); // arrive one after another
          const hold = await kind.make(app, 'q').acquire({ timeout: 20_000 });
          granted.push(i);
          if (kind.exclusive) await delay(50);
          return hold;
        });
        await delay(waiters.length * 150 + 200);
        assert.deepEqual(granted, [], 'nobody may get it while it is blocked');
        for (const hold of blocks) {
          await hold.release();
          await delay(30);
        }
        const holds = await Promise.all(done.map((d, i) => d.then(async (hold) => {
          if (kind.exclusive) await hold.release();
          return [i, hold] as const;
        })));
        if (kind.exclusive) assert.deepEqual(granted, [0, 1, 2], 'FIFO');
        else assert.deepEqual([...granted].sort(), [0, 1, 2], 'all readers share');
        for (const [, hold] of holds) await hold.release();
        await finish(ns, [blocker!, ...waiters]);
      });

      it('hands out strictly increasing fencing tokens, one holder after another', async () => {
        const ns = uniqueNamespace('tokens');
        const list = await apps(ns, 3);
        const tokens: bigint[] = [];
        for (let round = 0; round < 2; round++) {
          for (const app of list) {
            const hold = await kind.make(app, 't').acquire({ timeout: 10_000 });
            assert.equal(hold.isHeld(), true);
            tokens.push(hold.fencingToken);
            await hold.release();
            assert.equal(hold.isHeld(), false);
            assert.equal(hold.signal.aborted, true, 'release aborts the signal');
          }
        }
        for (let i = 1; i < tokens.length; i++) assert.ok(tokens[i]! > tokens[i - 1]!, `tokens ${tokens.join(', ')}`);
        assert.equal(typeof tokens[0], 'bigint');
        await finish(ns, list);
      });

      it('tryAcquire: null at once while blocked (leaving no key), the hold when free', async () => {
        const ns = uniqueNamespace('try');
        const [a, b] = await apps(ns, 2);
        const blocks = await kind.block(a!, 'x');
        const keysBefore = await keys(ns);
        assert.equal(await kind.make(b!, 'x').tryAcquire(), null);
        assert.deepEqual(await keys(ns), keysBefore, 'a failed try leaves no key');
        for (const hold of blocks) await hold.release();
        const hold = await kind.make(b!, 'x').tryAcquire();
        assert.ok(hold, 'free: the try gets it');
        await hold.release();
        await finish(ns, [a!, b!]);
      });

      it('timeout: LockTimeoutError, and the waiter key is removed', async () => {
        const ns = uniqueNamespace('timeout');
        const [a, b] = await apps(ns, 2);
        const blocks = await kind.block(a!, 'x');
        const keysBefore = await keys(ns);
        const started = Date.now();
        await assert.rejects(kind.make(b!, 'x').acquire({ timeout: 300 }), (err: unknown) => err instanceof LockTimeoutError && err.code === 'LOCK_TIMEOUT');
        assert.ok(Date.now() - started >= 290, 'not before the timeout');
        assert.deepEqual(await keys(ns), keysBefore, 'the waiter key is gone');
        for (const hold of blocks) await hold.release();
        await finish(ns, [a!, b!]);
      });

      it('abort: LockAbortedError with the cause, waiter key removed; an already-aborted signal rejects at once and writes nothing', async () => {
        const ns = uniqueNamespace('abort');
        const [a, b] = await apps(ns, 2);
        const blocks = await kind.block(a!, 'x');
        const keysBefore = await keys(ns);
        const controller = new AbortController();
        const waiting = kind.make(b!, 'x').acquire({ signal: controller.signal });
        await eventually(async () => (await keys(ns)).length > keysBefore.length, 5_000, 'the waiter queued');
        controller.abort(new Error('caller gave up'));
        await assert.rejects(waiting, (err: unknown) => err instanceof LockAbortedError && (err.cause as Error).message === 'caller gave up');
        assert.deepEqual(await keys(ns), keysBefore, 'the waiter key is gone');
        for (const hold of blocks) await hold.release();
        // Already aborted, on a free name: rejected before any etcd request.
        const revisionBefore = await env.revision(ns);
        const started = performance.now();
        await assert.rejects(kind.make(b!, 'y').acquire({ signal: AbortSignal.abort(new Error('too late')) }), (err: unknown) => err instanceof LockAbortedError);
        assert.ok(performance.now() - started < 50, `rejected after ${performance.now() - started} ms`);
        assert.equal(await env.revision(ns), revisionBefore, 'nothing was written');
        await finish(ns, [a!, b!]);
      });

      it('re-entry: inside run(), acquiring the same name shares the outer hold', async () => {
        const ns = uniqueNamespace('reenter');
        const [a] = await apps(ns, 1);
        const lockable = kind.make(a!, 'r');
        await lockable.run(async (outer) => {
          const inner = await lockable.acquire({ timeout: 2_000 });
          assert.equal(inner.fencingToken, outer.fencingToken);
          await inner.release(); // a no-op: the outer owner releases
          assert.equal(outer.isHeld(), true);
        });
        await finish(ns, [a!]);
      });

      it('session loss aborts the signal before etcd could give the hold to anyone else', async () => {
        const ns = uniqueNamespace('loss');
        const loss = await env.sessionLoss(ns);
        try {
          const { cut, other } = loss;
          const holds = await kind.block(cut, 'p');
          // Order of events, not wall-clock time: the fake does both within one millisecond.
          let clock = 0;
          let abortedAt = 0;
          holds[0]!.signal.addEventListener('abort', () => (abortedAt = ++clock));
          const waiting = kind.make(other, 'p').acquire({ timeout: 15_000 }).then((hold) => ({ hold, at: ++clock }));
          await delay(200);
          await loss.lose();
          const { hold, at } = await waiting;
          assert.ok(abortedAt > 0, 'the holder was never told');
          assert.ok(abortedAt < at, `holder told at ${abortedAt}, the other got it at ${at}`);
          assert.equal(holds[0]!.isHeld(), false);
          assert.equal((holds[0]!.signal.reason as { code?: string }).code, 'SESSION_LOST');
          await hold.release();
          await loss.restore();
          await other.close();
          // cut still runs: its lost hold left nothing; only its member record (membership is on by
          // default and registers again on a new session) may be there.
          assert.deepEqual((await keys(ns)).filter((key) => !key.startsWith(membersPrefix(ns))), [], 'the lost hold left nothing');
          await cut.close();
          assert.deepEqual(await keys(ns), [], 'nothing left in etcd');
        } finally {
          await loss.dispose();
        }
      });
    });
  }
}
