import 'reflect-metadata';
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ClassProvider, DynamicModule, FactoryProvider, Provider, ValueProvider } from '@nestjs/common';
import { DiscoveryModule, type DiscoveryService } from '@nestjs/core';
import { CoordinationModule } from '../../lib/coordination.module.js';
import { MODULE_OPTIONS_TOKEN } from '../../lib/coordination.module-definition.js';
import { COORDINATION_MODULE_INSTANCE, COORDINATION_MODULE_OPTIONS } from '../../lib/coordination.constants.js';
import { ElectionService } from '../../lib/election/election.service.js';
import { LockService } from '../../lib/lock/lock.service.js';
import { SessionService } from '../../lib/session/session.service.js';
import { InvalidOptionsError, InvalidUsageError } from '../../lib/errors/coordination.errors.js';
import { ModuleMessages } from '../../lib/coordination.messages.js';
import type { CoordinationOptionsFactory } from '../../lib/coordination.options.js';

const find = <T extends Provider>(definition: DynamicModule, token: unknown) =>
  definition.providers!.find((p) => typeof p === 'object' && 'provide' in p && p.provide === token) as T | undefined;

class Config implements CoordinationOptionsFactory {
  createCoordinationOptions() {
    return { namespace: 'from-class/' };
  }
}

describe('CoordinationModule definition (ConfigurableModuleBuilder)', () => {
  it('forRoot: global by default, options under the public token without isGlobal, DiscoveryModule, services exported', () => {
    // The builder would make a random token without optionsInjectionToken; ours is public and stable.
    assert.equal(MODULE_OPTIONS_TOKEN, COORDINATION_MODULE_OPTIONS);
    assert.equal(COORDINATION_MODULE_OPTIONS, Symbol.for('nest-etcd-coordination:options'));
    const definition = CoordinationModule.forRoot({ namespace: 'a/', isGlobal: true });
    assert.equal(definition.module, CoordinationModule);
    assert.equal(definition.global, true);
    assert.deepEqual(find<ValueProvider>(definition, COORDINATION_MODULE_OPTIONS)?.useValue, { namespace: 'a/' });
    assert.ok(definition.imports!.includes(DiscoveryModule));
    for (const service of [SessionService, LockService, ElectionService]) assert.ok(definition.exports!.includes(service));
    assert.equal(CoordinationModule.forRoot().global, true);
    assert.deepEqual(find<ValueProvider>(CoordinationModule.forRoot(), COORDINATION_MODULE_OPTIONS)?.useValue, {});
    assert.equal(CoordinationModule.forRoot({ isGlobal: false }).global, false);
  });

  it('forRootAsync: useFactory with inject and imports, useClass registers the class and calls createCoordinationOptions', async () => {
    class ConfigModule {}
    const TOKEN = Symbol('config');
    const factory = (c: unknown) => c as never;
    const viaFactory = CoordinationModule.forRootAsync({ imports: [ConfigModule], inject: [TOKEN], useFactory: factory, isGlobal: false });
    assert.equal(viaFactory.global, false);
    assert.ok(viaFactory.imports!.includes(ConfigModule) && viaFactory.imports!.includes(DiscoveryModule));
    const optionsProvider = find<FactoryProvider>(viaFactory, COORDINATION_MODULE_OPTIONS)!;
    assert.equal(optionsProvider.useFactory, factory);
    assert.deepEqual(optionsProvider.inject, [TOKEN]);

    const viaClass = CoordinationModule.forRootAsync({ useClass: Config });
    assert.equal(viaClass.global, true);
    assert.equal(find<ClassProvider>(viaClass, Config)?.useClass, Config);
    const classOptions = find<FactoryProvider>(viaClass, COORDINATION_MODULE_OPTIONS)!;
    assert.deepEqual(classOptions.inject, [Config]);
    assert.deepEqual(await classOptions.useFactory(new Config()), { namespace: 'from-class/' });

    const viaExisting = CoordinationModule.forRootAsync({ useExisting: Config });
    assert.equal(find(viaExisting, Config), undefined, 'useExisting must not register the class again');
  });

  it('refuses wrong shapes at once: not exactly one way, non-boolean isGlobal, non-object options', () => {
    const isInvalid = (option: string) => (err: unknown) => err instanceof InvalidOptionsError && err.option === option;
    assert.throws(() => CoordinationModule.forRootAsync({} as never), isInvalid('forRootAsync'));
    assert.throws(() => CoordinationModule.forRootAsync(undefined as never), isInvalid('forRootAsync'));
    assert.throws(() => CoordinationModule.forRootAsync({ useClass: Config, useExisting: Config }), /got useClass, useExisting/);
    assert.throws(() => CoordinationModule.forRootAsync({ useClass: Config, isGlobal: 1 as never }), isInvalid('isGlobal'));
    assert.throws(() => CoordinationModule.forRoot({ isGlobal: 'no' as never }), isInvalid('isGlobal'));
    assert.throws(() => CoordinationModule.forRoot('hosts' as never), isInvalid('options'));
  });

  it('the instance check refuses a second module instance in the same application', () => {
    const check = find<FactoryProvider>(CoordinationModule.forRoot(), COORDINATION_MODULE_INSTANCE)!;
    assert.ok(check, 'every instance registers the marker');
    const discovery = (tokens: unknown[]) => ({ getProviders: () => tokens.map((token) => ({ token })) }) as unknown as DiscoveryService;
    assert.doesNotThrow(() => check.useFactory(discovery([COORDINATION_MODULE_INSTANCE, 'other', LockService])));
    assert.throws(() => check.useFactory(discovery([COORDINATION_MODULE_INSTANCE, COORDINATION_MODULE_INSTANCE])), (err: unknown) => {
      assert.ok(err instanceof InvalidUsageError);
      assert.equal(err.message, ModuleMessages.moduleImportedTwice(2));
      return true;
    });
  });
});
