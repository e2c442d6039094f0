import { performance } from 'node:perf_hooks';
import { Injectable, type OnModuleDestroy } from '@nestjs/common';
import { HealthIndicatorService, type HealthIndicatorResult } from '@nestjs/terminus';
import type { Subscription } from 'rxjs';
import { SessionService, type SessionState } from '../session/session.service.js';
import { ElectionService } from '../election/election.service.js';
import type { LeaderInfo } from '../election/leadership.js';
import { HealthMessages } from '../coordination.messages.js';

/** Options of {@link CoordinationHealthIndicator.isHealthy}. */
export interface CoordinationHealthOptions {
  /**
   * The election whose leadership is reported in the details: the default
   * election when omitted, another election by name, or `false` for none.
   * Leadership is a detail only: a follower is as healthy as the leader.
   * A named election is observed (one etcd watch) from its first check until
   * shutdown, so pass a fixed name, not one that changes from call to call.
   */
  election?: string | false;
}

/** Leadership of one election, as reported in the health details. */
export type CoordinationHealthElectionDetails = {
  /** The election's name. */
  name: string;
  /** Whether this instance leads it. */
  isLeader: boolean;
  /**
   * The leader's identity (its proclaimed value), `null` when nobody leads;
   * absent while not known yet (the first check of a named election waits
   * at most {@link FIRST_LEADER_WAIT_MS} for it).
   */
  leader?: string | null;
};

/** What the coordination check reports next to `status` (never a secret). */
export type CoordinationHealthDetails = {
  /** The etcd session's status: `alive` is up, anything else down. */
  session: SessionState['status'];
  /** Why the check is down (only when down). */
  message?: string;
  /** Lease id of the current (or last) session, decimal, as a string (it exceeds 2^53). */
  leaseId?: string;
  /** The same lease id in hex, as `etcdctl lease list` and our keys show it. */
  leaseHex?: string;
  /** Granted TTL of the lease in seconds. */
  ttlSeconds?: number;
  /** When the session entered this status (ISO 8601). */
  since: string;
  /** Leadership of the default (or the requested) election; absent when there is none. */
  election?: CoordinationHealthElectionDetails;
};

/** How long the first check of a named election waits to learn its leader (ms). */
export const FIRST_LEADER_WAIT_MS = 1_000;

/**
 * Least time between two background session re-creations started by health
 * checks (ms): a probe hammering the endpoint while etcd is down must not
 * turn into back-to-back lease grants.
 */
const MIN_RECREATE_INTERVAL_MS = 1_000;

interface LeaderObservation {
  /** undefined until the first answer. */
  leader: LeaderInfo | null | undefined;
  first: Promise<void>;
  subscription?: Subscription;
}

/**
 * Terminus health indicator for the coordination session: **up** while the
 * etcd session (lease) is alive, **down** while connecting, after the
 * session was lost (at the latest at its TTL deadline) and after shutdown.
 * Add it to the providers of the module that holds your health controller
 * (next to `TerminusModule`) and call it from `HealthCheckService.check`:
 *
 * ```ts
 * this.health.check([() => this.coordination.isHealthy('coordination')]);
 * ```
 *
 * When the session is lost and nothing else re-creates it (no default
 * election, no lock calls), a check that finds it lost starts one bounded
 * session creation in the background (never more than one at a time), so
 * the check turns up again once etcd answers. Meant for readiness probes,
 * not liveness: a lost session is not a reason to restart the process.
 */
@Injectable()
export class CoordinationHealthIndicator implements OnModuleDestroy {
  private readonly shutdown = new AbortController();
  private recreating?: Promise<void>;
  private lastRecreateAt = Number.NEGATIVE_INFINITY;
  private readonly observations = new Map<string, LeaderObservation>();

  constructor(
    private readonly healthIndicatorService: HealthIndicatorService,
    private readonly sessions: SessionService,
    private readonly elections: ElectionService,
  ) {}

