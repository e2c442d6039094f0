#!/usr/bin/env node
// `npm run soak`: dependencies -> etcd binaries -> compile the soak (test/soak/tsconfig.json)
// into .cache/soak-build (never touches build/ or dist/, so it can run next to `npm test`)
// -> node .cache/soak-build/test/soak/run.js, which starts its own etcd, workers, proxies and
// nemesis, prints a summary and writes the JSON result (default under artifacts/).
//
// Usage:
//   npm run soak -- --minutes 5                      single etcd node, 4 workers, random seed
//   npm run soak -- --minutes 3 --cluster            3-member etcd cluster
//   npm run soak -- --minutes 1 --seed 42            the same fault plan as another run with seed 42
//   npm run soak -- --workers 6 --json out.json      more workers; where to write the result
//   npm run soak -- --ttl 3 --permits 2 --quiet 30   session TTL (s), semaphore permits, quiet phase (s)
//   npm run soak -- --no-build ...                   reuse .cache/soak-build
// Exit code: 0 every invariant held, 1 an invariant failed, 2 the soak could not run.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const outDir = path.join(root, '.cache', 'soak-build');
const entry = path.join(outDir, 'test', 'soak', 'run.js');
const tsc = path.join(root, 'node_modules', '.bin', 'tsc');

function run(cmd, args, { capture = false } = {}) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: root, stdio: capture ? ['ignore', 'pipe', 'pipe'] : 'inherit' });
    let output = '';
    if (capture) {
      child.stdout.on('data', (d) => (output += d));
      child.stderr.on('data', (d) => (output += d));
    }
    const forward = (signal) => child.kill(signal);
    process.on('SIGTERM', forward);
    child.on('error', (err) => resolve({ code: 127, output: `${output}${err.message}\n` }));
    child.on('close', (code, signal) => {
      process.off('SIGTERM', forward);
      resolve({ code: code ?? (signal ? 128 + (os.constants.signals[signal] ?? 0) : 1), output });
    });
  });
}

async function main() {
  const args = process.argv.slice(2);
  const noBuild = args.includes('--no-build');
  const passThrough = args.filter((a) => a !== '--no-build');
  if (!args.includes('--help') && !args.includes('-h')) {
    if (!existsSync(tsc)) {
      const lock = existsSync(path.join(root, 'package-lock.json'));
      console.log(`soak: node_modules missing, running npm ${lock ? 'ci' : 'install'}`);
      if ((await run('npm', [lock ? 'ci' : 'install'])).code !== 0) throw new Error('npm install failed');
    }
    if ((await run('bash', [path.join('scripts', 'ensure-etcd.sh')])).code !== 0) {
      throw new Error('etcd is not available (see ensure-etcd output above)');
    }
  }
  if (!noBuild || !existsSync(entry)) {
    await rm(outDir, { recursive: true, force: true });
    const started = Date.now();
    const { code, output } = await run(tsc, ['-p', path.join('test', 'soak', 'tsconfig.json'), '--pretty', 'false'], { capture: true });
    if (code !== 0) {
      process.stderr.write(output);
      throw new Error('compile failed (tsc output above)');
    }
    console.log(`soak: compiled into ${path.relative(root, outDir)} (${((Date.now() - started) / 1000).toFixed(1)}s)`);
  }
  const nodeOptions = [process.env.NODE_OPTIONS, '--enable-source-maps'].filter(Boolean).join(' ');
  const child = spawn(process.execPath, [entry, ...passThrough], {
    cwd: root,
    stdio: 'inherit',
    env: { ...process.env, NODE_OPTIONS: nodeOptions },
  });
  // Ctrl-C reaches the child through the terminal; a plain kill of this script must too.
  // The child's harness stops etcd, the proxies and the workers when it gets either.
  const forward = (signal) => child.kill(signal);
  process.on('SIGTERM', forward);
  process.on('SIGINT', forward);
  return new Promise((resolve) => child.on('close', (code, signal) => resolve(code ?? (signal ? 2 : 0))));
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(`soak: ${err.message}`);
    process.exit(2);
  },
);
