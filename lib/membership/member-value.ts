import { InvalidUsageError } from '../errors/coordination.errors.js';
import { ShardMessages } from '../coordination.messages.js';

/** etcd's default request limit is 1.5 MiB; a member value must fit well inside one request. */
export const MAX_MEMBER_VALUE_BYTES = 64 * 1024;

/** Serialises a member value, refusing what JSON cannot carry (internal). */
export function serializeMemberValue(value: unknown): string {
  let json: string | undefined;
  try {
    json = JSON.stringify(value ?? null);
  } catch (err) {
    throw new InvalidUsageError(ShardMessages.memberValueNotJson((err as Error).message));
  }
  if (json === undefined) throw new InvalidUsageError(ShardMessages.memberValueNotJson(`a ${typeof value} is not JSON`));
  const bytes = Buffer.byteLength(json);
  if (bytes > MAX_MEMBER_VALUE_BYTES) throw new InvalidUsageError(ShardMessages.memberValueTooLarge(bytes, MAX_MEMBER_VALUE_BYTES));
  return json;
}
