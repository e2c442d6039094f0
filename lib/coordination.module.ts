import { Module, type DynamicModule, type Provider } from '@nestjs/common';
import { DiscoveryModule } from '@nestjs/core';
import { CoordinationExplorer } from './decorators/coordination.explorer.js';
import {
  COORDINATION_MODULE_OPTIONS,
  ETCD_CLIENT_HOLDER,
  RESOLVED_COORDINATION_OPTIONS,
} from './coordination.constants.js';
import {
  resolveCoordinationOptions,
  type CoordinationModuleAsyncOptions,
  type CoordinationModuleOptions,
  type CoordinationOptionsFactory,
  type ResolvedCoordinationOptions,
} from './coordination.options.js';
import { createEtcdClientHolder, type EtcdClientHolder } from './etcd/etcd-client.js';
import { EtcdOps } from './etcd/etcd-ops.js';
import { EtcdWatches } from './etcd/watch.js';
import { QueueEngine } from './queue/queue.engine.js';
import { SessionService } from './session/session.service.js';
import { LockService } from './lock/lock.service.js';
import { ElectionService } from './election/election.service.js';
import { InvalidOptionsError } from './errors/coordination.errors.js';
import { Messages } from './coordination.messages.js';

const SERVICES = [SessionService, LockService, ElectionService];

function coreProviders(): Provider[] {
  return [
    {
      provide: RESOLVED_COORDINATION_OPTIONS,
      useFactory: (raw: CoordinationModuleOptions) => resolveCoordinationOptions(raw),
      inject: [COORDINATION_MODULE_OPTIONS],
    },
    {
      provide: ETCD_CLIENT_HOLDER,
      useFactory: (options: ResolvedCoordinationOptions) => createEtcdClientHolder(options),
      inject: [RESOLVED_COORDINATION_OPTIONS],
    },
    {
      provide: EtcdOps,
      useFactory: (holder: EtcdClientHolder, options: ResolvedCoordinationOptions) => new EtcdOps(holder, options.requestTimeout),
      inject: [ETCD_CLIENT_HOLDER, RESOLVED_COORDINATION_OPTIONS],
    },
    { provide: EtcdWatches, useFactory: (holder: EtcdClientHolder) => new EtcdWatches(holder), inject: [ETCD_CLIENT_HOLDER] },
    {
      provide: QueueEngine,
      useFactory: (ops: EtcdOps, watches: EtcdWatches, sessions: SessionService) => new QueueEngine(ops, watches, sessions),
      inject: [EtcdOps, EtcdWatches, SessionService],
    },
    ...SERVICES,
    CoordinationExplorer,
  ];
}

/**
 * Distributed coordination on etcd for a Nest application: one etcd session
 * per application, {@link LockService} and {@link SessionService}. Global
 * unless `isGlobal: false`.
 */
@Module({})
export class CoordinationModule {
  /** Configures the module with static options (all optional). */
  static forRoot(options: CoordinationModuleOptions = {}): DynamicModule {
    return {
      module: CoordinationModule,
      global: options?.isGlobal !== false,
      imports: [DiscoveryModule],
      providers: [{ provide: COORDINATION_MODULE_OPTIONS, useValue: options }, ...coreProviders()],
      exports: SERVICES,
    };
  }

  /** Configures the module from a factory, a class or an existing provider (e.g. ConfigService). */
  static forRootAsync(options: CoordinationModuleAsyncOptions): DynamicModule {
    const ways = (['useFactory', 'useClass', 'useExisting'] as const).filter((k) => options?.[k] !== undefined);
    if (ways.length !== 1) {
      throw new InvalidOptionsError(
        'forRootAsync',
        Messages.invalidOption('forRootAsync', `needs exactly one of useFactory, useClass, useExisting (got ${ways.length ? ways.join(', ') : 'none'})`),
      );
    }
    const providers: Provider[] = [];
    if (options.useFactory) {
      providers.push({ provide: COORDINATION_MODULE_OPTIONS, useFactory: options.useFactory, inject: options.inject ?? [] });
    } else {
      const factoryClass = (options.useClass ?? options.useExisting)!;
      providers.push({
        provide: COORDINATION_MODULE_OPTIONS,
        useFactory: (factory: CoordinationOptionsFactory) => factory.createCoordinationOptions(),
        inject: [factoryClass],
      });
      if (options.useClass) providers.push({ provide: options.useClass, useClass: options.useClass });
    }
    return {
      module: CoordinationModule,
      global: options.isGlobal !== false,
      imports: [DiscoveryModule, ...(options.imports ?? [])],
      providers: [...providers, ...coreProviders()],
      exports: SERVICES,
    };
  }
}
