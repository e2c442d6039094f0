/**
 * At most `size` async tasks at once; the others wait in arrival order. A
 * member taking or handing on hundreds of shards at once would otherwise
 * send hundreds of etcd transactions in one tick and starve its own
 * keepalives (seen with 1,024 shards on a loaded machine).
 */
export class Slots {
  private free: number;
  private readonly waiters: Array<() => void> = [];

  constructor(size: number) {
    this.free = size;
  }

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.free > 0) this.free--;
    else await new Promise<void>((resolve) => this.waiters.push(resolve));
    try {
      return await task();
    } finally {
      const next = this.waiters.shift();
      if (next) next();
      else this.free++;
    }
  }
}
