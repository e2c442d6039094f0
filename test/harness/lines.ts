// Small helpers shared by the harness modules.

/** Splits a byte stream into complete lines (the last, unterminated line is held back). */
export class LineSplitter {
  private partial = '';

  push(chunk: string | Buffer): string[] {
    const parts = (this.partial + chunk.toString()).split('\n');
    this.partial = parts.pop() ?? '';
    return parts.map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l));
  }

  /** The unterminated tail seen so far. */
  pending(): string {
    return this.partial;
  }

  /** Whatever is left when the stream ends. */
  flush(): string[] {
    const rest = this.partial;
    this.partial = '';
    return rest ? [rest] : [];
  }
}

/** Keeps the last `max` lines of a stream, for error messages ("what did etcd say?"). */
export class LineTail {
  private readonly lines: string[] = [];
  private readonly splitter = new LineSplitter();

  constructor(private readonly max = 60) {}

  /** Records a chunk; returns the complete lines it finished. */
  push(chunk: string | Buffer): string[] {
    const lines = this.splitter.push(chunk);
    for (const line of lines) this.remember(line);
    return lines;
  }

  /** The last `n` complete lines plus any unterminated last line. */
  text(n = this.max): string {
    const partial = this.splitter.pending();
    const all = partial ? [...this.lines, partial] : this.lines;
    return all.slice(-n).join('\n');
  }

  private remember(line: string): void {
    this.lines.push(line);
    if (this.lines.length > this.max) this.lines.shift();
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Like `promise`, but rejects with `message()` after `ms`.
 * The timer is deliberately NOT unref'd: the harness unrefs its child processes so a
 * forgotten one cannot hang a test file, which means an await on a child alone would let
 * the event loop drain and node:test would cancel the test. The pending timer is what keeps
 * the process alive while a test waits.
 */
export function withTimeout<T>(promise: Promise<T>, ms: number, message: () => string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(message())), ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}

/** How a child process ended. */
export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export function describeExit({ code, signal }: ExitInfo): string {
  return signal ? `killed by ${signal}` : `exited with code ${code}`;
}
