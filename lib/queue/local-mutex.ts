/**
 * In-process FIFO mutex for one lock name. All contenders of one process
 * share one etcd session, and one session can have only one key per lock
 * name, so contenders inside the process queue here first.
 */
export class LocalMutex {
  private locked = false;
  private readonly waiters: Array<{ grant: () => void }> = [];

  get isIdle(): boolean {
    return !this.locked && this.waiters.length === 0;
  }

  tryLock(): boolean {
    if (this.locked) return false;
    this.locked = true;
    return true;
  }

  /** Resolves when this caller holds the local mutex; rejects with `signal.reason` on abort. */
  lock(signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.reject(signal.reason);
    if (this.tryLock()) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const waiter = {
        grant: () => {
          signal.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      const onAbort = () => {
        const index = this.waiters.indexOf(waiter);
        if (index >= 0) this.waiters.splice(index, 1);
        reject(signal.reason);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  /** Hands the mutex to the next waiter in arrival order, or frees it. */
  unlock(): void {
    const next = this.waiters.shift();
    if (next) next.grant();
    else this.locked = false;
  }
}

/** Local mutexes by name, dropped when idle so the map does not grow. */
export class LocalMutexMap {
  private readonly mutexes = new Map<string, LocalMutex>();

  get(name: string): LocalMutex {
    let mutex = this.mutexes.get(name);
    if (!mutex) {
      mutex = new LocalMutex();
      this.mutexes.set(name, mutex);
    }
    return mutex;
  }

  unlock(name: string): void {
    const mutex = this.mutexes.get(name);
    if (!mutex) return;
    mutex.unlock();
    if (mutex.isIdle) this.mutexes.delete(name);
  }

  /** Removes the entry if an aborted waiter left it idle. */
  prune(name: string): void {
    if (this.mutexes.get(name)?.isIdle) this.mutexes.delete(name);
  }
}
