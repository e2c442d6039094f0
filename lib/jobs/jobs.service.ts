import { Inject, Injectable, Logger } from '@nestjs/common';
import { RESOLVED_COORDINATION_OPTIONS } from '../coordination.constants.js';
import type { ResolvedCoordinationOptions } from '../coordination.options.js';
import { EtcdOps } from '../etcd/etcd-ops.js';
import { validateName } from '../etcd/keys.js';
import { SessionService } from '../session/session.service.js';
import { readJob } from './firing-claims.js';
import { runFiring, type FiringEnvironment, type FiringRequest } from './firing-runner.js';
import { decodeLedger, JobKeys, readOps, type JobRun } from './run-ledger.js';

/**
 * The run ledger of once-per-firing jobs (`@LeaderOnly({ firing: 'once' })`,
 * `@WithLock(name, { firing: 'once' })`), read from etcd: the last runs of a
 * job, from every instance, newest first. Provided by CoordinationModule.
 *
 * The ledger (`<namespace>_coordination:jobs:<job>/runs/<slot>`) is the only
 * thing jobs leave in etcd after shutdown: at most `historySize` records per
 * job, none older than `historyMaxAge`, pruned in the transactions that write it.
 */
@Injectable()
export class JobsService {
  private readonly environment: FiringEnvironment;

  constructor(
    private readonly ops: EtcdOps,
    sessions: SessionService,
    @Inject(RESOLVED_COORDINATION_OPTIONS) private readonly options: ResolvedCoordinationOptions,
  ) {
    this.environment = {
      ops,
      namespace: options.namespace,
      identity: options.identity,
      logger: new Logger('Coordination'),
      leaseId: async (signal) => (await sessions.session(signal)).leaseId,
      queued: new Set(),
      previousCalls: new Map(),
      now: () => Date.now(),
    };
  }

  /** The recorded runs of `job` (default name `Class.method`), newest slot first. */
  async history(job: string): Promise<JobRun[]> {
    validateName('job', job);
    const keys = new JobKeys(this.options.namespace, job);
    const state = await readJob(this.ops, keys, readOps(keys));
    return decodeLedger(job, state.runs, state.claims).map((entry) => entry.run);
  }

  /** The run of the newest recorded slot of `job`, or undefined when it never ran. */
  async lastRun(job: string): Promise<JobRun | undefined> {
    return (await this.history(job))[0];
  }

  /** Runs one firing of a decorated method (internal: called by the decorators). */
  fire(request: FiringRequest): Promise<unknown> {
    const guard = request.guard as { session?: { leaseId: bigint; alive: boolean } };
    // The claim goes on the lease of the leadership / lock it runs under, so it cannot outlive it.
    const environment = guard.session
      ? { ...this.environment, leaseId: async () => guard.session!.leaseId }
      : this.environment;
    return runFiring(environment, request);
  }
}
