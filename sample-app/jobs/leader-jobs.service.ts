import { Injectable } from '@nestjs/common';
import { Cron, Interval } from '@nestjs/schedule';
import { LeaderOnly, currentFiring, currentLeadership } from '../coordination.js';
import { JobRunRecorder } from './job-runs.recorder.js';
import { simulateWork } from './work.js';

/**
 * Scheduled jobs that must run on one instance only: every instance schedules
 * them, `@LeaderOnly()` lets the call through on the leader and skips it
 * everywhere else. When leadership moves, the jobs move with it.
 *
 * With `firing: 'once'` each slot of the schedule runs once in the cluster even
 * when leadership moves at the firing instant: the interval job at most once
 * (a slot whose run was killed is lost), the cron job at least once (a killed
 * run is re-run by the next leader; missed slots all run: `misfire: 'run-all'`).
 * The library's run ledger is shown on the dashboard (GET /history `ledger`).
 */
/** Names of the once-per-firing jobs in the library's run ledger (JobsService.history()). */
export const LEDGER_JOBS = { interval: 'sample-interval', cron: 'sample-cron' } as const;

@Injectable()
export class LeaderJobs {
  constructor(private readonly runs: JobRunRecorder) {}

  /** Every second, on the leader. */
  @Interval('leader-interval', 1_000)
  @LeaderOnly({ firing: 'once', job: LEDGER_JOBS.interval })
  async everySecond(): Promise<void> {
    await this.runAsLeader('interval', 300);
  }

  /** On every even second (cron with a seconds field), on the leader. */
  @Cron('*/2 * * * * *', { name: 'leader-cron' })
  @LeaderOnly({ firing: 'once', job: LEDGER_JOBS.cron, guarantee: 'at-least-once', misfire: 'run-all' })
  async everyTwoSeconds(): Promise<void> {
    await this.runAsLeader('cron', 200);
  }

  private async runAsLeader(job: 'interval' | 'cron', workMs: number): Promise<void> {
    // Set by @LeaderOnly for the duration of this call: the term's fencing token, and a
    // signal that aborts the moment leadership ends (resign, shutdown, session deadline).
    const leadership = currentLeadership();
    if (!leadership) throw new Error(`${job} job called outside @LeaderOnly`);
    const firing = currentFiring();
    const slot = firing ? { slot: firing.slot, attempt: firing.attempt } : undefined;
    await this.runs.track(job, true, leadership.fencingToken, leadership.signal, async () => {
      await simulateWork(workMs, leadership.signal);
      return { outcome: 'done' };
    }, slot);
  }
}
