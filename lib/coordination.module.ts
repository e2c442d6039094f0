import { Module, type DynamicModule, type Provider } from '@nestjs/common';
import { DiscoveryModule, DiscoveryService } from '@nestjs/core';
import { CoordinationExplorer } from './decorators/coordination.explorer.js';
import {
  COORDINATION_MODULE_INSTANCE,
  COORDINATION_MODULE_OPTIONS,
  ETCD_CLIENT_HOLDER,
  RESOLVED_COORDINATION_OPTIONS,
} from './coordination.constants.js';
import { CoordinationConfigurableModule } from './coordination.module-definition.js';
import {
  resolveCoordinationOptions,
  type CoordinationModuleAsyncOptions,
  type CoordinationModuleOptions,
  type ResolvedCoordinationOptions,
} from './coordination.options.js';
import { createEtcdClientHolder, type EtcdClientHolder } from './etcd/etcd-client.js';
import { EtcdOps } from './etcd/etcd-ops.js';
import { EtcdWatches } from './etcd/watch.js';
import { HistoryGuard } from './etcd/history-guard.js';
import { QueueEngine } from './queue/queue.engine.js';
import { SessionService } from './session/session.service.js';
import { LockService } from './lock/lock.service.js';
import { ElectionService } from './election/election.service.js';
import { MembershipService } from './membership/membership.service.js';
import { ShardService } from './shards/shard.service.js';
import { JobsService } from './jobs/jobs.service.js';
import { InvalidOptionsError, InvalidUsageError } from './errors/coordination.errors.js';
import { ShutdownDrain } from './shutdown/shutdown-drain.js';
import { Messages, ModuleMessages } from './coordination.messages.js';
import { Instrumentation } from './observability/instrumentation.js';
import { INSTRUMENTATION } from './observability/instrumentation.token.js';
import { CoordinationEvents } from './observability/events.js';

/** What the module exports (and, being global by default, offers to every module). */
const SERVICES = [SessionService, LockService, ElectionService, CoordinationEvents, MembershipService, ShardService, JobsService];

/** Marker of one module instance; its value is irrelevant, its existence is counted. */
interface ModuleInstanceMarker {
  readonly instances: number;
}

/**
 * Refuses a second CoordinationModule in one application: each instance
 * would open its own session, and `ElectionService.isLeader()` could then
 * follow one while `@LeaderOnly` follows the other.
 *
 * Runs while the providers are being created, before any lifecycle hook (so
 * before `SessionService.onModuleInit` opens a session) and before the etcd
 * client exists: everything else of the module depends on it. Nest scans the
 * whole module graph before creating any provider, so every instance's
 * marker is visible whichever instance is created first. The count is per
 * application (DiscoveryService reads the application's own container), so
 * separate applications in one process are independent. Importing the SAME
 * dynamic module value from several modules is fine: Nest makes it one instance.
 */
function assertSingleModuleInstance(discovery: DiscoveryService): ModuleInstanceMarker {
  const instances = discovery.getProviders().filter((wrapper) => wrapper.token === COORDINATION_MODULE_INSTANCE).length;
  if (instances > 1) throw new InvalidUsageError(ModuleMessages.moduleImportedTwice(instances));
  return { instances };
}

/**
 * The providers of every CoordinationModule instance, in one list (add new
 * core providers here). Expects `COORDINATION_MODULE_OPTIONS` from the
 * builder's forRoot/forRootAsync.
 */
