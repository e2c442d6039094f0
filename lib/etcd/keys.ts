import { MAX_NAME_LENGTH } from '../coordination.constants.js';
import { InvalidNameError } from '../errors/coordination.errors.js';
import { Messages, ModuleMessages, type UnsafeCharacterKind } from '../coordination.messages.js';

/** A character that must not appear in a name, namespace or identity. */
export interface UnsafeCharacter {
  /** UTF-16 index in the string. */
  index: number;
  /** The code point (for a lone surrogate: the surrogate code unit). */
  codePoint: number;
  kind: UnsafeCharacterKind;
}

// With the u flag a lone surrogate reads as one code point of category Cs, while
// a well-formed pair reads as the supplementary code point it encodes.
const UNSAFE_CHARACTER = /[\p{Cs}\p{Cc}\p{Cf}\u2028\u2029]/u;

/**
 * The first character that would make a key ambiguous or a log line
 * misleading: a lone surrogate (not well-formed UTF-16: `Buffer.from` writes
 * U+FFFD for it, so `"job\ud800"`, `"job\udbff"` and `"job\ufffd"` would be
 * one key), a control character (C0, DEL, C1), a format character (Unicode
 * category Cf: zero-width space/joiner, bidi controls, BOM, soft hyphen, tag
 * characters...) or a line/paragraph separator. `undefined` when there is none.
 */
export function findUnsafeCharacter(value: string): UnsafeCharacter | undefined {
  const match = UNSAFE_CHARACTER.exec(value);
  if (!match) return undefined;
  const codePoint = match[0].codePointAt(0)!;
  const kind: UnsafeCharacterKind =
    codePoint >= 0xd800 && codePoint <= 0xdfff ? 'lone surrogate'
      : codePoint <= 0x9f ? 'control character'
        : codePoint === 0x2028 || codePoint === 0x2029 ? 'line separator'
          : 'format character';
  return { index: match.index, codePoint, kind };
}

/**
 * Validates a lock/election/semaphore name. '/' is refused because lock "a"
 * owns the key range "a/": a lock named "a/b" would live inside it and the two
 * locks would wait for each other's keys. Characters found by
 * {@link findUnsafeCharacter} are refused because two different names could
 * then share a key (lone surrogates) or look the same in logs (invisible and
 * bidi characters).
 */
export function validateName(
  kind: string,
  name: unknown,
  onError: (problem: string) => never = (problem) => {
    // JSON.stringify (in the message) escapes C0 and lone surrogates but not invisible characters.
    throw new InvalidNameError(kind, Messages.invalidName(kind, typeof name === 'string' ? ModuleMessages.visibleText(name) : name, problem));
  },
): asserts name is string {
  if (typeof name !== 'string') onError(Messages.problem.notString());
  const value = name as string;
  if (value.length === 0) onError(Messages.problem.empty());
  if (value.length > MAX_NAME_LENGTH) onError(Messages.problem.tooLong(MAX_NAME_LENGTH, value.length));
  const unsafe = findUnsafeCharacter(value);
  if (unsafe) onError(ModuleMessages.unsafeInName(unsafe.kind, unsafe.codePoint, unsafe.index));
  if (value.includes('/')) onError(Messages.problem.slash());
  if (value.trim() !== value) onError(Messages.problem.surroundingSpace());
  if (value.startsWith(RESERVED_NAME_PREFIX)) onError(Messages.problem.reservedPrefix(RESERVED_NAME_PREFIX));
}

/**
 * Names starting with this prefix are the library's own (run ledger, membership, shard keys):
 * users' lock, election and semaphore names may not start with it, so the library's records can
 * live in the same namespace without ever sharing a key range with a user's name.
 */
export const RESERVED_NAME_PREFIX = '_coordination:';

/**
 * The name of one of the library's own records, e.g. `internalName('members')` is
 * `_coordination:members` (its keys then live under `<namespace>_coordination:members/`).
 * Parts are joined with ':' and must not contain '/'.
 */
export function internalName(...parts: string[]): string {
  for (const part of parts) {
    if (part.length === 0 || part.includes('/')) throw new Error(`internalName: invalid part ${JSON.stringify(part)}`);
  }
  return RESERVED_NAME_PREFIX + parts.join(':');
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