  /**
   * The coordination check under `key`: up with the session's details while
   * it is alive, down with the reason otherwise. Never throws to report
   * health (an invalid election name is a usage error and does throw).
   */
  async isHealthy<const Key extends string>(
    key: Key,
    options: CoordinationHealthOptions = {},
  ): Promise<HealthIndicatorResult<Key, 'up' | 'down', CoordinationHealthDetails>> {
    const indicator = this.healthIndicatorService.check(key);
    const election = await this.electionDetails(options.election);
    // Read after any wait above: the session state must be the latest.
    const state = this.sessions.state;
    const details: CoordinationHealthDetails = {
      session: state.status,
      ...(state.leaseId !== undefined && { leaseId: state.leaseId.toString(), leaseHex: state.leaseHex }),
      ...(state.ttlSeconds !== undefined && { ttlSeconds: state.ttlSeconds }),
      since: state.since.toISOString(),
      ...(election && { election }),
    };
    if (this.shutdown.signal.aborted) {
      return indicator.down({ ...details, message: state.status === 'closed' ? HealthMessages.closed() : HealthMessages.shuttingDown() });
    }
    switch (state.status) {
      case 'alive':
        return indicator.up(details);
      case 'connecting':
        return indicator.down({ ...details, message: HealthMessages.connecting() });
      case 'lost':
        this.recreateSessionInBackground();
        return indicator.down({ ...details, message: HealthMessages.lost(state.reason) });
      case 'closed':
        return indicator.down({ ...details, message: HealthMessages.closed() });
    }
  }

  /**
   * Asks SessionService for a session without waiting for it. SessionService
   * bounds the attempt by `connectTimeout` and shares it with every other
   * caller (an election re-campaigning, a lock): this only makes sure that
   * someone asks.
   */
  private recreateSessionInBackground(): void {
    if (this.recreating || this.shutdown.signal.aborted) return;
    const now = performance.now();
    if (now - this.lastRecreateAt < MIN_RECREATE_INTERVAL_MS) return;
    this.lastRecreateAt = now;
    // Failures are what the next check reports (still lost): nothing to do with them here.
    // Bounded like bootstrap (connectTimeout): a check asks once, the next check may ask again.
    this.recreating = this.sessions.session(this.shutdown.signal, { patienceMs: this.sessions.connectTimeout }).then(
      () => undefined,
      () => undefined,
    ).finally(() => {
      this.recreating = undefined;
    });
  }

  private async electionDetails(option: string | false | undefined): Promise<CoordinationHealthElectionDetails | undefined> {
    if (option === false) return undefined;
    const defaultElection = this.elections.defaultElection;
    const name = option ?? defaultElection;
    if (name === undefined) return undefined;
    if (name === defaultElection) {
      const { isLeader, leader } = this.elections.currentState;
      return { name, isLeader, leader: leader?.value ?? null };
    }
    const isLeader = this.elections.isLeader(name);
    const observation = this.observe(name);
    if (observation && observation.leader === undefined) await waitAtMost(observation.first, FIRST_LEADER_WAIT_MS);
    const leader = observation?.leader;
    if (leader === undefined) return { name, isLeader };
    const ours = this.elections.leadership(name);
    // The watch may lag our own win by a moment: then we, not the old leader, lead.
    if (isLeader && ours && leader?.key !== ours.key) return { name, isLeader, leader: this.sessions.identity };
    return { name, isLeader, leader: leader?.value ?? null };
  }

  /** Follows the leader of a named election from its first check until shutdown. */
  private observe(name: string): LeaderObservation | undefined {
    const known = this.observations.get(name);
    if (known || this.shutdown.signal.aborted) return known;
    let answered!: () => void;
    const observation: LeaderObservation = { leader: undefined, first: new Promise<void>((resolve) => (answered = resolve)) };
    // observe() validates the name synchronously: a wrong name throws here, before anything is kept.
    const leaders = this.elections.observe(name);
    this.observations.set(name, observation);
    observation.subscription = leaders.subscribe({
      next: (leader) => {
        observation.leader = leader;
        answered();
      },
      error: () => answered(),
      complete: () => answered(),
    });
    return observation;
  }

  /** Stops the leader observations and the wait for a background session; reports down from now on. */
  async onModuleDestroy(): Promise<void> {
    this.shutdown.abort();
    for (const observation of this.observations.values()) observation.subscription?.unsubscribe();
    this.observations.clear();
    await this.recreating;
  }
}

/** Resolves when `promise` settles or after `ms`, whichever is first; leaves no timer behind. */
async function waitAtMost(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([promise.catch(() => undefined), new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
  } finally {
    clearTimeout(timer);
  }
}
