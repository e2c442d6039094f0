import { Messages } from '../coordination.messages.js';
import { ShutdownMessages } from './shutdown.messages.js';

/** Default and largest `shutdownTimeout` (ms). */
export const DEFAULT_SHUTDOWN_TIMEOUT_MS = 10_000;
export const MAX_SHUTDOWN_TIMEOUT_MS = 86_400_000;

/**
 * The drain's deadline (option `shutdownTimeout`): an integer of ms from 0 to
 * 24 h, default 10 s. Finite on purpose: a job that never ends would otherwise
 * hold the shutdown, and its locks, until the process is killed.
 */
export function validateShutdownTimeout(value: unknown, fail: (option: string, problem: string) => never): number {
  if (value === undefined) return DEFAULT_SHUTDOWN_TIMEOUT_MS;
  if (value === Infinity) fail('shutdownTimeout', ShutdownMessages.infiniteTimeout());
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > MAX_SHUTDOWN_TIMEOUT_MS) {
    fail('shutdownTimeout', Messages.problem.integerRange(0, MAX_SHUTDOWN_TIMEOUT_MS, value));
  }
  return value;
}
