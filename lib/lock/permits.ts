import { InvalidUsageError } from '../errors/coordination.errors.js';
import { Messages } from '../coordination.messages.js';

/** The largest `permits` a semaphore accepts (every check reads up to `permits` keys). */
export const MAX_PERMITS = 10_000;

/** Throws InvalidUsageError unless `permits` is an integer from 1 to {@link MAX_PERMITS}. */
export function validatePermits(permits: unknown, where = 'semaphore'): asserts permits is number {
  if (typeof permits !== 'number' || !Number.isInteger(permits) || permits < 1 || permits > MAX_PERMITS) {
    throw new InvalidUsageError(Messages.invalidPermits(where, permits, MAX_PERMITS));
  }
}
