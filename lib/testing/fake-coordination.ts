import { Inject, Injectable, type OnApplicationShutdown } from '@nestjs/common';
import { ElectionService } from '../election/election.service.js';
import { SessionService } from '../session/session.service.js';
import { namePrefix, prefixRangeEnd, validateName } from '../etcd/keys.js';
import { InvalidUsageError, LeadershipLostError } from '../errors/coordination.errors.js';
import { Messages, TestingMessages } from '../coordination.messages.js';
import type { Hold } from '../queue/hold.js';
import type { FakeStore } from './fake-store.js';
import { FakeCluster, type FakeMember } from './fake-cluster.js';
import type { FakeSessionService } from './fake-session.js';
import { TESTING_OPTIONS, type ResolvedTestingOptions } from './testing-options.js';

/** How long a FakeCoordination change may take to show before its promise rejects. */
const VISIBLE_WITHIN_MS = 2_000;

/** Options of {@link FakeCoordination.depose}. */
export interface DeposeOptions {
  /**
   * For the default election: whether this instance queues again behind the
   * new leader (default true, as after a real loss). With false it stays out
   * until `elect()` or `ElectionService.rejoin()`.
   */
  rejoin?: boolean;
}

/**
 * Drives the in-memory coordination of `CoordinationTestingModule`. Get it
 * with `moduleRef.get(FakeCoordination)`. Each method resolves once its change
 * is visible: signals aborted, `leader$` emitted, `isLeader()` and
 * `@LeaderOnly` updated.
 *
 * Other instances are simulated by candidate keys of a foreign lease with the
 * identity `otherIdentity` (option `otherIdentity`, default `'other-instance'`).
 */
@Injectable()
export class FakeCoordination implements FakeMember, OnApplicationShutdown {
  private readonly otherLease = 0x0ff1_ce00n;
  private readonly store: FakeStore;

  constructor(
    @Inject(TESTING_OPTIONS) private readonly options: ResolvedTestingOptions,
    private readonly cluster: FakeCluster,
    @Inject(SessionService) private readonly sessionService: SessionService,
    private readonly elections: ElectionService,
  ) {
    this.store = cluster.store;
    cluster.members.add(this);
    // leader: false: another instance leads the default election from the start.
    if (!options.leader && options.coordination.election !== false) this.addOther(options.coordination.election);
  }

  /** The identity of the simulated other instance that leads when this one does not. */
  get otherIdentity(): string {
    return this.options.otherIdentity;
  }

  private get sessions(): FakeSessionService {
    return this.sessionService as unknown as FakeSessionService;
  }

  private electionName(election: string | undefined): string {
    if (election === undefined) {
      const name = this.elections.defaultElection;
      if (name === undefined) throw new InvalidUsageError(Messages.electionDisabled());
      return name;
    }
    validateName('election', election);
    return election;
  }

  private range(name: string) {
    const key = namePrefix(this.options.coordination.namespace, name);
    return { key, rangeEnd: prefixRangeEnd(key) };
  }

  /** Puts the other instance's candidate key into `name` (at the back), unless it has one. */
  private addOther(name: string): void {
    const key = Buffer.concat([this.range(name).key, Buffer.from(this.otherLease.toString(16))]);
    this.store.claim(key, Buffer.from(this.options.otherIdentity), this.otherLease);
  }

  /** @internal Lease id of this application's live fake session. */
  ownLease(): bigint | undefined {
    return this.sessions.live?.leaseId;
  }

  /** @internal Resigns `election` for another member's `elect()` (the default election queues again). */
  async stepBack(election: string): Promise<void> {
    await this.elections.resign(election);
  }

  onApplicationShutdown(): void {
    this.cluster.members.delete(this);
  }

