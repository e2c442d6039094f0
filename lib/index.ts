export { CoordinationModule } from './coordination.module.js';
export type {
  CoordinationModuleOptions,
  CoordinationModuleAsyncOptions,
  CoordinationOptionsFactory,
} from './coordination.options.js';
export { COORDINATION_MODULE_OPTIONS } from './coordination.constants.js';
export { SessionService, type SessionState } from './session/session.service.js';
export {
  LockService,
  type WithLockOptions,
  type OnLocked,
  type LockHolder,
  type HeldLockInfo,
  type ReadWriteLock,
  type ForceReleaseOptions,
  type ForcedRelease,
} from './lock/lock.service.js';
export type { AcquireOptions } from './queue/queue-spec.js';
export type { CoordinationHold, HoldMode } from './queue/hold.js';
export type { Lockable, RunOptions, KeyHolder } from './queue/lockable.js';
export type { Semaphore, WithPermitOptions } from './lock/semaphore.js';
export type { LockHandle, LockMode } from './lock/lock-handle.js';
export { ElectionService, type CampaignOptions, type ResignOptions } from './election/election.service.js';
export type { LeadershipContext, LeaderInfo, LeaderState } from './election/leadership.js';
export type { HandoverOptions, HandoverResult } from './election/handover.js';
export { currentLock, currentLeadership } from './context/coordination.context.js';
export * from './errors/coordination.errors.js';
export { WithLock, type WithLockDecoratorOptions } from './decorators/with-lock.decorator.js';
export { LeaderOnly } from './decorators/leader-only.decorator.js';
export {
  CoordinationEvents,
  type CoordinationEvent,
  type CoordinationEventBase,
  type CoordinationKind,
  type AcquireOutcome,
  type EventError,
  type EtcdOperation,
  type LockAcquiredEvent,
  type LockNotAcquiredEvent,
  type LockReleasedEvent,
  type LockLostEvent,
  type SessionCreatedEvent,
  type SessionLostEvent,
  type LeadershipGainedEvent,
  type LeadershipLostEvent,
  type EtcdErrorEvent,
  type EtcdOutageStartedEvent,
  type EtcdOutageEndedEvent,
} from './observability/events.js';
export type { CoordinationLogLevel } from './observability/logger.js';
export type { MeterProviderLike } from './observability/metrics.js';
export { MembershipService, type MemberInfo } from './membership/membership.service.js';
export { ShardService, type ShardGroupOptions } from './shards/shard.service.js';
export { ShardGroup, type ShardOwner, type ShardGroupStats } from './shards/shard-group.js';
export { currentShard, type ShardContext } from './shards/shard-context.js';
export { shardOfKey } from './shards/shard-hash.js';
export { ForEachOwnedShard, ShardOwned } from './shards/for-each-owned-shard.decorator.js';
// Once-per-firing scheduled jobs (issue 13): README "Once per firing: scheduled jobs across the cluster".
export type { LeaderOnlyOptions, LeaderOnlyDecorator } from './decorators/leader-only.decorator.js';
export { JobsService } from './jobs/jobs.service.js';
export { currentFiring, type Firing } from './jobs/firing-context.js';
export type { FiringOptions, FiringGuarantee, MisfirePolicy, OverlapPolicy } from './jobs/firing-options.js';
export type { JobRun, RunOutcome } from './jobs/run-ledger.js';
