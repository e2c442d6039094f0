import {
  Inject,
  Injectable,
  Logger,
  type OnApplicationBootstrap,
  type OnModuleDestroy,
} from '@nestjs/common';
import { Observable, ReplaySubject, distinctUntilChanged, type Subscription } from 'rxjs';
import type { IKeyValue, Watcher } from 'etcd3';
import { RESOLVED_COORDINATION_OPTIONS } from '../coordination.constants.js';
import type { ResolvedCoordinationOptions } from '../coordination.options.js';
import { EtcdOps } from '../etcd/etcd-ops.js';
import { namePrefix, prefixRangeEnd, validateName } from '../etcd/keys.js';
import { OwnKeyGoneError, waitForTurn } from '../etcd/wait-for-turn.js';
import { SessionService } from '../session/session.service.js';
import type { EtcdSession } from '../session/etcd-session.js';
import {
  InvalidUsageError,
  LeadershipLostError,
  LockAbortedError,
  NotLeaderError,
  SessionLostError,
  ShutdownError,
} from '../errors/coordination.errors.js';
import { Messages } from '../coordination.messages.js';
import { backoffDelay, operationSignal, sleep } from '../util/abort.js';
import { Leadership, type LeaderInfo, type LeaderState, type LeadershipContext } from './leadership.js';

/** Options of {@link ElectionService.campaign}. */
export interface CampaignOptions {
  /** The proposal stored in our candidate key and shown as the leader's value. Default: the identity. */
  value?: string;
  /** Abort the campaign (our candidate key is removed). */
  signal?: AbortSignal;
}

/** Options of {@link ElectionService.resign}. */
export interface ResignOptions {
  /**
   * For the default election only: whether the automatic campaign queues
   * this instance again after resigning (default true). With false it stays
   * out until `campaign()` is called.
   */
  rejoin?: boolean;
}

/** One election this process takes part in. */
interface Candidacy {
  campaign?: Promise<Leadership>;
  leadership?: Leadership;
  /** A resignation whose key deletion is in flight: a new campaign must not adopt the old key. */
  resigning?: Promise<unknown>;
}

function toLeaderInfo(kv: IKeyValue): LeaderInfo {
  return {
    value: kv.value.toString('utf8'),
    key: kv.key.toString('utf8'),
    revision: BigInt(kv.create_revision),
    leaseId: BigInt(kv.lease),
  };
}

function sameLeader(a: LeaderInfo | null, b: LeaderInfo | null): boolean {
  if (a === null || b === null) return a === b;
  return a.key === b.key && a.revision === b.revision && a.value === b.value;
}

/**
 * Leader election in etcd's own election format (Go's
 * `concurrency.Election`, `etcdctl elect`): candidate keys
 * `<namespace><election>/<lease hex>` holding the proposal; the oldest key
 * leads. The default election is campaigned at bootstrap, re-campaigned
 * after session loss, and resigned on shutdown.
 */
