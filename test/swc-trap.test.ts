// The SWC trap (issue 12): compiled without a type check (`nest start -b swc`), a method under
// @WithLock that is not async would silently become async. Fixtures are compiled here by real SWC
// (@swc/core, with the options Nest's SWC builder uses: legacy decorators + decorator metadata),
// then bootstrapped: on the in-memory testing module, and once on a real etcd to show that the
// refusal comes before any session (no lease, no key left behind).
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { after, afterEach, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { Module, type Type } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Test } from '@nestjs/testing';
import { CoordinationModule, InvalidUsageError, LockService } from '../lib/index.js';
import { CoordinationTestingModule, FakeCoordination } from '../lib/testing/index.js';
import { etcdFixture } from './harness/etcd.js';
import { BUILD_ROOT } from './harness/processes.js';
import { closeApps, keysUnder, leaseIds, rawClient, uniqueNamespace } from './support/apps.js';

// The library as the test itself loads it (one copy: the fixtures must decorate with the same one).
const LIB = pathToFileURL(path.join(BUILD_ROOT, 'lib', 'index.js')).href;
const FIXTURES = path.join(BUILD_ROOT, 'swc-trap-fixtures');

type Swc = typeof import('@swc/core');
function loadSwc(): Swc | string {
  try {
    return createRequire(import.meta.url)('@swc/core') as Swc;
  } catch (err) {
    return `@swc/core cannot be loaded (${(err as Error).message.split('\n')[0]}): npm install`;
  }
}
const swc = loadSwc();

let fixtureCount = 0;
/** Compiles `body` (TypeScript, after the imports) with SWC and imports it. */
async function compile(body: string, opts: { metadata?: boolean; target?: 'es2021' | 'es2015' } = {}): Promise<Record<string, Type>> {
  if (typeof swc === 'string') throw new Error(swc);
  const source = `import { Injectable } from '@nestjs/common';\nimport { LeaderOnly, WithLock } from '${LIB}';\n${body}`;
  const { code } = swc.transformSync(source, {
    filename: 'fixture.ts',
    jsc: {
      parser: { syntax: 'typescript', decorators: true },
      transform: { legacyDecorator: true, decoratorMetadata: opts.metadata ?? true },
      target: opts.target ?? 'es2021',
      keepClassNames: true,
    },
    module: { type: 'es6' },
  });
  mkdirSync(FIXTURES, { recursive: true });
  // Inside build/, so '@nestjs/common' and the SWC helpers resolve from the repository's node_modules.
  const file = path.join(FIXTURES, `fixture-${process.pid}-${++fixtureCount}.mjs`);
  writeFileSync(file, code);
  return import(pathToFileURL(file).href);
}

async function bootstrapFake(provider: Type, leader = true) {
  const moduleRef = await Test.createTestingModule({ imports: [CoordinationTestingModule.forRoot({ leader })], providers: [provider] }).compile();
  await moduleRef.init();
  return moduleRef;
}

async function refusal(provider: Type): Promise<InvalidUsageError> {
  const moduleRef = await Test.createTestingModule({ imports: [CoordinationTestingModule.forRoot()], providers: [provider] })
    .compile()
    .catch((err: unknown) => err);
  assert.ok(moduleRef instanceof InvalidUsageError, `bootstrap must fail with InvalidUsageError, got ${String(moduleRef)}`);
  return moduleRef;
}

const skip = typeof swc === 'string' ? swc : false;

