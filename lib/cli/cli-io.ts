// What a CLI run reads and writes: the process's streams in main.ts, fakes in tests.

/** The streams, environment and stop signal of one CLI run. */
export interface CliIo {
  stdout: { write(text: string): unknown; isTTY?: boolean };
  /** Prompts, the audit log line of `release`, and errors. */
  stderr: { write(text: string): unknown };
  /** Where the confirmation of `release` is read from. */
  stdin: NodeJS.ReadableStream;
  env: NodeJS.ProcessEnv;
  /** Stops `inspect --watch` (main.ts aborts it on SIGINT and SIGTERM). */
  signal?: AbortSignal;
}
