import { MAX_NAME_LENGTH } from '../coordination.constants.js';
import { InvalidNameError } from '../errors/coordination.errors.js';
import { Messages } from '../coordination.messages.js';

/**
 * Validates a lock/election/semaphore name. '/' is refused because lock "a"
 * owns the key range "a/": a lock named "a/b" would live inside it and the two
 * locks would wait for each other's keys.
 */
export function validateName(
  kind: string,
  name: unknown,
  onError: (problem: string) => never = (problem) => {
    throw new InvalidNameError(kind, Messages.invalidName(kind, name, problem));
  },
): asserts name is string {
  if (typeof name !== 'string') onError('must be a string');
  const value = name as string;
  if (value.length === 0) onError('must not be empty');
  if (value.length > MAX_NAME_LENGTH) onError(`must be at most ${MAX_NAME_LENGTH} characters (got ${value.length})`);
  if (/[\u0000-\u001f\u007f]/.test(value)) onError('must not contain control characters');
  if (value.includes('/')) onError('must not contain "/" (one name\'s key range would contain another\'s); use ":" or "." as a separator');
  if (value.trim() !== value) onError('must not start or end with white space');
}

/** Lease ids are written as lowercase hex without padding, like Go's `fmt.Sprintf("%x", lease)`. */
export function leaseHex(leaseId: bigint): string {
  return leaseId.toString(16);
}

/** The smallest key greater than every key starting with `prefix` (etcd's prefix range end). */
export function prefixRangeEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]! += 1;
      return end.subarray(0, i + 1);
    }
  }
  // All 0xff: the range extends to the end of the key space.
  return Buffer.from([0]);
}

/** The key prefix of one lock/election: `<namespace><name>/`. */
export function namePrefix(namespace: string, name: string): Buffer {
  return Buffer.from(`${namespace}${name}/`, 'utf8');
}
