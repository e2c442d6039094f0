// The one place the sample app touches the library: its public entry point.
// In an application of your own this line reads `from 'nest-etcd-coordination'`;
// in this repository the package entry is lib/index.ts. Everything else in
// sample-app/ imports from here, never from a file inside lib/.
export {
  CoordinationError,
  CoordinationModule,
  ElectionService,
  type HandoverResult,
  LockService,
  SessionService,
  ShutdownError,
  LeaderOnly,
  WithLock,
  currentLeadership,
  currentLock,
  type LeaderState,
  ForEachOwnedShard,
  MembershipService,
  ShardService,
  type ShardContext,
  type ShardGroup,
} from '../lib/index.js';
// Once-per-firing jobs and their run ledger (README "Once per firing").
export { JobsService, currentFiring, type JobRun as LedgerRun } from '../lib/index.js';
