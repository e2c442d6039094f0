import { Injectable } from '@nestjs/common';
import { Cron, Interval } from '@nestjs/schedule';
import { LeaderOnly, currentLeadership } from '../coordination.js';
import { JobRunRecorder } from './job-runs.recorder.js';
import { simulateWork } from './work.js';

/**
 * Scheduled jobs that must run on one instance only: every instance schedules
 * them, `@LeaderOnly()` lets the call through on the leader and skips it
 * everywhere else. When leadership moves, the jobs move with it.
 */
@Injectable()
export class LeaderJobs {
  constructor(private readonly runs: JobRunRecorder) {}

  /** Every second, on the leader. */
  @Interval('leader-interval', 1_000)
  @LeaderOnly()
  async everySecond(): Promise<void> {
    await this.runAsLeader('interval', 300);
  }

  /** On every even second (cron with a seconds field), on the leader. */
  @Cron('*/2 * * * * *', { name: 'leader-cron' })
  @LeaderOnly()
  async everyTwoSeconds(): Promise<void> {
    await this.runAsLeader('cron', 200);
  }

  private async runAsLeader(job: 'interval' | 'cron', workMs: number): Promise<void> {
    // Set by @LeaderOnly for the duration of this call: the term's fencing token, and a
    // signal that aborts the moment leadership ends (resign, shutdown, session deadline).
    const leadership = currentLeadership();
    if (!leadership) throw new Error(`${job} job called outside @LeaderOnly`);
    await this.runs.track(job, true, leadership.fencingToken, leadership.signal, async () => {
      await simulateWork(workMs, leadership.signal);
      return { outcome: 'done' };
    });
  }
}