  /**
   * Makes this instance the leader of `election` (the default one when
   * omitted): candidates of other instances ahead of ours step back and queue
   * behind us (the simulated other instance at once; another application of a
   * shared {@link FakeCluster} resigns, and re-campaigns if it is its default
   * election). Campaigns if this instance does not (for the default election
   * after `resign(..., { rejoin: false })` or `depose(..., { rejoin: false })`
   * it rejoins; another election is campaigned with `ElectionService.campaign`).
   */
  async elect(election?: string): Promise<void> {
    const name = this.electionName(election);
    if (this.elections.isLeader(name)) return;
    if (name === this.elections.defaultElection) this.elections.rejoin();
    else void this.elections.campaign(name).catch(() => undefined);
    // Our candidate key is claimed a few microtasks later.
    const ours = () => this.store.range(this.range(name)).find((kv) => BigInt(kv.lease) === this.ownLease());
    await this.until(() => ours() !== undefined, `the campaign of this instance in "${name}"`);
    const mine = BigInt(ours()!.create_revision);
    for (const kv of this.store.range(this.range(name))) {
      if (BigInt(kv.create_revision) >= mine) break;
      const member = [...this.cluster.members].find((m) => m !== this && m.ownLease() === BigInt(kv.lease));
      if (member) {
        await member.stepBack(name); // another application of a shared cluster
      } else {
        this.store.deleteIfRevision(kv.key, BigInt(kv.create_revision));
        this.store.claim(kv.key, kv.value, BigInt(kv.lease));
      }
    }
    await this.until(() => this.elections.isLeader(name) && this.defaultStateIs(name, true), `leadership of "${name}"`);
  }

  /**
   * Takes leadership of `election` away: another instance becomes the leader,
   * our leadership's signal aborts with a LeadershipLostError (reason), and
   * `leader$` emits `{ isLeader: false, leader: <the other instance> }`. The
   * default election then queues this instance again behind the new leader
   * (unless `rejoin: false`), as after a real loss; other elections are not
   * campaigned again (as with etcd). When this instance does not lead, only
   * makes sure another instance does.
   */
  async depose(election?: string, options: DeposeOptions = {}): Promise<void> {
    const name = this.electionName(election);
    const rejoin = options.rejoin ?? true;
    // Somebody else must be there to take over: another application of a shared cluster, or the simulated other instance.
    if (!this.store.range(this.range(name)).some((kv) => BigInt(kv.lease) !== this.ownLease())) this.addOther(name);
    const leadership = this.elections.leadership(name) as unknown as Hold | undefined;
    if (leadership) {
      void leadership.revoke(new LeadershipLostError(name, TestingMessages.deposed(name)));
      // Synchronously, before the default election's loop sees the loss and queues again.
      if (!rejoin && name === this.elections.defaultElection) void this.elections.resign(undefined, { rejoin: false });
    } else if (!rejoin && name === this.elections.defaultElection) {
      await this.elections.resign(undefined, { rejoin: false });
    }
    const other = () => this.store.range(this.range(name))[0];
    await this.until(
      () => !this.elections.isLeader(name) && BigInt(other()?.lease ?? -1) !== this.ownLease() && this.defaultShowsOther(name),
      `the deposition of this instance in "${name}"`,
    );
  }

  /**
   * Expires this instance's session, as when its etcd lease runs out: every
   * lock, read/write hold, permit and leadership ends, its signal aborted
   * with a SessionLostError (code `SESSION_LOST`); the session's keys are
   * deleted; `SessionService.state$` emits `lost`. The next acquire (and the
   * default election, which campaigns again) runs on a new session. Waiters
   * queue again on the new session, at the back. Resolves once `leader$` no
   * longer shows the old session's leadership.
   */
  async expireSession(): Promise<void> {
    const lost = this.sessions.live?.leaseId;
    if (!this.sessions.expire()) return;
    await this.until(() => {
      const state = this.elections.currentState;
      return !state.isLeader || state.leader?.leaseId !== lost;
    }, 'the session loss');
  }

  /** For the default election: whether `leader$`'s latest state says `isLeader`. */
  private defaultStateIs(name: string, isLeader: boolean): boolean {
    if (name !== this.elections.defaultElection) return true;
    const state = this.elections.currentState;
    if (state.isLeader !== isLeader) return false;
    return isLeader || state.leader === null || state.leader.leaseId !== this.ownLease();
  }

  /** For the default election: `leader$`'s latest state shows another instance leading (as documented for depose). */
  private defaultShowsOther(name: string): boolean {
    if (name !== this.elections.defaultElection) return true;
    const { isLeader, leader } = this.elections.currentState;
    return !isLeader && leader !== null && leader.leaseId !== this.ownLease();
  }

  private async until(predicate: () => boolean, what: string): Promise<void> {
    const deadline = Date.now() + VISIBLE_WITHIN_MS;
    while (!predicate()) {
      if (Date.now() > deadline) throw new Error(TestingMessages.notVisible(what, VISIBLE_WITHIN_MS));
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }
}
