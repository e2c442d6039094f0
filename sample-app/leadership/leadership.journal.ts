import { Inject, Injectable, Logger, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import type { Subscription } from 'rxjs';
import { ElectionService, type LeaderState } from '../coordination.js';
import { SampleEtcd } from '../etcd/sample-etcd.js';
import { SAMPLE_CONFIG, type SampleConfig } from '../sample.config.js';
import type { LeadershipTerm } from '../sample.types.js';

/**
 * Writes down this instance's leadership terms as it sees them through
 * `leader$` (became leader at, stopped at, with the fencing token), locally
 * and in etcd. The demo checks from these records that no two instances ever
 * believed they led at the same time.
 */
@Injectable()
export class LeadershipJournal implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger(LeadershipJournal.name);
  private readonly terms: LeadershipTerm[] = [];
  private readonly writes = new Set<Promise<void>>();
  private lastWrite: Promise<void> = Promise.resolve();
  private subscription?: Subscription;

  constructor(
    private readonly elections: ElectionService,
    private readonly etcd: SampleEtcd,
    @Inject(SAMPLE_CONFIG) private readonly config: SampleConfig,
  ) {}

  onModuleInit(): void {
    // leader$ replays the current state and then emits every change, synchronously
    // with the change itself: the times below are when leadership really began/ended here.
    this.subscription = this.elections.leader$.subscribe((state) => this.onState(state));
  }

  /** The open term, while this instance leads. */
  get currentTerm(): LeadershipTerm | undefined {
    const last = this.terms.at(-1);
    return last && last.to === undefined ? last : undefined;
  }

  allTerms(): LeadershipTerm[] {
    return this.terms.map((t) => ({ ...t }));
  }

  private onState(state: LeaderState): void {
    const now = Date.now();
    const open = this.currentTerm;
    const token = state.isLeader ? state.leader?.revision.toString() : undefined;
    if (open && open.fencingToken !== token) {
      open.to = now;
      this.save(open);
    }
    if (token !== undefined && open?.fencingToken !== token) {
      const term: LeadershipTerm = { instance: this.config.instanceId, fencingToken: token, from: now };
      this.terms.push(term);
      this.save(term);
    }
  }

  private save(term: LeadershipTerm): void {
    const snapshot = JSON.stringify(term);
    const key = this.etcd.keys.term(term.fencingToken);
    // One chain: a term's end must never be overwritten by its (slower) start.
    const write = this.lastWrite.then(() =>
      this.etcd.client.put(key).value(snapshot).then(
        () => undefined,
        (err: Error) => this.logger.warn(`could not record leadership term ${term.fencingToken} in etcd: ${err.message}`),
      ),
    );
    this.lastWrite = write;
    this.writes.add(write);
    void write.finally(() => this.writes.delete(write));
  }

  async onApplicationShutdown(): Promise<void> {
    // ElectionService resigns in its beforeApplicationShutdown, once running jobs have drained (after
    // this module's own beforeApplicationShutdown hooks): by onApplicationShutdown the last term is
    // closed. SampleEtcd closes its client after this hook (it is a dependency of this class).
    this.subscription?.unsubscribe();
    await Promise.allSettled([...this.writes]);
  }
}
