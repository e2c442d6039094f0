import 'reflect-metadata';
import { afterEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Inject, Injectable, Module, type Type } from '@nestjs/common';
import { LazyModuleLoader, NestFactory } from '@nestjs/core';
import { Etcd3 } from 'etcd3';
import { etcdFixture, freePorts } from './harness/etcd.js';
import {
  COORDINATION_MODULE_OPTIONS,
  CoordinationModule,
  ElectionService,
  EtcdUnavailableError,
  InvalidOptionsError,
  InvalidUsageError,
  LockService,
  MembershipService,
  WithLock,
  currentLock,
  SessionService,
  type CoordinationModuleOptions,
  type CoordinationOptionsFactory,
} from '../lib/index.js';
import { keysUnder, membersPrefix, uniqueNamespace } from './support/apps.js';

// A feature module that does NOT import CoordinationModule and injects LockService by type
// (no @Inject token): this only works with emitDecoratorMetadata and a global module.
@Injectable()
class FeatureService {
  constructor(readonly locks: LockService, readonly session: SessionService) {}
}
@Module({ providers: [FeatureService], exports: [FeatureService] })
class FeatureModule {}

const CONFIG = Symbol('CONFIG');
function configModule(options: CoordinationModuleOptions) {
  @Injectable()
  class CoordinationConfig implements CoordinationOptionsFactory {
    createCoordinationOptions() {
      return options;
    }
  }
  @Module({ providers: [{ provide: CONFIG, useValue: options }, CoordinationConfig], exports: [CONFIG, CoordinationConfig] })
  class ConfigModule {}
  return { ConfigModule, CoordinationConfig };
}

const opened: Array<{ close(): Promise<void> }> = [];
async function boot(imports: unknown[]): Promise<Awaited<ReturnType<typeof NestFactory.createApplicationContext>>> {
  class Root {}
  Module({ imports: imports as Type[] })(Root);
  const app = await NestFactory.createApplicationContext(Root, { logger: false, abortOnError: false });
  opened.push(app);
  return app;
}

