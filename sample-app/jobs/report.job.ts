import { Inject, Injectable, type OnModuleDestroy } from '@nestjs/common';
import { Interval } from '@nestjs/schedule';
import { ShutdownError, WithLock, currentLock } from '../coordination.js';
import { FencedReportStore } from '../report/fenced-report.store.js';
import { SAMPLE_CONFIG, type SampleConfig } from '../sample.config.js';
import { REPORT_LOCK } from '../sample.keys.js';
import { JobRunRecorder } from './job-runs.recorder.js';
import { simulateWork } from './work.js';

/**
 * A job every instance tries every 1.5 s; the distributed lock lets one run at
 * a time and the others skip (`onLocked: 'skip'`), so it runs on whichever
 * instance gets there first, leader or not.
 */
@Injectable()
export class ReportJob implements OnModuleDestroy {
  private readonly stopping = new AbortController();

  constructor(
    private readonly runs: JobRunRecorder,
    private readonly store: FencedReportStore,
    @Inject(SAMPLE_CONFIG) private readonly config: SampleConfig,
  ) {}

  @Interval('report', 1_500)
  async onReportTick(): Promise<void> {
    // Instances started together tick almost in step, and the one that started first would
    // win nearly every time; a random delay of up to one period lets them take turns
    // (nicer to watch, same guarantees).
    try {
      await simulateWork(Math.random() * 1_500, this.stopping.signal);
      await this.publishReport();
    } catch (err) {
      // A tick that was still waiting when the app began to shut down: nothing to report.
      if (this.stopping.signal.aborted || err instanceof ShutdownError) return;
      throw err;
    }
  }

  onModuleDestroy(): void {
    this.stopping.abort();
  }

  /** Runs under the cluster-wide lock "report", or not at all if another instance holds it. */
  @WithLock(REPORT_LOCK, { onLocked: 'skip' })
  async publishReport(): Promise<void> {
    // The hold that @WithLock took for this call: its fencing token is strictly
    // greater than that of every earlier holder of the lock.
    const lock = currentLock(REPORT_LOCK);
    if (!lock) throw new Error('publishReport called outside @WithLock');
    await this.runs.track('report', false, lock.fencingToken, lock.signal, async () => {
      const content = await this.compileReport();
      // NOTE: no lock.throwIfLost() here, on purpose. Real code should check (it is cheap and
      // catches most lost locks), but a check cannot close the gap: the process can pause
      // right after it. The demo pauses a holder (SIGSTOP) to show that the store's fencing
      // refuses the stale write anyway. We only record what the library knew at this point.
      const lockHeldAtWrite = lock.isHeld();
      const result = await this.store.write(content, lock.fencingToken, this.config.instanceId);
      if (result.accepted) return { outcome: 'written', lockHeldAtWrite };
      return {
        outcome: 'refused',
        lockHeldAtWrite,
        detail: `stale token ${lock.fencingToken} < ${result.highestToken} (already written by ${result.highestWriter})`,
      };
    });
  }

  /** The slow part; not interruptible (think: a long computation or a stop-the-world pause). */
  private async compileReport(): Promise<string> {
    await simulateWork(800);
    return `report by ${this.config.instanceId} at ${new Date().toISOString()}`;
  }
}
