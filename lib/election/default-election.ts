import { ReplaySubject, type Observable, type Subscription } from 'rxjs';
import { LockAbortedError } from '../errors/coordination.errors.js';
import { Messages } from '../coordination.messages.js';
import { backoffDelay, sleep } from '../util/abort.js';
import type { Campaigns } from './campaigns.js';
import { sameLeader, type LeaderInfo, type LeaderState, type Leadership } from './leadership.js';

/** What the default election needs from the application (internal). */
export interface DefaultElectionContext {
  name: string;
  identity: string;
  campaigns: Campaigns;
  observe(): Observable<LeaderInfo | null>;
  /** Lease id of the live session, if any: a leader key on it is our own. */
  ownLease(): bigint | undefined;
  shutdown: AbortSignal;
  connectTimeout: number;
}

/**
 * The default election as one small state machine (Curator's LeaderLatch):
 * campaign, hold until lost, campaign again (unless resigned without
 * rejoin), resign on shutdown. {@link update} is the one writer of
 * `leader$`: every input (our leadership, the observed leader, a campaign
 * in flight) changes a field and calls it, and it emits only real changes.
 */
export class DefaultElection {
  private get logger() { return this.context.campaigns.logger; }
  private readonly states = new ReplaySubject<LeaderState>(1);
  private last?: LeaderState;
  private leadership?: Leadership;
  private observed: LeaderInfo | null = null;
  private rejoin = true;
  private wakeUp?: () => void;
  private loop?: Promise<void>;
  private subscription?: Subscription;

  constructor(private readonly context: DefaultElectionContext) {}

  /** Replays the current state, then every change; completes on shutdown. */
  get state$(): Observable<LeaderState> {
    return this.states.asObservable();
  }

  get state(): LeaderState {
    return this.last ?? this.compute();
  }

  /** Our leadership's value changed (a proclamation): let the state follow. */
  proclaimed(): void {
    this.update();
  }

  private update(): void {
    const next = this.compute();
    const last = this.last;
    if (last && last.isLeader === next.isLeader && sameLeader(last.leader, next.leader)) return;
    this.last = next;
    this.states.next(next);
  }

  private compute(): LeaderState {
    const ours = this.leadership;
    if (ours?.isLeader()) return { isLeader: true, leader: ours.info() };
    const observed = this.observed;
    if (observed && observed.leaseId === this.context.ownLease()) {
      // etcd shows our own key as leader, but we do not hold it (yet, or any more): never say
      // "not the leader; the leader is us". Just before a promotion keep the last state.
      if (this.context.campaigns.isCampaigning(this.context.name) && this.last && !this.last.isLeader) return this.last;
      return { isLeader: false, leader: null };
    }
    return { isLeader: false, leader: observed };
  }

  /**
   * Observes the leader (bounded wait for the first answer, so `leader$`
   * replays a real state) and starts campaigning; with nobody leading, wins
   * before returning (bounded), so jobs due at startup find the leadership.
   */
  async start(): Promise<void> {
    const { connectTimeout } = this.context;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, connectTimeout);
      timer.unref();
      this.subscription = this.context.observe().subscribe({
        next: (leader) => {
          this.observed = leader;
          this.update();
          clearTimeout(timer);
          resolve();
        },
        complete: () => resolve(),
        error: () => resolve(),
      });
    });
    this.update();
    let firstCampaign: Promise<unknown> | undefined;
    this.loop = this.campaignForever((campaign) => (firstCampaign ??= campaign));
    if (this.observed === null && firstCampaign) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([firstCampaign.catch(() => undefined), new Promise((resolve) => (timer = setTimeout(resolve, connectTimeout)))]);
      clearTimeout(timer);
    }
  }

  /** Campaign, hold until lost, campaign again: with backoff on errors, until shutdown. */
  private async campaignForever(onCampaign: (campaign: Promise<unknown>) => void): Promise<void> {
    const { name, identity, campaigns, shutdown } = this.context;
    for (let failures = 0; !shutdown.aborted; ) {
      if (!this.rejoin) {
        await this.waitForRejoin();
        continue;
      }
      try {
        const campaign = campaigns.campaign(name, identity);
        onCampaign(campaign);
        this.update();
        const leadership = (await campaign) as Leadership;
        failures = 0;
        this.leadership = leadership;
        const ended = new Promise<void>((resolve) => leadership.signal.addEventListener('abort', () => resolve(), { once: true }));
        this.update();
        await ended;
        this.leadership = undefined;
        this.update();
      } catch (err) {
        this.update();
        if (shutdown.aborted) return;
        if (err instanceof LockAbortedError) continue; // resign() withdrew the waiting campaign
        const delay = backoffDelay(failures++, 250, 10_000);
        this.logger.warn(Messages.log.campaignFailed(name, err instanceof Error ? err.message : String(err), delay));
        await sleep(delay, shutdown).catch(() => undefined);
      }
    }
  }

  /** Waits for rejoin() or shutdown, leaving no listener behind. */
  private waitForRejoin(): Promise<void> {
    const { shutdown } = this.context;
    if (shutdown.aborted) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = () => {
        shutdown.removeEventListener('abort', done);
        this.wakeUp = undefined;
        resolve();
      };
      this.wakeUp = done;
      shutdown.addEventListener('abort', done, { once: true });
    });
  }

  /** Resigns (and withdraws a waiting campaign); with `rejoin` the loop queues again at the back. */
  async resign(rejoin: boolean): Promise<void> {
    this.rejoin = rejoin;
    await this.context.campaigns.resign(this.context.name);
  }

  /** Campaign again after `resign(false)`. */
  rejoinElection(): void {
    this.rejoin = true;
    this.wakeUp?.();
  }

  /** Shutdown: the campaigns were resigned by the caller; stop observing and complete `leader$`. */
  async stop(): Promise<void> {
    this.wakeUp?.();
    await this.loop?.catch(() => undefined);
    this.subscription?.unsubscribe();
    this.leadership = undefined;
    this.observed = null;
    this.update();
    this.states.complete();
  }
}
