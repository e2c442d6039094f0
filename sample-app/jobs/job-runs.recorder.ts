import { Inject, Injectable, Logger, type BeforeApplicationShutdown } from '@nestjs/common';
import { Range } from 'etcd3';
import { Subject, type Observable } from 'rxjs';
import { SampleEtcd } from '../etcd/sample-etcd.js';
import { SAMPLE_CONFIG, type SampleConfig } from '../sample.config.js';
import type { JobName, JobRun, RunOutcome } from '../sample.types.js';

/** What a tracked job reports when it finishes. */
export interface RunResult {
  outcome: Exclude<RunOutcome, 'running'>;
  detail?: string;
  lockHeldAtWrite?: boolean;
}

/** Runs kept in memory for /status; records in etcd are kept for an hour. */
const RECENT_RUNS = 200;
const RETENTION_MS = 60 * 60_000;
const TRIM_EVERY_MS = 60_000;
/** Shutdown waits this long for runs still in flight (they stop early when leadership/lock ends). */
const FLUSH_TIMEOUT_MS = 5_000;

/**
 * Records every job run twice in etcd (when it starts and when it ends, with
 * wall-clock times and the fencing token it worked under) so that an outside
 * observer (scripts/demo.mjs, the dashboard) can check from etcd alone that no
 * two instances ran a leader-only job at the same time, even for runs of an
 * instance that was killed mid-run.
 */
@Injectable()
export class JobRunRecorder implements BeforeApplicationShutdown {
  private readonly logger = new Logger(JobRunRecorder.name);
  private readonly recent: JobRun[] = [];
  private readonly active = new Set<Promise<void>>();
  private readonly writes = new Set<Promise<void>>();
  private readonly runsSubject = new Subject<JobRun>();
  private sequence = 0;
  private lastTrim = 0;
  readonly counters: Record<JobName, { runs: number; lastAt?: number }> & { reportRefused: number } = {
    interval: { runs: 0 },
    cron: { runs: 0 },
    report: { runs: 0 },
    reportRefused: 0,
  };

  constructor(
    private readonly etcd: SampleEtcd,
    @Inject(SAMPLE_CONFIG) private readonly config: SampleConfig,
  ) {}

  /** Every run of this instance as it starts and as it ends. */
  get runs$(): Observable<JobRun> {
    return this.runsSubject.asObservable();
  }

  recentRuns(): JobRun[] {
    return [...this.recent];
  }

  /**
   * Runs `work` as one recorded run of `job`. A rejection of `work` is recorded
   * as `aborted` when `signal` (leadership's or the lock's) has aborted, else
   * as `failed`; it is not rethrown (the scheduler would only log it).
   */
  track(
    job: JobName,
    leaderOnly: boolean,
    fencingToken: bigint,
    signal: AbortSignal,
    work: () => Promise<RunResult>,
    firing?: { slot: number; attempt: number },
  ): Promise<void> {
    const run: JobRun = {
      ...(firing ? { slot: firing.slot, attempt: firing.attempt } : {}),
      id: `${this.config.instanceId}:${process.pid}#${++this.sequence}`,
      instance: this.config.instanceId,
      job,
      leaderOnly,
      fencingToken: fencingToken.toString(),
      startedAt: Date.now(),
      outcome: 'running',
    };
    const key = this.etcd.keys.run(run.startedAt, run.id);
    this.publish(run);
    // The end record must not overtake the start record: chain the two puts.
    const started = this.write(key, run);
    const done = (async () => {
      let result: RunResult;
      try {
        result = await work();
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        result = signal.aborted ? { outcome: 'aborted', detail: message } : { outcome: 'failed', detail: message };
      }
      const finished: JobRun = { ...run, ...result, endedAt: Date.now() };
      this.count(finished);
      this.publish(finished);
      await started;
      await this.write(key, finished);
      this.trimOldRecords(finished.endedAt!);
    })();
    this.active.add(done);
    return done.finally(() => this.active.delete(done));
  }

  private count(run: JobRun): void {
    const counter = this.counters[run.job];
    counter.runs++;
    counter.lastAt = run.endedAt;
    if (run.outcome === 'refused') this.counters.reportRefused++;
  }

  private publish(run: JobRun): void {
    if (run.outcome !== 'running') {
      const index = this.recent.findIndex((r) => r.id === run.id);
      if (index >= 0) this.recent.splice(index, 1);
      this.recent.push(run);
      if (this.recent.length > RECENT_RUNS) this.recent.shift();
    }
    this.runsSubject.next(run);
  }

  private write(key: string, run: JobRun): Promise<void> {
    const write = this.etcd.client
      .put(key)
      .value(JSON.stringify(run))
      .then(
        () => undefined,
        (err: Error) => this.logger.warn(`could not record run ${run.id} in etcd: ${err.message}`),
      );
    this.writes.add(write);
    return write.finally(() => this.writes.delete(write));
  }

  /** Keeps etcd from filling up when the app runs for days: drops run records older than an hour. */
  private trimOldRecords(now: number): void {
    if (now - this.lastTrim < TRIM_EVERY_MS) return;
    this.lastTrim = now;
    const { runsPrefix, runsBefore } = this.etcd.keys;
    const trim = this.etcd.client
      .delete()
      .range(new Range(runsPrefix, runsBefore(now - RETENTION_MS)))
      .then(
        () => undefined,
        (err: Error) => this.logger.warn(`could not trim old run records: ${err.message}`),
      );
    this.writes.add(trim);
    void trim.finally(() => this.writes.delete(trim));
  }

  /**
   * The coordination module refuses new guarded runs from onModuleDestroy on
   * and lets running ones finish (its drain), so runs in flight are ending;
   * wait for them and their records, then the etcd client may close
   * (SampleEtcd.onApplicationShutdown).
   */
  async beforeApplicationShutdown(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, FLUSH_TIMEOUT_MS)));
    await Promise.race([Promise.allSettled([...this.active]), timeout]);
    clearTimeout(timer);
    await Promise.allSettled([...this.writes]);
    this.runsSubject.complete();
  }
}
