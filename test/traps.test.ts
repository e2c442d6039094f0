// Silent traps users fell into with 0.1; each case here failed (or said the wrong thing) there.
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { cpSync } from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Injectable, Module, type LoggerService, type Type } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Interval, ScheduleModule, Timeout } from '@nestjs/schedule';
import {
  CoordinationModule,
  ElectionService,
  EtcdUnavailableError,
  LockService,
  SessionService,
  LeaderOnly,
  ModuleNotInitializedError,
  WithLock,
  type LeaderState,
} from '../lib/index.js';
import { etcdFixture } from './harness/etcd.js';
import { startProxy } from './harness/proxy.js';
import { closeApps, createApp, delay, eventually, keysUnder, rawClient, uniqueNamespace } from './support/apps.js';

const etcd = etcdFixture();

class CapturingLogger implements LoggerService {
  readonly warnings: string[] = [];
  log(): void {}
  error(): void {}
  debug(): void {}
  verbose(): void {}
  warn(message: unknown): void {
    this.warnings.push(String(message));
  }
}

describe('no silent traps (real etcd)', () => {
  after(() => closeApps());

  it('@Timeout(0) @LeaderOnly() on the only instance runs, with ScheduleModule imported before CoordinationModule', async () => {
    const runs: number[] = [];
    @Injectable()
    class StartupJob {
      @Timeout(0)
      @LeaderOnly()
      async warmUp() {
        runs.push(Date.now());
      }
    }
    class AppModule {}
    Module({
      imports: [ScheduleModule.forRoot(), CoordinationModule.forRoot({ hosts: etcd().endpoint, namespace: uniqueNamespace('startup'), election: 'leader' })],
      providers: [StartupJob],
    })(AppModule);
    const app = await NestFactory.createApplicationContext(AppModule as Type, { logger: ['error'] });
    try {
      await app.init();
      await eventually(() => runs.length > 0, 3_000, 'the startup job ran on the leader');
      assert.equal(runs.length, 1);
    } finally {
      await app.close();
    }
  });

  it('leader$ never says "not the leader; the leader is us", across 5 promotions', async () => {
    const ns = uniqueNamespace('states');
    const [a, b] = await Promise.all(['a', 'b'].map((identity) => createApp({ hosts: etcd().endpoint, namespace: ns, identity, election: 'leader', sessionTtl: 3 })));
    const seen: Array<{ who: string; state: LeaderState }> = [];
    for (const [who, app] of [['a', a!], ['b', b!]] as const) {
      app.get(ElectionService).leader$.subscribe((state) => seen.push({ who, state }));
    }
    const client = rawClient(etcd().endpoint);
    for (let round = 0; round < 5; round++) {
      const leader = [a!, b!].find((app) => app.get(ElectionService).isLeader());
      await eventually(() => [a!, b!].some((app) => app.get(ElectionService).isLeader()), 10_000, 'someone leads');
      // The one that resigned last rejoins in the background: wait for its candidate key, or the
      // leader would resign with nobody behind it and simply lead again.
      await eventually(async () => (await keysUnder(client, `${ns}leader/`)).length === 2, 10_000, 'both candidates queued');
      const current = leader ?? [a!, b!].find((app) => app.get(ElectionService).isLeader())!;
      const next = current === a ? b! : a!;
      await current.get(ElectionService).resign();
      await eventually(() => next.get(ElectionService).isLeader(), 10_000, `promotion ${round}`);
      await delay(50);
    }
    client.close();
    const contradictions = seen.filter(({ who, state }) => !state.isLeader && state.leader?.identity === who);
    assert.deepEqual(contradictions, [], 'no state names ourselves as leader while saying we are not');
    assert.ok(seen.filter((s) => s.state.isLeader).length >= 5, 'the promotions were seen');
  });

  it('an instance Nest did not create is told so (not "CoordinationModule is not initialized")', async () => {
    @Injectable()
    class Reports {
      @WithLock('reports')
      async build() {
        return 'built';
      }
    }
    await createApp({ hosts: etcd().endpoint, namespace: uniqueNamespace('stray'), providers: [] });
    const stray = new Reports();
    await assert.rejects(stray.build(), (err: unknown) => err instanceof ModuleNotInitializedError && /not a provider/.test(err.message) && /NOT run/.test(err.message));
  });

  it('a class decorated by a second copy of the library is told so', async () => {
    // A second copy of the library's modules, as jest.resetModules() makes: the compiled lib/ copied
    // next to itself (inside build/, so its own imports still resolve from node_modules).
    const here = path.dirname(fileURLToPath(import.meta.url));
    const copyDir = path.join(here, '..', 'second-copy', 'lib');
    cpSync(path.join(here, '..', 'lib'), copyDir, { recursive: true });
    const copy = (await import(pathToFileURL(path.join(copyDir, 'index.js')).href)) as typeof import('../lib/index.js');
    @Injectable()
    class Jobs {
      @copy.LeaderOnly()
      async run() {
        return 'ran';
      }
    }
    const app = await createApp({ hosts: etcd().endpoint, namespace: uniqueNamespace('copies'), providers: [Jobs] });
    await assert.rejects(app.get(Jobs).run(), (err: unknown) => err instanceof copy.ModuleNotInitializedError && /two copies/.test(err.message));
  });

  it('a lock wait during an etcd outage ends in EtcdUnavailableError, not LockTimeoutError ("held elsewhere")', async () => {
    const proxy = await startProxy(etcd().endpoint);
    try {
      const app = await createApp({ hosts: proxy.endpoint, namespace: uniqueNamespace('outage'), sessionTtl: 2, requestTimeout: 1_000 });
      const sessions = app.get(SessionService);
      proxy.setMode({ kind: 'blackhole' });
      await eventually(() => sessions.state.status === 'lost', 10_000, 'session lost');
      await assert.rejects(app.get(LockService).acquire('x', { timeout: 1_500 }), (err: unknown) => err instanceof EtcdUnavailableError && err.code === 'ETCD_UNAVAILABLE');
      await assert.rejects(app.get(LockService).withLock('x', async () => 'ran', { timeout: 1_500 }), EtcdUnavailableError);
      proxy.setMode({ kind: 'reset' });
      await delay(100);
      proxy.setMode({ kind: 'pass' });
      await app.close();
    } finally {
      await proxy.close();
    }
  });

  it('guarded scheduled jobs without ScheduleModule get a warning at bootstrap', async () => {
    @Injectable()
    class Ticks {
      @Interval(60_000)
      @LeaderOnly()
      async tick() {}
    }
    const logger = new CapturingLogger();
    class AppModule {}
    Module({ imports: [CoordinationModule.forRoot({ hosts: etcd().endpoint, namespace: uniqueNamespace('nosched'), election: 'leader' })], providers: [Ticks] })(AppModule);
    const app = await NestFactory.createApplicationContext(AppModule as Type, { logger });
    try {
      await app.init();
      const warning = logger.warnings.find((w) => /ScheduleModule/.test(w));
      assert.ok(warning, `warnings: ${JSON.stringify(logger.warnings)}`);
      assert.match(warning, /Ticks\.tick\(\)/);
    } finally {
      await app.close();
    }
  });
});