describe('a non-async method under @WithLock, compiled by SWC', { skip }, () => {
  after(() => rmSync(FIXTURES, { recursive: true, force: true }));

  it('is refused at bootstrap when declared to return something else, naming the method and "make it async"', async () => {
    const { Counter } = await compile(`
      @Injectable() export class Counter {
        n = 0;
        @WithLock('count') bump(): number { return ++this.n; }
      }`);
    const err = await refusal(Counter!);
    assert.equal(err.code, 'INVALID_USAGE');
    assert.match(err.message, /@WithLock on Counter\.bump\(\)/);
    assert.match(err.message, /make it async/);
    assert.match(err.message, /design:returntype\) is Number/);
  });

  it('is refused at bootstrap with no return type (the common case: a tick that returns nothing), also stacked with @LeaderOnly', async () => {
    const { Ticks } = await compile(`
      @Injectable() export class Ticks {
        @WithLock('a') plain() {}
        @LeaderOnly() @WithLock('b') stackedBelow(): void {}
        @WithLock('c') @LeaderOnly() stackedAbove() {}
        @WithLock('d') async fine() {}
      }`);
    const err = await refusal(Ticks!);
    assert.match(err.message, /^3 decorated methods are not async/);
    for (const method of ['plain', 'stackedBelow', 'stackedAbove']) {
      assert.match(err.message, new RegExp(`@WithLock on Ticks\\.${method}\\(\\): the method is not async .*make it async`));
    }
    assert.doesNotMatch(err.message, /Ticks\.fine/);
  });

  it('accepts async methods and non-async methods declared to return a Promise; they run under the lock', async () => {
    const { Jobs } = await compile(`
      @Injectable() export class Jobs {
        @WithLock('a') async native() { return 'native'; }
        @WithLock('b') declared(): Promise<string> { return Promise.resolve('declared'); }
      }`);
    const moduleRef = await bootstrapFake(Jobs!);
    const jobs = moduleRef.get(Jobs!) as { native(): Promise<string>; declared(): Promise<string> };
    assert.equal(await jobs.native(), 'native');
    assert.equal(await jobs.declared(), 'declared');
    await moduleRef.close();
  });

  it('without decorator metadata, is refused at its first call (after running once under the lock), then refused without running', async () => {
    const { Counter } = await compile(`
      @Injectable() export class Counter {
        n = 0;
        @WithLock('count') bump() { return ++this.n; }
      }`, { metadata: false });
    const moduleRef = await bootstrapFake(Counter!);
    const counter = moduleRef.get(Counter!) as { n: number; bump(): Promise<number> };
    await assert.rejects(counter.bump(), (err: InvalidUsageError) =>
      err instanceof InvalidUsageError && /make it async/.test(err.message) && /returned a number/.test(err.message));
    assert.equal(counter.n, 1);
    await assert.rejects(counter.bump(), /an earlier call returned something that is not a Promise \(the method was NOT run\)/);
    assert.equal(counter.n, 1, 'the second call did not run');
    const free = await moduleRef.get(LockService).tryAcquire('count');
    assert.ok(free, 'the lock was released after the refused call');
    await free.release();
    await moduleRef.close();
  });
});

describe('@LeaderOnly under SWC', { skip }, () => {
  after(() => rmSync(FIXTURES, { recursive: true, force: true }));

  it('keeps a sync method sync (0.1 behaviour), and a skipped async method transpiled to a generator still returns a Promise', async () => {
    const { SyncJobs } = await compile(`
      @Injectable() export class SyncJobs {
        @LeaderOnly() tick(): number { return 7; }
      }`);
    // target es2015: async functions become generator helpers (constructor is Function, not AsyncFunction).
    const { OldTarget } = await compile(`
      @Injectable() export class OldTarget {
        @LeaderOnly() async tick() { return 7; }
      }`, { target: 'es2015' });
    const moduleRef = await Test.createTestingModule({
      imports: [CoordinationTestingModule.forRoot()],
      providers: [SyncJobs!, OldTarget!],
    }).compile();
    await moduleRef.init();
    const sync = moduleRef.get(SyncJobs!) as { tick(): unknown };
    const old = moduleRef.get(OldTarget!) as { tick(): unknown };
    assert.equal(sync.tick(), 7, 'a leader runs it synchronously');
    await moduleRef.get(FakeCoordination).depose();
    assert.equal(sync.tick(), undefined, 'skipped synchronously');
    const skipped = old.tick();
    assert.ok(skipped instanceof Promise, 'a skipped async method returns a Promise, whatever it was compiled to');
    assert.equal(await skipped, undefined);
    await moduleRef.close();
  });
});

describe('the refusal on a real etcd', { skip }, () => {
  const etcd = etcdFixture();
  afterEach(() => closeApps());
  after(() => rmSync(FIXTURES, { recursive: true, force: true }));

  it('fails bootstrap before any session: no lease and no key left behind', async () => {
    const { Counter } = await compile(`
      @Injectable() export class Counter {
        @WithLock('count') bump(): number { return 1; }
      }`);
    const namespace = uniqueNamespace('swc');
    class AppModule {}
    Module({ imports: [CoordinationModule.forRoot({ hosts: etcd().endpoint, namespace })], providers: [Counter!] })(AppModule);
    await assert.rejects(
      NestFactory.createApplicationContext(AppModule, { logger: false, abortOnError: false }),
      (err: Error) => err instanceof InvalidUsageError && /make it async/.test(err.message),
    );
    const client = rawClient(etcd().endpoint);
    try {
      assert.deepEqual(await leaseIds(client), [], 'no lease was granted');
      assert.deepEqual(await keysUnder(client, namespace), []);
    } finally {
      client.close();
    }
  });
});
