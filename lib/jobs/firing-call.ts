// Glue between the decorators and JobsService: the schedule of the called method, its slot grid.
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { InvalidUsageError } from '../errors/coordination.errors.js';
import { JobMessages } from '../coordination.messages.js';
import type { CoordinationHold } from '../queue/hold.js';
import type { ResolvedFiringOptions } from './firing-options.js';
import { cronGrid, dateGrid, intervalGrid, scheduleOf, type CronTimeClass, type SlotGrid } from './firing-schedule.js';
import type { JobsService } from './jobs.service.js';

let cronTime: Promise<CronTimeClass | undefined> | undefined;

/**
 * The `cron` package's CronTime, the one @nestjs/schedule itself uses (so slots are exactly
 * the instants its CronJob fires at): resolved through the application's @nestjs/schedule,
 * else from wherever `cron` resolves from here. Not a dependency of this library.
 */
function loadCronTime(): Promise<CronTimeClass | undefined> {
  cronTime ??= (async () => {
    for (const base of [process.argv[1], join(process.cwd(), 'index.js')]) {
      if (!base) continue;
      try {
        const fromApp = createRequire(base);
        const schedule = fromApp.resolve('@nestjs/schedule');
        return (createRequire(schedule)('cron') as { CronTime: CronTimeClass }).CronTime;
      } catch {
        // try the next way
      }
    }
    try {
      const specifier = 'cron';
      return ((await import(specifier)) as { CronTime: CronTimeClass }).CronTime;
    } catch {
      return undefined;
    }
  })();
  return cronTime;
}

const grids = new WeakMap<Function, SlotGrid>();

/** The slot grid of `method`'s @Cron / @Interval (cached per method). Throws InvalidUsageError without one. */
export async function gridOf(method: Function | undefined, where: string): Promise<SlotGrid> {
  const cached = method && grids.get(method);
  if (cached) return cached;
  const schedule = scheduleOf(method);
  if (!schedule) throw new InvalidUsageError(JobMessages.notScheduled(where));
  let grid: SlotGrid;
  if (schedule.kind === 'interval') grid = intervalGrid(schedule.periodMs);
  else if (schedule.kind === 'date') grid = dateGrid(schedule.at);
  else {
    const CronTime = await loadCronTime();
    if (!CronTime) throw new InvalidUsageError(JobMessages.noCronPackage(where));
    grid = cronGrid(CronTime, schedule);
  }
  grids.set(method!, grid);
  return grid;
}

/** Default job name: "Class.method" (from "Class.method()"). */
export function defaultJobName(where: string): string {
  return where.endsWith('()') ? where.slice(0, -2) : where;
}

/**
 * Runs one firing of the method `propertyKey` of `self` under `guard`. The schedule is read from
 * the method as the class finally has it (`self[propertyKey]`): @Cron wrote its metadata on
 * our wrapper (when above us) or on the original, which replaceMethod copied (when below).
 */
export async function fireOnce(
  jobs: JobsService | undefined,
  self: unknown,
  propertyKey: string | symbol,
  where: string,
  options: ResolvedFiringOptions,
  guard: CoordinationHold,
  invoke: () => unknown,
): Promise<unknown> {
  if (!jobs) throw new InvalidUsageError(JobMessages.jobsMissing(where));
  const method = (self as Record<string | symbol, unknown> | null)?.[propertyKey];
  const grid = await gridOf(typeof method === 'function' ? method : undefined, where);
  return jobs.fire({ job: options.job ?? defaultJobName(where), options, grid, guard, invoke });
}
