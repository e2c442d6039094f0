import { Inject, Injectable, type BeforeApplicationShutdown, type OnModuleDestroy, type OnModuleInit } from '@nestjs/common';
import { Observable } from 'rxjs';
import { RESOLVED_COORDINATION_OPTIONS } from '../coordination.constants.js';
import type { ResolvedCoordinationOptions } from '../coordination.options.js';
import { EtcdOps } from '../etcd/etcd-ops.js';
import { EtcdWatches } from '../etcd/watch.js';
import { namePrefix, prefixRangeEnd, validateName } from '../etcd/keys.js';
import { SessionService } from '../session/session.service.js';
import { InvalidUsageError, LeadershipLostError, NotLeaderError } from '../errors/coordination.errors.js';
import { Messages } from '../coordination.messages.js';
import { runWithLeadership } from '../context/coordination.context.js';
import { oldestHolder, runHeld, toKeyHolder, type Lockable, type RunOptions, type RunTarget } from '../queue/lockable.js';
import { QueueEngine } from '../queue/queue.engine.js';
import type { AcquireOptions } from '../queue/queue-spec.js';
import { Campaigns } from './campaigns.js';
import { DefaultElection } from './default-election.js';
import { handover, type HandoverOptions, type HandoverResult } from './handover.js';
import { observeLeader } from './election-observer.js';
import { ShutdownDrain } from '../shutdown/shutdown-drain.js';
import type { LeaderInfo, LeaderState, LeadershipContext } from './leadership.js';

/** Options of {@link ElectionService.campaign}: the {@link AcquireOptions} of every kind, plus the proposal. */
export interface CampaignOptions extends AcquireOptions {
  /** The proposal stored in our candidate key and shown as the leader's value. Default: the identity. */
  value?: string;
}

/** Options of {@link ElectionService.resign}. */
export interface ResignOptions {
  /**
   * For the default election only: whether the automatic campaign queues
   * this instance again after resigning (default true). With false it stays
   * out until `campaign()` or `rejoin()` is called.
   */
  rejoin?: boolean;
}

/** etcd's default request limit is 1.5 MiB; a proposal must fit well inside one request. */
const MAX_VALUE_BYTES = 1024 * 1024;

/**
 * Leader election in etcd's own election format (Go's
 * `concurrency.Election`, `etcdctl elect`): candidate keys
 * `<namespace><election>/<lease hex>` holding the proposal; the oldest key
 * leads. A thin facade over the queue engine: a campaign is an acquire of
 * the election's queue. The default election is campaigned at startup,
 * re-campaigned after session loss, and resigned on shutdown.
 */
@Injectable()
export class ElectionService implements OnModuleInit, OnModuleDestroy, BeforeApplicationShutdown {
  private readonly campaigns: Campaigns;
  private readonly defaultElectionMachine?: DefaultElection;

  constructor(
    private readonly sessions: SessionService,
    private readonly ops: EtcdOps,
    private readonly watches: EtcdWatches,
    private readonly engine: QueueEngine,
    @Inject(RESOLVED_COORDINATION_OPTIONS) private readonly options: ResolvedCoordinationOptions,
    private readonly drain: ShutdownDrain,
  ) {
    this.campaigns = new Campaigns(engine, options.namespace);
    const name = this.defaultElection;
    if (name === undefined) return;
    // The drain begins: the default election stops campaigning (a leadership held is kept until the drain ends).
    drain.stopSignal.addEventListener('abort', () => this.campaigns.withdraw(name), { once: true });
    // The default election's keys are a candidate key of this session: nothing else may use the name.
    engine.names.reserve(name, 'election');
    this.defaultElectionMachine = new DefaultElection({
      name,
      identity: options.identity,
      campaigns: this.campaigns,
      observe: () => this.observe(name),
      ownLease: () => sessions.peek()?.leaseId,
      shutdown: AbortSignal.any([drain.stopSignal, sessions.shutdownSignal]),
      connectTimeout: options.connectTimeout,
    });
  }

  /** Name of the default election, or undefined when it is turned off. */
  get defaultElection(): string | undefined {
    return this.options.election === false ? undefined : this.options.election;
  }

  private electionName(election: string | undefined): string {
    if (election === undefined) {
      const name = this.defaultElection;
      if (name === undefined) throw new InvalidUsageError(Messages.electionDisabled());
      return name;
    }
    validateName('election', election);
    return election;
  }

