/**
 * Stand-in for real work: waits `ms`. With a signal it stops as soon as the
 * signal aborts (rejecting with its reason), the way real work should stop
 * when leadership or a lock is lost.
 */
export function simulateWork(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