@Injectable()
export class ElectionService implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger('Coordination');
  private readonly candidacies = new Map<string, Candidacy>();
  private readonly state = new ReplaySubject<LeaderState>(1);
  private lastState?: LeaderState;
  private observedLeader: LeaderInfo | null = null;
  private observeSubscription?: Subscription;
  private autoCampaign?: Promise<void>;
  private rejoinDefault = true;
  private rejoinWakeUp?: () => void;

  constructor(
    private readonly sessions: SessionService,
    private readonly ops: EtcdOps,
    @Inject(RESOLVED_COORDINATION_OPTIONS) private readonly options: ResolvedCoordinationOptions,
  ) {}

  /** Name of the default election, or undefined when it is turned off. */
  get defaultElection(): string | undefined {
    return this.options.election === false ? undefined : this.options.election;
  }

  private electionName(election: string | undefined): string {
    const name = election ?? this.defaultElection;
    if (name === undefined) throw new InvalidUsageError(Messages.electionDisabled());
    validateName('election', name);
    return name;
  }

  private range(election: string) {
    const prefix = namePrefix(this.options.namespace, election);
    return { key: prefix, rangeEnd: prefixRangeEnd(prefix) };
  }

  // ---------------------------------------------------------------- campaign

  /**
   * Resolves when this instance leads `election` (default election when
   * omitted). Concurrent calls for one election share one campaign. Rejects
   * with LockAbortedError when `signal` aborts (candidate key removed).
   */
  async campaign(election?: string, options: CampaignOptions = {}): Promise<LeadershipContext> {
    const name = this.electionName(election);
    const value = options.value ?? this.options.identity;
    if (typeof value !== 'string') throw new InvalidUsageError('campaign value must be a string');
    const candidacy = this.candidacy(name);
    if (candidacy.leadership?.isLeader()) return candidacy.leadership;
    candidacy.campaign ??= this.runCampaign(name, value).finally(() => {
      candidacy.campaign = undefined;
    });
    if (!options.signal) return candidacy.campaign;
    // A caller's signal only stops the caller's wait unless it is the only one waiting.
    const op = operationSignal({ caller: options.signal });
    try {
      return await new Promise<Leadership>((resolve, reject) => {
        candidacy.campaign!.then(resolve, reject);
        op.signal.addEventListener('abort', () => {
          this.abortCampaign(name);
          reject(new LockAbortedError(name, Messages.campaignAborted(name), { cause: options.signal!.reason }));
        }, { once: true });
      });
    } finally {
      op.dispose();
    }
  }

  private candidacy(name: string): Candidacy {
    let candidacy = this.candidacies.get(name);
    if (!candidacy) {
      candidacy = {};
      this.candidacies.set(name, candidacy);
    }
    return candidacy;
  }

  private readonly campaignAborts = new Map<string, AbortController>();

  private abortCampaign(name: string): void {
    this.campaignAborts.get(name)?.abort(new LockAbortedError(name, Messages.campaignAborted(name)));
  }

  private async runCampaign(name: string, value: string): Promise<Leadership> {
    if (this.sessions.shutdownSignal.aborted) throw new ShutdownError(Messages.shuttingDown());
    const abort = new AbortController();
    this.campaignAborts.set(name, abort);
    const op = operationSignal({ caller: abort.signal, others: [this.sessions.shutdownSignal] });
    try {
      await this.candidacies.get(name)?.resigning;
      for (;;) {
        const session = await this.sessions.session(op.signal);
        try {
          return await this.campaignOnSession(name, value, session, op.signal);
        } catch (err) {
          if (!op.signal.aborted && session.signal.aborted) continue; // queue again on a new session
          throw err;
        }
      }
    } catch (err) {
      throw op.signal.aborted ? op.signal.reason : err;
    } finally {
      op.dispose();
      if (this.campaignAborts.get(name) === abort) this.campaignAborts.delete(name);
    }
  }

  private async campaignOnSession(name: string, value: string, session: EtcdSession, signal: AbortSignal): Promise<Leadership> {
    const range = this.range(name);
    const myKey = Buffer.concat([range.key, Buffer.from(session.leaseHex)]);
    const what = `campaign for election "${name}"`;
    const op = operationSignal({ others: [signal, session.signal] });
    let myRevision: bigint | undefined;
    try {
      const claim = await this.ops.claim(myKey, Buffer.from(value), session.leaseId, range, what);
      myRevision = claim.myRevision;
      if (!claim.created && claim.existingValue?.toString('utf8') !== value) {
        // Our key survived from an earlier campaign with another value: proclaim the new one (as Go does).
        await this.ops.putIfRevision(myKey, myRevision, Buffer.from(value), session.leaseId, what);
      }
      await waitForTurn(this.ops, {
        myKey,
        myRevision,
        blocking: range,
        signal: op.signal,
        what,
        blocker: claim.blocker,
        headerRevision: claim.headerRevision,
      });
      if (op.signal.aborted) throw op.signal.reason;
      session.throwIfEnded();
      const leadership = new Leadership(name, myKey.toString('utf8'), myKey, myRevision, value, session);
      this.installLeadership(leadership);
      return leadership;
    } catch (err) {
      if (myRevision !== undefined && !session.endReason) {
        await this.ops.deleteIfRevision(myKey, myRevision, `withdraw from election "${name}"`).catch(() => undefined);
      }
      if (err instanceof OwnKeyGoneError || session.signal.aborted) {
        throw session.signal.aborted ? session.signal.reason : new SessionLostError(String(err));
      }
      throw err;
    } finally {
      op.dispose();
    }
  }

  private installLeadership(leadership: Leadership): void {
    const candidacy = this.candidacy(leadership.election);
    candidacy.leadership = leadership;
    this.logger.log(Messages.log.becameLeader(leadership.election, leadership.fencingToken));
    leadership.signal.addEventListener('abort', () => {
      if (candidacy.leadership === leadership) candidacy.leadership = undefined;
      const reason = leadership.signal.reason;
      if (!(reason instanceof ShutdownError) && !(reason instanceof NotLeaderError)) {
        this.logger.warn(Messages.log.lostLeadership(leadership.election, reason instanceof Error ? reason.message : String(reason)));
      }
      if (leadership.election === this.defaultElection) this.publish();
    }, { once: true });
    if (leadership.election === this.defaultElection) this.publish();
  }

  // ------------------------------------------------------- proclaim / resign

  /** Changes the leader's value without a new election. NotLeaderError unless we lead. */
  async proclaim(value: string, election?: string): Promise<void> {
    const name = this.electionName(election);
    if (typeof value !== 'string') throw new InvalidUsageError('proclaim value must be a string');
    const leadership = this.candidacies.get(name)?.leadership;
    if (!leadership?.isLeader()) throw new NotLeaderError(name, Messages.notLeader(name));
    const ok = await this.ops.putIfRevision(
      leadership.keyBytes, leadership.fencingToken, Buffer.from(value), leadership.session.leaseId, `proclaim in election "${name}"`,
    );
    if (!ok) {
      leadership.end(new LeadershipLostError(name, Messages.leadershipLost(name)));
      throw new NotLeaderError(name, Messages.notLeader(name));
    }
    leadership.setValue(value);
    if (name === this.defaultElection) this.publish();
  }

  /**
   * Gives up leadership at once (deletes our candidate key, guarded by its
   * revision) so the next candidate takes over in one round trip. A no-op
   * when we do not lead. Also withdraws a campaign still waiting.
   */
  async resign(election?: string, options: ResignOptions = {}): Promise<void> {
    const name = this.electionName(election);
    if (name === this.defaultElection) this.rejoinDefault = options.rejoin ?? true;
    this.abortCampaign(name);
    const candidacy = this.candidacies.get(name);
    const leadership = candidacy?.leadership;
    if (!candidacy || !leadership) return;
    // Stop acting as leader first, then delete the key: never two leaders.
    leadership.end(new NotLeaderError(name, Messages.resigned(name)));
    if (leadership.session.endReason) return;
    const deletion = this.ops.deleteIfRevision(leadership.keyBytes, leadership.fencingToken, `resign from election "${name}"`);
    candidacy.resigning = deletion.catch(() => undefined);
    try {
      await deletion;
    } finally {
      candidacy.resigning = undefined;
    }
  }

  // --------------------------------------------------------------- queries

  /** The current leader of `election`, or null when there is none. One etcd read. */
  async leader(election?: string): Promise<LeaderInfo | null> {
    const name = this.electionName(election);
    const kv = await this.ops.oldest(this.range(name), `read leader of election "${name}"`);
    return kv ? toLeaderInfo(kv) : null;
  }

  /** Whether this instance leads `election`, from local state (no etcd round trip). */
  isLeader(election?: string): boolean {
    const name = election ?? this.defaultElection;
    if (name === undefined) return false;
    return this.candidacies.get(name)?.leadership?.isLeader() ?? false;
  }

  /** Our leadership context of `election`, if we lead it. */
  leadership(election?: string): LeadershipContext | undefined {
    const name = election ?? this.defaultElection;
    if (name === undefined) return undefined;
    const leadership = this.candidacies.get(name)?.leadership;
    return leadership?.isLeader() ? leadership : undefined;
  }

  /**
   * The leader of `election`: the current one (or null) first, then every
   * change, proclamations included. Keeps watching through etcd outages;
   * completes on shutdown.
   */
  observe(election?: string): Observable<LeaderInfo | null> {
    const name = this.electionName(election);
    return new Observable<LeaderInfo | null>((subscriber) => {
      const stop = new AbortController();
      const op = operationSignal({ others: [this.sessions.shutdownSignal, stop.signal] });
      void this.observeLoop(name, op.signal, (leader) => subscriber.next(leader)).then(
        () => subscriber.complete(),
        (err) => subscriber.error(err),
      );
      return () => {
        stop.abort();
        op.dispose();
      };
    });
  }

  private async observeLoop(name: string, outer: AbortSignal, emit: (leader: LeaderInfo | null) => void): Promise<void> {
    const range = this.range(name);
    let current: LeaderInfo | null | undefined;
    const publish = (leader: LeaderInfo | null) => {
      if (current !== undefined && sameLeader(current, leader)) return;
      current = leader;
      emit(leader);
    };
    for (let failures = 0; !outer.aborted; ) {
      let headerRevision: bigint;
      try {
        const res = await this.ops.txn(
          { success: [{ request_range: { key: range.key, range_end: range.rangeEnd, sort_order: 'Ascend', sort_target: 'Create', limit: 1 } }] },
          `observe election "${name}"`,
        );
        headerRevision = BigInt(res.header.revision);
        const kv = res.responses[0]!.response_range.kvs[0];
        publish(kv ? toLeaderInfo(kv) : null);
        failures = 0;
      } catch {
        await sleep(backoffDelay(failures++, 200, 5_000), outer).catch(() => undefined);
        continue;
      }
      await this.watchLeaderChanges(range.key, headerRevision, outer, () => current ?? null, publish);
    }
  }

  /** Resolves when the leader must be re-read (its key deleted, or the watch failed). */
  private watchLeaderChanges(
    prefix: Buffer,
    afterRevision: bigint,
    signal: AbortSignal,
    current: () => LeaderInfo | null,
    publish: (leader: LeaderInfo | null) => void,
  ): Promise<void> {
    if (signal.aborted) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const watcher: Watcher = this.ops.client.watch().prefix(prefix).startRevision((afterRevision + 1n).toString()).watcher();
      let connected = false;
      let failed = false;
      const finish = () => {
        signal.removeEventListener('abort', finish);
        watcher.removeAllListeners();
        watcher.on('error', () => undefined);
        // After 'error' etcd3 has already dropped the watcher, and cancel() would wait forever.
        if (!failed) void watcher.cancel().catch(() => undefined);
        resolve();
      };
      signal.addEventListener('abort', finish, { once: true });
      watcher.on('connected', () => (connected = true));
      watcher.on('disconnected', () => (connected = false));
      watcher.on('put', (kv: IKeyValue) => {
        const leader = current();
        if (leader === null) publish(toLeaderInfo(kv)); // first candidate after an empty election leads
        else if (kv.key.toString('utf8') === leader.key) publish(toLeaderInfo(kv)); // proclamation
      });
      watcher.on('delete', (kv: IKeyValue) => {
        if (kv.key.toString('utf8') === current()?.key) finish();
      });
      watcher.on('error', (err: Error) => {
        failed = true;
        if (!connected) this.ops.recoverWatchStream(err);
        setTimeout(finish, 200).unref();
      });
    });
  }

  // ------------------------------------------------------ default election

  /**
   * This instance's state in the default election: replays the current
   * state to new subscribers, emits only changes, completes on shutdown.
   */
  get leader$(): Observable<LeaderState> {
    if (this.defaultElection === undefined) {
      return new Observable((subscriber) => subscriber.error(new InvalidUsageError(Messages.electionDisabled())));
    }
    return this.state.asObservable().pipe(
      distinctUntilChanged((a, b) => a.isLeader === b.isLeader && sameLeader(a.leader, b.leader)),
    );
  }

  /** The latest state of the default election (synchronous). */
  get currentState(): LeaderState {
    return this.computeState();
  }

  private computeState(): LeaderState {
    const name = this.defaultElection;
    const ours = name !== undefined ? this.candidacies.get(name)?.leadership : undefined;
    if (ours?.isLeader()) return { isLeader: true, leader: ours.info() };
    return { isLeader: false, leader: this.observedLeader };
  }

  private publish(): void {
    const next = this.computeState();
    const last = this.lastState;
    if (last && last.isLeader === next.isLeader && sameLeader(last.leader, next.leader)) return;
    this.lastState = next;
    this.state.next(next);
  }

  async onApplicationBootstrap(): Promise<void> {
    const name = this.defaultElection;
    if (name === undefined) return;
    // Know the leader before the application starts serving, so leader$ replays a real state
    // (bounded: if etcd stops answering right now, start anyway and learn it later).
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, this.options.connectTimeout);
      timer.unref();
      let first = true;
      this.observeSubscription = this.observe(name).subscribe({
        next: (leader) => {
          this.observedLeader = leader;
          this.publish();
          if (first) {
            first = false;
            clearTimeout(timer);
            resolve();
          }
        },
        complete: () => resolve(),
        error: () => resolve(),
      });
    });
    this.autoCampaign = this.campaignForever(name);
    // With nobody leading yet, win the election before the application starts (one round
    // trip), so a job that runs right at bootstrap (@Timeout, a cron due now) finds the
    // leadership in place instead of being skipped. Bounded; never blocks when someone else leads.
    if (this.observedLeader === null) {
      const campaign = this.candidacies.get(name)?.campaign;
      if (campaign) {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          campaign.catch(() => undefined),
          new Promise<void>((resolve) => {
            timer = setTimeout(resolve, this.options.connectTimeout);
          }),
        ]);
        clearTimeout(timer);
      }
    }
  }

  /** Campaign, hold until lost, campaign again: with backoff on errors, until shutdown. */
  private async campaignForever(name: string): Promise<void> {
    const shutdown = this.sessions.shutdownSignal;
    for (let failures = 0; !shutdown.aborted; ) {
      if (!this.rejoinDefault) {
        await new Promise<void>((resolve) => {
          this.rejoinWakeUp = resolve;
          shutdown.addEventListener('abort', () => resolve(), { once: true });
        });
        this.rejoinWakeUp = undefined;
        continue;
      }
      try {
        const leadership = (await this.campaign(name)) as Leadership;
        failures = 0;
        await new Promise<void>((resolve) => {
          if (leadership.signal.aborted) return resolve();
          leadership.signal.addEventListener('abort', () => resolve(), { once: true });
        });
      } catch (err) {
        if (shutdown.aborted) return;
        if (err instanceof LockAbortedError) continue; // resign() withdrew the waiting campaign
        const delay = backoffDelay(failures++, 250, 10_000);
        this.logger.warn(Messages.log.campaignFailed(name, err instanceof Error ? err.message : String(err), delay));
        await sleep(delay, shutdown).catch(() => undefined);
      }
    }
  }

  /** Starts campaigning again for the default election after `resign(undefined, { rejoin: false })`. */
  rejoin(): void {
    this.rejoinDefault = true;
    this.rejoinWakeUp?.();
  }

  async onModuleDestroy(): Promise<void> {
    this.sessions.beginShutdown();
    // Resign everything we lead: one round trip hands over to the next candidate.
    const resigns: Promise<unknown>[] = [];
    for (const [name, candidacy] of this.candidacies) {
      const leadership = candidacy.leadership;
      if (!leadership) continue;
      leadership.end(new ShutdownError(Messages.shuttingDown()));
      if (!leadership.session.endReason) {
        resigns.push(this.ops.deleteIfRevision(leadership.keyBytes, leadership.fencingToken, `resign from election "${name}"`).catch(() => undefined));
      }
    }
    await Promise.allSettled(resigns);
    await this.autoCampaign?.catch(() => undefined);
    await Promise.allSettled([...this.candidacies.values()].map((c) => c.campaign));
    this.observeSubscription?.unsubscribe();
    if (this.defaultElection !== undefined) {
      this.observedLeader = null;
      this.publish();
    }
    this.state.complete();
  }
}