  /**
   * The election `name` (default election when omitted) with the verbs of
   * every kind: `acquire` = campaign, `tryAcquire` = lead only if nobody
   * else leads or waits, `run` = run while leading then resign, `holder` = leader.
   */
  election(election?: string): Lockable<LeadershipContext> {
    const name = this.electionName(election);
    const acquire = (options?: AcquireOptions) => this.campaign(name, options);
    const tryAcquire = async () => {
      this.drain.admit(`tryAcquire of election "${name}"`);
      return this.campaigns.tryCampaign(name, this.options.identity);
    };
    const target: RunTarget<LeadershipContext> = {
      kind: 'election',
      name,
      contextKey: this.campaigns.contextKey(name),
      acquire,
      tryAcquire,
      heldMessage: () => Messages.electionTaken(name),
      enter: (hold, fn) => runWithLeadership(name, hold, fn),
    };
    return {
      name,
      kind: 'election',
      acquire,
      tryAcquire,
      run: (async <T>(fn: (hold: LeadershipContext) => Promise<T> | T, options: RunOptions = {}) => {
        this.drain.admit(`run of election "${name}"`);
        return this.drain.stoppable(`run of election "${name}"`, options, (o) => this.drain.run(() => runHeld(target, this.drain.unlessStopped(o, options, fn), o as RunOptions)));
      }) as Lockable<LeadershipContext>['run'],
      holder: () => this.leader(name),
    };
  }

  /**
   * Resolves when this instance leads `election` (default election when
   * omitted). Concurrent calls for one election share one campaign; a
   * caller's `signal` or `timeout` ends only its own wait (the candidate key
   * is removed when nobody waits any more). An already-aborted signal rejects
   * at once, before any etcd request. Awaiting a campaign blocks until we
   * lead: in `onApplicationBootstrap`, do not await it (or the follower never
   * finishes starting); call it without await, or use `@LeaderOnly`/`leader$`.
   */
  async campaign(election?: string, options: CampaignOptions = {}): Promise<LeadershipContext> {
    const name = this.electionName(election);
    const value = options?.value ?? this.options.identity;
    checkValue(value, 'campaign');
    const what = `campaign in election "${name}"`;
    this.drain.admit(what);
    return this.drain.stoppable(what, options, (o) => this.campaigns.campaign(name, value, o));
  }

  /** Changes the leader's value without a new election. NotLeaderError unless we lead. */
  async proclaim(value: string, election?: string): Promise<void> {
    const name = this.electionName(election);
    checkValue(value, 'proclaim');
    const leadership = this.campaigns.leadership(name);
    if (!leadership) throw new NotLeaderError(name, Messages.notLeader(name));
    const ok = await this.ops.putIfRevision(
      leadership.keyBytes, leadership.revision, Buffer.from(value), leadership.session.leaseId, `proclaim in election "${name}"`,
    );
    if (!ok) {
      await leadership.revoke(new LeadershipLostError(name, Messages.leadershipLost(name)));
      throw new NotLeaderError(name, Messages.notLeader(name));
    }
    leadership.setValue(value);
    if (name === this.defaultElection) this.defaultElectionMachine?.proclaimed();
  }

  /**
   * Gives up leadership at once (stops acting as leader, then deletes our
   * candidate key, guarded by its revision) so the next candidate takes over
   * in one round trip. Also withdraws a campaign still waiting. A no-op when
   * we neither lead nor campaign.
   */
  async resign(election?: string, options: ResignOptions = {}): Promise<void> {
    const name = this.electionName(election);
    if (name === this.defaultElection && this.defaultElectionMachine) await this.defaultElectionMachine.resign(options?.rejoin ?? true);
    else await this.campaigns.resign(name);
  }

  /**
   * Hands leadership of `election` (default election when omitted) to the
   * next candidate, or to the candidate whose value is `options.to`, with no
   * window without a leader longer than about one round trip, and never two
   * leaders. Candidates of this library before the named one queue again at
   * the back; a Go or `etcdctl` candidate in the way makes it refuse with
   * HandoverError (nothing changed). NotLeaderError unless we lead. See
   * lib/election/handover.ts.
   */
  async handover(election?: string, options: HandoverOptions = {}): Promise<HandoverResult> {
    const name = this.electionName(election);
    if (options.to !== undefined) checkValue(options.to, 'handover');
    return handover(
      {
        ops: this.ops,
        namespace: this.options.namespace,
        name,
        leadership: this.campaigns.leadership(name),
        resign: () => this.resign(election, { rejoin: options.rejoin ?? true }),
      },
      options,
    );
  }

