/**
 * `nest-etcd-coordination/testing`: test your application's coordination
 * without etcd (`CoordinationTestingModule`, `FakeCoordination`), or against
 * a throwaway real etcd (`startEtcd`). Not imported by the main entry.
 */
export { CoordinationTestingModule } from './coordination-testing.module.js';
export type { CoordinationTestingOptions } from './testing-options.js';
export { FakeCoordination, type DeposeOptions } from './fake-coordination.js';
export { FakeCluster } from './fake-cluster.js';
export { startEtcd, type StartEtcdOptions, type ThrowawayEtcd } from './start-etcd.js';
