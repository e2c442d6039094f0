#!/usr/bin/env node
// The package's bin, nest-etcd-coordination (see cli.ts and `nest-etcd-coordination --help`).
import { runCli } from './cli.js';

const stop = new AbortController();
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => stop.abort());

runCli(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  stdin: process.stdin,
  env: process.env,
  signal: stop.signal,
}).then(
  (code) => {
    process.exitCode = code;
    // Nothing of ours is left open; stdin may be (a terminal), and must not keep the process.
    process.stdin.unref?.();
  },
  (err: unknown) => {
    process.stderr.write(`error: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
