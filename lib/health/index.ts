// Entry point of `nest-etcd-coordination/health`: needs the optional peer
// dependency @nestjs/terminus, which the main entry never loads.
export {
  CoordinationHealthIndicator,
  FIRST_LEADER_WAIT_MS,
  type CoordinationHealthOptions,
  type CoordinationHealthDetails,
  type CoordinationHealthElectionDetails,
} from './coordination.health.js';
