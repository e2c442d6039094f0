// Firing identity: which schedule slot a call of a @Cron / @Interval method belongs to.
// Pure functions (no etcd, no clock of their own): unit-tested in test/unit/jobs-slots.test.ts.
import 'reflect-metadata';

/** Metadata keys written by @nestjs/schedule (node_modules/@nestjs/schedule/dist/schedule.constants.js). */
export const SCHEDULE_CRON_OPTIONS = 'SCHEDULE_CRON_OPTIONS';
export const SCHEDULE_INTERVAL_OPTIONS = 'SCHEDULE_INTERVAL_OPTIONS';

/** What @Cron stores (the fields we use). */
export interface CronMetadata {
  cronTime: unknown;
  timeZone?: string;
  utcOffset?: string | number;
}

/** A method's schedule, as read from its @nestjs/schedule metadata. */
export type ScheduleMetadata =
  | { kind: 'cron'; cronTime: string; timeZone?: string; utcOffset?: number }
  | { kind: 'date'; at: number }
  | { kind: 'interval'; periodMs: number };

/** The `cron` package's CronTime, as far as we use it (the one @nestjs/schedule depends on). */
export interface CronTimeLike {
  getNextDateFrom(start: Date, timeZone?: string): { toMillis(): number };
}
export type CronTimeClass = new (source: string, timeZone?: string | null, utcOffset?: number | null) => CronTimeLike;

/** The schedule @nestjs/schedule stored on `method`, or undefined (not a @Cron/@Interval method). */
export function scheduleOf(method: Function | undefined): ScheduleMetadata | undefined {
  if (typeof method !== 'function') return undefined;
  const cron = Reflect.getMetadata(SCHEDULE_CRON_OPTIONS, method) as CronMetadata | undefined;
  if (cron) {
    const source = cron.cronTime;
    if (typeof source === 'string') {
      const utcOffset = cron.utcOffset === undefined || cron.utcOffset === null ? undefined : Number(cron.utcOffset);
      return { kind: 'cron', cronTime: source, timeZone: cron.timeZone ?? undefined, utcOffset };
    }
    // A Date or a Luxon DateTime: a one-shot job whose single slot is that instant.
    const at = source instanceof Date ? source.getTime() : (source as { toMillis?: () => number })?.toMillis?.();
    if (typeof at === 'number' && Number.isFinite(at)) return { kind: 'date', at };
    return undefined;
  }
  const interval = Reflect.getMetadata(SCHEDULE_INTERVAL_OPTIONS, method) as { timeout?: number } | undefined;
  if (interval && typeof interval.timeout === 'number' && interval.timeout > 0) return { kind: 'interval', periodMs: interval.timeout };
  return undefined;
}

/**
 * The slots of a schedule: `next(t)` is the first slot strictly after `t` (ms since the epoch).
 * Cron slots come from CronTime; interval slots are the epoch-aligned grid of the period, so
 * every instance computes the same grid whenever its setInterval started.
 */
export interface SlotGrid {
  next(afterMs: number): number;
}

export function intervalGrid(periodMs: number): SlotGrid {
  return { next: (t) => (Math.floor(t / periodMs) + 1) * periodMs };
}

/** The zone CronTime.sendAt() would use (a named zone, or "UTC+hh:mm" for utcOffset in minutes). */
export function cronZone(timeZone: string | undefined, utcOffset: number | undefined): string | undefined {
  if (timeZone) return timeZone;
  if (utcOffset === undefined) return undefined;
  const sign = utcOffset < 0 ? '-' : '+';
  const hours = Math.trunc(Math.abs(utcOffset) / 60);
  const minutes = Math.abs(utcOffset) % 60;
  return `UTC${sign}${String(hours).padStart(2, '0')}:${String(minutes).padStart(2, '0')}`;
}

export function cronGrid(CronTime: CronTimeClass, schedule: { cronTime: string; timeZone?: string; utcOffset?: number }): SlotGrid {
  const time = new CronTime(schedule.cronTime, schedule.timeZone ?? null, schedule.timeZone ? null : schedule.utcOffset ?? null);
  // Without a zone, CronTime (like @nestjs/schedule's CronJob) uses the system's time zone.
  const zone = cronZone(schedule.timeZone, schedule.utcOffset) ?? Intl.DateTimeFormat().resolvedOptions().timeZone;
  return {
    next: (t) => {
      // CronTime works in whole seconds and may answer `t` itself: step until strictly after.
      let at = time.getNextDateFrom(new Date(t), zone).toMillis();
      for (let guard = 0; at <= t && guard < 5; guard++) at = time.getNextDateFrom(new Date(Math.max(at, t) + 1), zone).toMillis();
      return at;
    },
  };
}

export function dateGrid(at: number): SlotGrid {
  return { next: (t) => (t < at ? at : Number.POSITIVE_INFINITY) };
}

/** The last slot at or before `t` (undefined when there is none within ~1000 steps back). */
export function previousSlot(grid: SlotGrid, t: number): number | undefined {
  const first = grid.next(t);
  const second = grid.next(first);
  let window = Number.isFinite(second) ? Math.max(1, second - first) : 1000;
  for (let doubling = 0; doubling < 40; doubling++) {
    let slot = grid.next(t - window);
    if (slot <= t) {
      // Walk forward to the last slot <= t.
      for (let steps = 0; steps < 1000; steps++) {
        const after = grid.next(slot);
        if (after > t) return slot;
        slot = after;
      }
      return slot;
    }
    window *= 2;
  }
  return undefined;
}

/**
 * The slot a call made at `t` (this instance's clock) belongs to: the NEAREST slot, so a call a
 * little early (a clock ahead of the others) or late (a busy event loop) still names the slot
 * it was fired for. Two instances whose clocks differ by less than half the period agree.
 */
export function nearestSlot(grid: SlotGrid, t: number): number {
  const next = grid.next(t);
  const previous = previousSlot(grid, t);
  if (previous === undefined) return next;
  if (!Number.isFinite(next)) return previous;
  return t - previous <= next - t ? previous : next;
}

/** The slots strictly between `after` and `before`, oldest first, at most `max` (the newest ones). */
export function slotsBetween(grid: SlotGrid, after: number, before: number, max: number): number[] {
  const found: number[] = [];
  // Bounded walk: misfireThreshold / period slots at most (capped, so a huge ratio cannot hang a call).
  let steps = 0;
  for (let slot = grid.next(after); slot < before && steps < 200_000; slot = grid.next(slot), steps++) {
    found.push(slot);
    if (found.length > max) found.shift();
  }
  return found;
}

/** The slot an instance named at its previous call of the job, and when (its clock). */
export interface PreviousCall {
  slot: number;
  at: number;
}

/**
 * The slot of a call at `t`, given this instance's previous call of the same job. A call that
 * comes one slot-gap after the previous one (within half of it) names the NEXT slot: a
 * setInterval whose phase is near half the period would otherwise flip between rounding down
 * and up with event-loop jitter, naming one slot twice and skipping the next. Any other call
 * (the first, or after a pause) names the nearest slot.
 */
export function slotForCall(grid: SlotGrid, t: number, previous: PreviousCall | undefined): number {
  if (previous) {
    const expected = grid.next(previous.slot);
    const gap = expected - previous.slot;
    if (Number.isFinite(expected) && Math.abs(t - previous.at - gap) < gap / 2) return expected;
  }
  return nearestSlot(grid, t);
}
