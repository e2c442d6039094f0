import { Inject, Injectable } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import type { AddressInfo } from 'node:net';
import { Range } from 'etcd3';
import { merge, map, type Observable } from 'rxjs';
import { ElectionService, JobsService, LockService, SessionService } from '../coordination.js';
import { LEDGER_JOBS } from '../jobs/leader-jobs.service.js';
import { SampleEtcd } from '../etcd/sample-etcd.js';
import { JobRunRecorder } from '../jobs/job-runs.recorder.js';
import { LeadershipJournal } from '../leadership/leadership.journal.js';
import { FencedReportStore } from '../report/fenced-report.store.js';
import { SAMPLE_CONFIG, type SampleConfig } from '../sample.config.js';
import type { ClusterHistory, InstanceStatus, JobRun, LeadershipTerm, LedgerRow, SampleEvent } from '../sample.types.js';

/** How far back GET /history looks when the caller does not say. */
const DEFAULT_HISTORY_MS = 120_000;

/** Everything the HTTP endpoints show, assembled from the library's services and the app's records. */
@Injectable()
export class StatusService {
  private readonly startedAt = Date.now();
  private url = '';

  constructor(
    @Inject(SAMPLE_CONFIG) private readonly config: SampleConfig,
    private readonly elections: ElectionService,
    private readonly locks: LockService,
    private readonly sessions: SessionService,
    private readonly runs: JobRunRecorder,
    private readonly journal: LeadershipJournal,
    private readonly store: FencedReportStore,
    private readonly etcd: SampleEtcd,
    private readonly adapterHost: HttpAdapterHost,
    private readonly jobs: JobsService,
  ) {}

  /** Called by main.ts once the server listens: with PORT=0 the port is only known then. */
  listening(): void {
    const address = this.adapterHost.httpAdapter?.getHttpServer()?.address() as AddressInfo | string | null;
    const port = address && typeof address === 'object' ? address.port : this.config.port;
    // A wildcard address is no use in a URL that peers and browsers follow.
    const host = ['0.0.0.0', '::', ''].includes(this.config.host) ? '127.0.0.1' : this.config.host;
    this.url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  }

  get ownUrl(): string {
    return this.url;
  }

  status(): InstanceStatus {
    const { isLeader, leader } = this.elections.currentState;
    const session = this.sessions.state;
    const term = this.journal.currentTerm;
    const hasSession = session.status === 'alive';
    return {
      instance: this.config.instanceId,
      pid: process.pid,
      url: this.url,
      peers: [this.url, ...this.config.peers.filter((p) => p !== this.url)],
      namespace: this.config.namespace,
      election: this.elections.defaultElection ?? '',
      startedAt: this.startedAt,
      role: isLeader ? 'leader' : hasSession ? 'follower' : 'no-session',
      isLeader,
      leader: leader ? { identity: leader.value, fencingToken: leader.revision.toString() } : null,
      leadership: isLeader && term ? { fencingToken: term.fencingToken, since: term.from } : null,
      heldLocks: this.locks.heldLocks().map((l) => ({ name: l.name, mode: l.mode, key: l.key, fencingToken: l.fencingToken.toString() })),
      session: {
        status: session.status,
        leaseHex: session.leaseHex,
        ttlSeconds: session.ttlSeconds,
        since: session.since.getTime(),
        reason: session.reason,
      },
      counters: structuredClone(this.runs.counters),
      now: Date.now(),
    };
  }

  /** Run records of every instance since `since` (epoch ms), every leadership term, and the report. */
  async history(since = Date.now() - DEFAULT_HISTORY_MS): Promise<ClusterHistory> {
    const { client, keys } = this.etcd;
    const [runs, terms, report, ledger] = await Promise.all([
      client.getAll().inRange(new Range(keys.runsBefore(since), Range.prefix(keys.runsPrefix).end)).strings(),
      client.getAll().prefix(keys.termsPrefix).strings(),
      this.store.read(),
      this.ledger(),
    ]);
    return {
      runs: Object.values(runs).map((v) => JSON.parse(v) as JobRun),
      ledger,
      terms: Object.values(terms).map((v) => JSON.parse(v) as LeadershipTerm),
      report,
      now: Date.now(),
    };
  }

  /** The library's run ledger of the once-per-firing jobs (JobsService.history), as JSON. */
  private async ledger(): Promise<Record<string, LedgerRow[]>> {
    const result: Record<string, LedgerRow[]> = {};
    for (const job of Object.values(LEDGER_JOBS)) {
      result[job] = (await this.jobs.history(job)).map((r) => ({
        job: r.job,
        slot: r.slot,
        instance: r.instance,
        attempt: r.attempt,
        fencingToken: r.fencingToken.toString(),
        startedAt: r.startedAt.getTime(),
        ...(r.endedAt ? { endedAt: r.endedAt.getTime() } : {}),
        outcome: r.outcome,
        ...(r.error !== undefined ? { error: r.error } : {}),
      }));
    }
    return result;
  }

  /** leader$, session state and job runs of this instance, as server-sent event data. */
  events(): Observable<SampleEvent> {
    const instance = this.config.instanceId;
    return merge(
      this.elections.leader$.pipe(
        map((s): SampleEvent => ({
          kind: 'leader',
          instance,
          isLeader: s.isLeader,
          leader: s.leader?.value ?? null,
          fencingToken: s.leader?.revision.toString() ?? null,
          at: Date.now(),
        })),
      ),
      this.sessions.state$.pipe(
        map((s): SampleEvent => ({ kind: 'session', instance, status: s.status, leaseHex: s.leaseHex, at: Date.now() })),
      ),
      this.runs.runs$.pipe(map((run): SampleEvent => ({ kind: 'run', instance, run, at: Date.now() }))),
    );
  }
}