function coreProviders(): Provider[] {
  return [
    {
      provide: COORDINATION_MODULE_INSTANCE,
      useFactory: assertSingleModuleInstance,
      inject: [DiscoveryService],
    },
    {
      provide: RESOLVED_COORDINATION_OPTIONS,
      // Depends on the instance check so that nothing (not even the etcd client) is made for a duplicate.
      useFactory: (raw: CoordinationModuleOptions, _single: ModuleInstanceMarker) => resolveCoordinationOptions(raw),
      inject: [COORDINATION_MODULE_OPTIONS, COORDINATION_MODULE_INSTANCE],
    },
    {
      provide: ETCD_CLIENT_HOLDER,
      useFactory: (options: ResolvedCoordinationOptions) => createEtcdClientHolder(options),
      inject: [RESOLVED_COORDINATION_OPTIONS],
    },
    {
      provide: INSTRUMENTATION,
      useFactory: (options: ResolvedCoordinationOptions) => Instrumentation.create(options),
      inject: [RESOLVED_COORDINATION_OPTIONS],
    },
    {
      provide: EtcdOps,
      useFactory: (holder: EtcdClientHolder, options: ResolvedCoordinationOptions, history: HistoryGuard, instrumentation: Instrumentation) =>
        new EtcdOps(holder, options.requestTimeout, history, options.fencingEpoch, instrumentation),
      inject: [ETCD_CLIENT_HOLDER, RESOLVED_COORDINATION_OPTIONS, HistoryGuard, INSTRUMENTATION],
    },
    { provide: HistoryGuard, useFactory: () => new HistoryGuard() },
    { provide: EtcdWatches, useFactory: (holder: EtcdClientHolder) => new EtcdWatches(holder), inject: [ETCD_CLIENT_HOLDER] },
    {
      provide: QueueEngine,
      useFactory: (ops: EtcdOps, watches: EtcdWatches, sessions: SessionService, instrumentation: Instrumentation, options: ResolvedCoordinationOptions) =>
        new QueueEngine(ops, watches, sessions, instrumentation, options.namespace),
      inject: [EtcdOps, EtcdWatches, SessionService, INSTRUMENTATION, RESOLVED_COORDINATION_OPTIONS],
    },
    // The graceful drain on shutdown: LockService and ElectionService run it (see their shutdown hooks).
    {
      provide: ShutdownDrain,
      useFactory: (options: ResolvedCoordinationOptions, instrumentation: Instrumentation) => new ShutdownDrain(options.shutdownTimeout, instrumentation.logger),
      inject: [RESOLVED_COORDINATION_OPTIONS, INSTRUMENTATION],
    },
    ...SERVICES,
    CoordinationExplorer,
  ];
}

/** Adds what every instance needs to the definition the builder generated. */
function withCoreProviders(definition: DynamicModule): DynamicModule {
  return {
    ...definition,
    imports: [DiscoveryModule, ...(definition.imports ?? [])],
    providers: [...(definition.providers ?? []), ...coreProviders()],
    exports: [...(definition.exports ?? []), ...SERVICES],
  };
}

function checkIsGlobal(value: unknown): void {
  if (value !== undefined && typeof value !== 'boolean') {
    throw new InvalidOptionsError('isGlobal', Messages.invalidOption('isGlobal', ModuleMessages.isGlobalNotBoolean(value)));
  }
}

/**
 * Distributed coordination on etcd for a Nest application: one etcd session
 * per application, {@link LockService}, {@link ElectionService} and
 * {@link SessionService}. Global unless `isGlobal: false`. Import it once per
 * application (a second instance fails bootstrap with `InvalidUsageError`).
 */
@Module({})
export class CoordinationModule extends CoordinationConfigurableModule {
  /**
   * Configures the module with static options (all optional). Invalid
   * options fail bootstrap with `InvalidOptionsError`; a non-boolean
   * `isGlobal` or a non-object throws here, since it shapes the module itself.
   */
  static override forRoot(options: CoordinationModuleOptions = {}): DynamicModule {
    options ??= {};
    if (typeof options !== 'object' || Array.isArray(options)) {
      throw new InvalidOptionsError('options', Messages.invalidOption('options', ModuleMessages.optionsNotObject()));
    }
    checkIsGlobal(options.isGlobal);
    return withCoreProviders(super.forRoot(options));
  }

  /**
   * Configures the module from a factory, a class or an existing provider
   * (e.g. ConfigService): exactly one of `useFactory`, `useClass`, `useExisting`.
   */
  static override forRootAsync(options: CoordinationModuleAsyncOptions): DynamicModule {
    const ways = (['useFactory', 'useClass', 'useExisting'] as const).filter((k) => options?.[k] !== undefined);
    if (ways.length !== 1) {
      throw new InvalidOptionsError('forRootAsync', Messages.invalidOption('forRootAsync', ModuleMessages.forRootAsyncWays(ways)));
    }
    checkIsGlobal(options.isGlobal);
    return withCoreProviders(super.forRootAsync(options));
  }
}