describe('CoordinationModule', () => {
  const etcd = etcdFixture();
  afterEach(async () => {
    await Promise.allSettled(opened.splice(0).map((app) => app.close()));
  });
  const base = () => ({ hosts: etcd().endpoint, namespace: uniqueNamespace('mod'), election: false as const });

  it('forRoot is global by default: a module that does not import it injects LockService by type', async () => {
    const app = await boot([CoordinationModule.forRoot(base()), FeatureModule]);
    const feature = app.get(FeatureService);
    assert.ok(feature.locks instanceof LockService);
    const handle = await feature.locks.acquire('di');
    await handle.release();
    assert.equal(feature.session.state.status, 'alive');
  });

  it('isGlobal: false is not global (the feature module cannot resolve LockService)', async () => {
    await assert.rejects(boot([CoordinationModule.forRoot({ ...base(), isGlobal: false }), FeatureModule]), /LockService|dependencies/);
    // ...but a module that imports it can.
    @Module({ imports: [CoordinationModule.forRoot({ ...base(), isGlobal: false })], providers: [FeatureService] })
    class Importing {}
    const app = await boot([Importing]);
    assert.ok(app.get(FeatureService).locks instanceof LockService);
  });

  it('forRootAsync with useFactory + imports + inject is global too', async () => {
    const { ConfigModule } = configModule(base());
    const app = await boot([
      CoordinationModule.forRootAsync({ imports: [ConfigModule], inject: [CONFIG], useFactory: async (c: CoordinationModuleOptions) => c }),
      FeatureModule,
    ]);
    assert.ok(app.get(FeatureService).locks instanceof LockService);
  });

  it('forRootAsync with useClass and with useExisting; isGlobal: false is honoured', async () => {
    const first = configModule(base());
    const app1 = await boot([CoordinationModule.forRootAsync({ useClass: first.CoordinationConfig }), FeatureModule]);
    assert.ok(app1.get(FeatureService).locks instanceof LockService);
    const second = configModule(base());
    const app2 = await boot([CoordinationModule.forRootAsync({ imports: [second.ConfigModule], useExisting: second.CoordinationConfig }), FeatureModule]);
    assert.ok(app2.get(FeatureService).locks instanceof LockService);
    const third = configModule(base());
    await assert.rejects(
      boot([CoordinationModule.forRootAsync({ imports: [third.ConfigModule], inject: [CONFIG], useFactory: (c: CoordinationModuleOptions) => c, isGlobal: false }), FeatureModule]),
      /LockService|dependencies/,
    );
    assert.throws(() => CoordinationModule.forRootAsync({} as never), InvalidOptionsError);
  });

  it('invalid options fail bootstrap with InvalidOptionsError naming the option, never echoing a password', async () => {
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ sessionTtl: 0 }, /"sessionTtl"/],
      [{ sessionTtl: 2.5 }, /"sessionTtl"/],
      [{ hosts: 'no-port-here' }, /"hosts\[0\]".*no port/],
      [{ hosts: [] }, /"hosts"/],
      [{ namespace: 'bad\u0001ns' }, /"namespace"/],
      [{ identity: '' }, /"identity"/],
      [{ election: 'a/b' }, /"election"/],
      [{ connectTimeout: -5 }, /"connectTimeout"/],
      [{ sesionTtl: 5 }, /"sesionTtl": unknown option/],
      [{ auth: { username: 'u', password: '' } }, /"auth.password"/],
      [{ auth: { username: 42, password: 'hunter2-secret' } }, /"auth.username"/],
      [{ client: new Etcd3({ hosts: '127.0.0.1:1' }), hosts: 'x:1' }, /"hosts": cannot be combined with "client"/],
    ];
    for (const [options, pattern] of cases) {
      await assert.rejects(boot([CoordinationModule.forRoot(options as CoordinationModuleOptions)]), (err: unknown) => {
        assert.ok(err instanceof InvalidOptionsError, `${JSON.stringify(Object.keys(options))}: ${String(err)}`);
        assert.equal(err.code, 'INVALID_OPTIONS');
        assert.match(err.message, pattern);
        assert.doesNotMatch(err.message + String(err.stack), /hunter2-secret/);
        return true;
      });
    }
    (cases.at(-1)![0].client as Etcd3).close();
  });

  it('an unreachable etcd fails bootstrap within the configured time, naming the hosts tried', async () => {
    const [port] = await freePorts(1);
    const started = Date.now();
    await assert.rejects(boot([CoordinationModule.forRoot({ hosts: `127.0.0.1:${port}`, connectTimeout: 1_000, election: false })]), (err: unknown) => {
      assert.ok(err instanceof EtcdUnavailableError, String(err));
      assert.match(err.message, new RegExp(`127\\.0\\.0\\.1:${port}`));
      assert.match(err.message, /1000 ms/);
      return true;
    });
    const elapsed = Date.now() - started;
    assert.ok(elapsed < 4_000, `bootstrap failure took ${elapsed} ms`);
  });

  it('uses a client the user passes in and never closes it', async () => {
    const client = new Etcd3({ hosts: etcd().endpoint });
    try {
      const options = base();
      const app = await boot([CoordinationModule.forRoot({ client, namespace: options.namespace, election: false })]);
      const handle = await app.get(LockService).acquire('byo');
      // Written through the user's client: our member record (membership is on by default) and the lock.
      const member = `${membersPrefix(options.namespace)}${app.get(MembershipService).selfId}`;
      assert.deepEqual((await keysUnder(client, options.namespace)).sort(), [member, handle.key].sort());
      await app.close();
      // Still usable after the app closed: we did not close it.
      await client.put(`${options.namespace}still-open`).value('yes');
      assert.equal(await client.get(`${options.namespace}still-open`).string(), 'yes');
      await client.delete().key(`${options.namespace}still-open`);
      assert.deepEqual(await keysUnder(client, options.namespace), []);
    } finally {
      client.close();
    }
  });

  it('reads ETCD_HOSTS when no hosts are given', async () => {
    const saved = process.env.ETCD_HOSTS;
    process.env.ETCD_HOSTS = etcd().endpoint;
    try {
      const app = await boot([CoordinationModule.forRoot({ namespace: uniqueNamespace('env'), election: false })]);
      assert.equal(app.get(SessionService).state.status, 'alive');
    } finally {
      if (saved === undefined) delete process.env.ETCD_HOSTS;
      else process.env.ETCD_HOSTS = saved;
    }
  });

  // --- ConfigurableModuleBuilder (issue 11.4) and one instance per application (issue 12.5) ---

  const leaseCount = async () => {
    const client = new Etcd3({ hosts: etcd().endpoint });
    try {
      return (await client.leaseClient.leaseLeases({})).leases.length;
    } finally {
      client.close();
    }
  };
  const assertImportedTwice = (err: unknown) => {
    assert.ok(err instanceof InvalidUsageError, String(err));
    assert.equal(err.code, 'INVALID_USAGE');
    assert.match(err.message, /CoordinationModule is imported twice/);
    assert.match(err.message, /once, in the root module: it is global/);
    assert.match(err.message, /forRootAsync/);
    return true;
  };

  it('the options token is the public Symbol.for token and holds the options without the isGlobal extra', async () => {
    assert.equal(COORDINATION_MODULE_OPTIONS, Symbol.for('nest-etcd-coordination:options'));
    const options = { ...base(), isGlobal: true };
    const app = await boot([CoordinationModule.forRoot(options)]);
    const { isGlobal: _omitted, ...rest } = options;
    assert.deepEqual(app.get(COORDINATION_MODULE_OPTIONS), rest);
    const definition = CoordinationModule.forRoot();
    assert.equal(definition.module, CoordinationModule);
    assert.equal(definition.global, true);
    assert.equal(CoordinationModule.forRoot({ isGlobal: false }).global, false);
    assert.equal(CoordinationModule.forRootAsync({ useFactory: () => ({}), isGlobal: false }).global, false);
    assert.equal(CoordinationModule.forRootAsync({ useFactory: () => ({}) }).global, true);
    assert.throws(() => CoordinationModule.forRoot({ isGlobal: 'yes' as never }), (err: unknown) =>
      err instanceof InvalidOptionsError && err.option === 'isGlobal');
    assert.throws(() => CoordinationModule.forRootAsync({ useFactory: () => ({}), useClass: class {} as never }), /exactly one of useFactory, useClass, useExisting \(got useFactory, useClass\)/);
  });

  it('forRootAsync with useClass and isGlobal: false is not global, but the importing module gets LockService', async () => {
    const { CoordinationConfig } = configModule(base());
    await assert.rejects(boot([CoordinationModule.forRootAsync({ useClass: CoordinationConfig, isGlobal: false }), FeatureModule]), /LockService|dependencies/);
    @Module({ imports: [CoordinationModule.forRootAsync({ useClass: configModule(base()).CoordinationConfig, isGlobal: false })], providers: [FeatureService] })
    class Importing {}
    const app = await boot([Importing]);
    assert.ok(app.get(FeatureService).locks instanceof LockService);
  });

  it('two forRoot imports in one application fail bootstrap with InvalidUsageError before any etcd session', async () => {
    const before = await leaseCount();
    @Module({ imports: [CoordinationModule.forRoot({ ...base(), isGlobal: false })], providers: [FeatureService] })
    class SecondImport {}
    await assert.rejects(boot([CoordinationModule.forRoot(base()), SecondImport]), assertImportedTwice);
    await assert.rejects(boot([CoordinationModule.forRoot(base()), CoordinationModule.forRoot(base())]), assertImportedTwice);
    assert.equal(await leaseCount(), before, 'a duplicate module must not create a lease');
  });

  it('forRoot in the root module plus forRootAsync in a feature module is refused at once, before connecting', async () => {
    const [port] = await freePorts(1);
    // Nothing listens there: a session attempt would take connectTimeout and fail with EtcdUnavailableError.
    const unreachable = { hosts: `127.0.0.1:${port}`, connectTimeout: 3_000, election: false as const };
    @Module({ imports: [CoordinationModule.forRootAsync({ useFactory: async () => ({ ...unreachable, namespace: 'feature/' }) })] })
    class Feature {}
    const started = Date.now();
    await assert.rejects(boot([CoordinationModule.forRoot({ ...unreachable, namespace: 'root/' }), Feature]), assertImportedTwice);
    const elapsed = Date.now() - started;
    assert.ok(elapsed < 1_500, `refusal took ${elapsed} ms`);
  });

  it('a lazily loaded module with its own CoordinationModule is refused too, and the running one keeps working', async () => {
    const app = await boot([CoordinationModule.forRoot(base())]);
    const before = await leaseCount();
    @Module({ imports: [CoordinationModule.forRoot({ ...base(), isGlobal: false })] })
    class LazyFeature {}
    await assert.rejects(app.get(LazyModuleLoader).load(() => LazyFeature), assertImportedTwice);
    assert.equal(await leaseCount(), before);
    const handle = await app.get(LockService).acquire('after-lazy');
    await handle.release();
  });

  it('one forRoot value imported by two modules is one instance with one session', async () => {
    const before = await leaseCount();
    const shared = CoordinationModule.forRoot({ ...base(), election: 'leader', isGlobal: false });
    @Module({ imports: [shared], providers: [FeatureService], exports: [FeatureService] })
    class First {}
    @Module({ imports: [shared] })
    class Second {}
    const app = await boot([First, Second]);
    assert.equal(app.get(FeatureService).locks, app.get(LockService));
    assert.equal(await leaseCount(), before + 1);
    const elections = app.get(ElectionService);
    assert.ok(elections instanceof ElectionService);
  });

  it('decorated providers are bound with forRootAsync too (the explorer is a core provider)', async () => {
    @Injectable()
    class Jobs {
      @WithLock('module-job')
      async run(): Promise<string | undefined> {
        return currentLock()?.name;
      }
    }
    const { ConfigModule } = configModule(base());
    @Module({ providers: [Jobs] })
    class JobsModule {}
    const app = await boot([CoordinationModule.forRootAsync({ imports: [ConfigModule], inject: [CONFIG], useFactory: (c: CoordinationModuleOptions) => c }), JobsModule]);
    assert.equal(await app.get(Jobs).run(), 'module-job');
  });

  it('two separate applications in one process each have their own module and session', async () => {
    const before = await leaseCount();
    const app1 = await boot([CoordinationModule.forRoot(base()), FeatureModule]);
    const app2 = await boot([CoordinationModule.forRoot(base()), FeatureModule]);
    assert.notEqual(app1.get(LockService), app2.get(LockService));
    const [h1, h2] = [await app1.get(LockService).acquire('per-app'), await app2.get(LockService).acquire('per-app')];
    await Promise.all([h1.release(), h2.release()]);
    assert.equal(await leaseCount(), before + 2);
  });
});
