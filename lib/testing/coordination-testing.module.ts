import { Module, type DynamicModule } from '@nestjs/common';
import { DiscoveryModule } from '@nestjs/core';
import { CoordinationExplorer } from '../decorators/coordination.explorer.js';
import type { EtcdOps } from '../etcd/etcd-ops.js';
import type { EtcdWatches } from '../etcd/watch.js';
import { SessionService } from '../session/session.service.js';
import { LockService } from '../lock/lock.service.js';
import { ElectionService } from '../election/election.service.js';
import { MembershipService } from '../membership/membership.service.js';
import { FakeStore } from './fake-store.js';
import { FakeCluster } from './fake-cluster.js';
import { FakeOps, FakeWatches } from './fake-etcd.js';
import { FakeSessionService } from './fake-session.js';
import { QueueEngine } from '../queue/queue.engine.js';
import { ShutdownDrain } from '../shutdown/shutdown-drain.js';
import { FakeCoordination } from './fake-coordination.js';
import { Instrumentation } from '../observability/instrumentation.js';
import { INSTRUMENTATION } from '../observability/instrumentation.token.js';
import { CoordinationEvents } from '../observability/events.js';
import { resolveTestingOptions, TESTING_OPTIONS, type CoordinationTestingOptions, type ResolvedTestingOptions } from './testing-options.js';

/**
 * An in-memory stand-in for `CoordinationModule` in one process, for unit
 * and integration tests without etcd. It provides the same tokens
 * (`LockService`, `ElectionService`, `SessionService`, `MembershipService`)
 * and binds `@WithLock`/`@LeaderOnly` providers as the real module does.
 *
 * `LockService`, `ElectionService` and `MembershipService` are the library's
 * own classes (same API, validation, errors, re-entry, `leader$` state
 * machine, member records on the session lease); only the etcd
 * layer underneath is replaced: keys live in a per-module store with one
 * revision counter (fencing tokens strictly grow), and turns are decided by
 * the library's own turn policies. Drive it with {@link FakeCoordination}.
 */
@Module({})
export class CoordinationTestingModule {
  /** The module with `options` (all optional; invalid ones throw InvalidOptionsError here). */
  static forRoot(options: CoordinationTestingOptions = {}): DynamicModule {
    const resolved = resolveTestingOptions(options);
    return {
      module: CoordinationTestingModule,
      global: options.isGlobal ?? true,
      imports: [DiscoveryModule],
      providers: [
        { provide: TESTING_OPTIONS, useValue: resolved },
        // A cluster of its own per application unless one is shared (made here, not in forRoot: one value may serve several apps).
        { provide: FakeCluster, useFactory: (o: ResolvedTestingOptions) => o.cluster ?? new FakeCluster(), inject: [TESTING_OPTIONS] },
        { provide: FakeStore, useFactory: (cluster: FakeCluster) => cluster.store, inject: [FakeCluster] },
        {
          provide: SessionService,
          useFactory: (store: FakeStore, o: ResolvedTestingOptions) => new FakeSessionService(store, o.coordination.identity),
          inject: [FakeStore, TESTING_OPTIONS],
        },
        {
          provide: FakeOps,
          useFactory: (store: FakeStore, sessions: FakeSessionService) => new FakeOps(store, sessions.shutdownSignal),
          inject: [FakeStore, SessionService],
        },
        { provide: FakeWatches, useFactory: (store: FakeStore) => new FakeWatches(store), inject: [FakeStore] },
        {
          // The library's own queue engine, over the in-memory store: the same algorithm as with etcd.
          provide: QueueEngine,
          useFactory: (ops: FakeOps, watches: FakeWatches, sessions: SessionService, instrumentation: Instrumentation) =>
            new QueueEngine(ops as unknown as EtcdOps, watches as unknown as EtcdWatches, sessions, instrumentation),
          inject: [FakeOps, FakeWatches, SessionService, INSTRUMENTATION],
        },
        // The same graceful drain on shutdown as CoordinationModule (option shutdownTimeout).
        {
          provide: ShutdownDrain,
          useFactory: (o: ResolvedTestingOptions, instrumentation: Instrumentation) => new ShutdownDrain(o.coordination.shutdownTimeout, instrumentation.logger),
          inject: [TESTING_OPTIONS, INSTRUMENTATION],
        },
        {
          provide: LockService,
          useFactory: (sessions: SessionService, ops: FakeOps, engine: QueueEngine, o: ResolvedTestingOptions, drain: ShutdownDrain) =>
            new LockService(sessions, ops as unknown as EtcdOps, engine, o.coordination, drain),
          inject: [SessionService, FakeOps, QueueEngine, TESTING_OPTIONS, ShutdownDrain],
        },
        {
          provide: ElectionService,
          useFactory: (sessions: SessionService, ops: FakeOps, watches: FakeWatches, engine: QueueEngine, o: ResolvedTestingOptions, drain: ShutdownDrain) =>
            new ElectionService(sessions, ops as unknown as EtcdOps, watches as unknown as EtcdWatches, engine, o.coordination, drain),
          inject: [SessionService, FakeOps, FakeWatches, QueueEngine, TESTING_OPTIONS, ShutdownDrain],
        },
        {
          // The library's own membership: records on the fake session's lease, members$ over the store.
          provide: MembershipService,
          useFactory: (sessions: SessionService, ops: FakeOps, watches: FakeWatches, o: ResolvedTestingOptions, instrumentation: Instrumentation) =>
            new MembershipService(sessions, ops as unknown as EtcdOps, watches as unknown as EtcdWatches, o.coordination, instrumentation),
          inject: [SessionService, FakeOps, FakeWatches, TESTING_OPTIONS, INSTRUMENTATION],
        },
        // Lock and leadership events as with etcd (no metrics, no session events: the fake session is not etcd's).
        { provide: INSTRUMENTATION, useFactory: (o: ResolvedTestingOptions) => Instrumentation.plain(o.coordination.identity, o.coordination.namespace), inject: [TESTING_OPTIONS] },
        CoordinationEvents,
        FakeCoordination,
        CoordinationExplorer,
      ],
      exports: [SessionService, LockService, ElectionService, MembershipService, FakeCoordination, FakeCluster, CoordinationEvents],
    };
  }
}