  /** The current leader of `election`, or null when there is none. One etcd read. */
  async leader(election?: string): Promise<LeaderInfo | null> {
    const name = this.electionName(election);
    return oldestHolder(this.ops, namePrefix(this.options.namespace, name), `read leader of election "${name}"`);
  }

  /**
   * Every candidate of `election` (default election when omitted) in queue
   * order, the leader first: one etcd read of the candidate keys, oldest
   * create revision first (the order etcd hands leadership on).
   */
  async candidates(election?: string): Promise<LeaderInfo[]> {
    const name = this.electionName(election);
    const prefix = namePrefix(this.options.namespace, name);
    const kvs = await this.ops.range(
      { key: prefix, range_end: prefixRangeEnd(prefix), sort_order: 'Ascend', sort_target: 'Create' },
      `read candidates of election "${name}"`,
    );
    return kvs.map((kv) => toKeyHolder(kv, this.ops));
  }

  /** Whether this instance leads `election`, from local state (no etcd round trip). */
  isLeader(election?: string): boolean {
    return this.leadership(election) !== undefined;
  }

  /** Our leadership context of `election`, if we lead it. */
  leadership(election?: string): LeadershipContext | undefined {
    const name = election ?? this.defaultElection;
    if (name === undefined) return undefined;
    return this.campaigns.leadership(name);
  }

  /**
   * The leader of `election`: the current one (or null) first, then every
   * change, proclamations included. Keeps watching through etcd outages;
   * completes on shutdown.
   */
  observe(election?: string): Observable<LeaderInfo | null> {
    const name = this.electionName(election);
    return observeLeader(this.ops, this.watches, namePrefix(this.options.namespace, name), name, this.sessions.shutdownSignal);
  }

  /**
   * This instance's state in the default election: replays the current
   * state to new subscribers, emits only changes, completes on shutdown.
   */
  get leader$(): Observable<LeaderState> {
    const machine = this.defaultElectionMachine;
    if (!machine) return new Observable((subscriber) => subscriber.error(new InvalidUsageError(Messages.electionDisabled())));
    return machine.state$;
  }

  /** The latest state of the default election (synchronous). */
  get currentState(): LeaderState {
    return this.defaultElectionMachine?.state ?? { isLeader: false, leader: null };
  }

  /** Starts campaigning again for the default election after `resign(undefined, { rejoin: false })`. */
  rejoin(): void {
    this.defaultElectionMachine?.rejoinElection();
  }

  /**
   * Starts the default election during module initialisation, before any
   * `onApplicationBootstrap` hook (such as `@nestjs/schedule`'s, which fires
   * `@Timeout` jobs): with nobody leading, the election is won first.
   */
  async onModuleInit(): Promise<void> {
    if (!this.defaultElectionMachine) return;
    await this.sessions.session();
    await this.defaultElectionMachine.start();
  }

  /** Shutdown, step 1: the drain begins; waiting campaigns stop, leaderships are kept. */
  onModuleDestroy(): void {
    this.drain.begin();
  }

  /**
   * Shutdown, step 2: once the running guarded runs have finished (or
   * `shutdownTimeout` passed), resigns every leadership, so that the next
   * leader never starts while a run of ours still runs.
   */
  async beforeApplicationShutdown(): Promise<void> {
    await this.drain.settle();
    // The resignations go out first: the next leader takes over the moment etcd has them, and
    // ending everything else (the shutdown signal's listeners, waiting campaigns) costs about a
    // millisecond that stays off the failover's critical path. The shutdown signal is set in the
    // same tick, before any campaign loop could run again.
    const resigned = this.campaigns.resignAll();
    this.sessions.beginShutdown();
    await this.campaigns.shutdown();
    await resigned;
    await this.defaultElectionMachine?.stop();
  }
}

function checkValue(value: unknown, where: string): asserts value is string {
  if (typeof value !== 'string') throw new InvalidUsageError(Messages.valueNotString(where));
  if (Buffer.byteLength(value) > MAX_VALUE_BYTES) throw new InvalidUsageError(Messages.valueTooLarge(where, Buffer.byteLength(value), MAX_VALUE_BYTES));
}
