import { NameInUseError } from '../errors/coordination.errors.js';
import { Messages } from '../coordination.messages.js';

/**
 * Which kind each name is in use as, in one application. A mutex, a
 * read/write lock, a semaphore and an election of the same name would share
 * etcd keys (a mutex key and a candidate key of one session are even the
 * same key), so using one name as two kinds at once is refused with
 * {@link NameInUseError}. An entry lives while something holds or waits on
 * the name; the default election's name is reserved for the application's
 * lifetime.
 */
export class NameRegistry {
  private readonly uses = new Map<string, { kind: string; count: number }>();

  /** Registers one use of `name` as `kind`; returns the function that ends it (idempotent). */
  use(name: string, kind: string): () => void {
    const entry = this.uses.get(name);
    if (entry && entry.kind !== kind) throw new NameInUseError(name, kind, entry.kind, Messages.nameInUse(name, kind, entry.kind));
    if (entry) entry.count++;
    else this.uses.set(name, { kind, count: 1 });
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      const current = this.uses.get(name);
      if (!current || --current.count > 0) return;
      this.uses.delete(name);
    };
  }

  /** Reserves `name` as `kind` for good (the default election). */
  reserve(name: string, kind: string): void {
    this.use(name, kind);
  }

  /** How many names are in use (for leak checks). */
  get size(): number {
    return this.uses.size;
  }
}

/**
 * The key shapes each kind writes after `<namespace><name>/`. A claim that
 * finds an older key of another shape in its range is refused (the name is
 * used as another kind by another process). Mutex and election keys have the
 * same shape (Go's format): those two cannot be told apart across processes.
 */
export const KEY_SHAPES = {
  /** `<lease hex>`: our mutex and election keys, Go's and etcdctl's. */
  session: /^[0-9a-f]+$/,
  /** `<lease hex>-<n>`: our semaphore keys. */
  permit: /^[0-9a-f]+-[0-9a-z]+$/,
  /** `read/<unique>` or `write/<unique>`: our and Go's read/write keys. */
  readWrite: /^(read|write)\/.+$/,
} as const;
