#!/usr/bin/env node
// `npm run bench`: dependencies -> etcd binaries -> compile into .cache/bench-build (never
// touches build/ or dist/) -> node .cache/bench-build/bench/run.js, which starts its own etcd,
// builds the Go yardstick (bench/go, when scripts/ensure-go.sh can provide Go), runs the seven
// sections and writes docs/bench/{results.json,results.md,chart.svg} and the generated block of
// docs/bench/README.md.
//
// Usage:
//   npm run bench                       full run (about 5-8 minutes on 2 busy cores)
//   npm run bench -- --quick            small samples: a smoke run of the pipeline (not for quoting)
//   npm run bench -- --no-build         reuse .cache/bench-build
//   npm run bench -- --report-only      re-render docs/bench from docs/bench/results.json
//   npm run bench -- --out <dir>        write somewhere else than docs/bench
// Env: BENCH_ETCD_DATA=tmpfs|disk (etcd data dir; default tmpfs when /dev/shm exists),
//      BENCH_SECTIONS=1,3 (only these sections).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const outDir = path.join(root, '.cache', 'bench-build');
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

/**
 * tsc emits JavaScript even when it reports type errors. The tree is shared and edited
 * while people work, so an error outside lib/ and bench/ (a test being written) must not
 * stop the bench; an error in what the bench runs must.
 */
function blockingErrors(output) {
  return output
    .split('\n')
    .filter((line) => /error TS\d+/.test(line))
    .filter((line) => /^(lib|bench)\//.test(line.replace(/\\/g, '/')));
}

async function main() {
  const args = process.argv.slice(2);
  const noBuild = args.includes('--no-build');
  const passThrough = args.filter((a) => a !== '--no-build');
  if (!args.includes('--report-only')) {
    if (!existsSync(tsc)) {
      const lock = existsSync(path.join(root, 'package-lock.json'));
      console.log(`bench: node_modules missing, running npm ${lock ? 'ci' : 'install'}`);
      if ((await run('npm', [lock ? 'ci' : 'install'])).code !== 0) throw new Error('npm install failed');
    }
    if ((await run('bash', [path.join('scripts', 'ensure-etcd.sh')])).code !== 0) {
      throw new Error('etcd is not available (see ensure-etcd output above)');
    }
  }
  if (!noBuild || !existsSync(path.join(outDir, 'bench', 'run.js'))) {
    await rm(outDir, { recursive: true, force: true });
    const started = Date.now();
    const { code, output } = await run('npx', ['tsc', '-p', 'tsconfig.json', '--outDir', outDir, '--pretty', 'false'], { capture: true });
    if (code !== 0) {
      const blocking = blockingErrors(output);
      if (blocking.length > 0 || !existsSync(path.join(outDir, 'bench', 'run.js'))) {
        process.stderr.write(output);
        throw new Error('compile failed (tsc output above)');
      }
      const others = output.split('\n').filter((l) => /error TS\d+/.test(l));
      console.log(`bench: tsc reported ${others.length} error(s) outside lib/ and bench/ (ignored):\n  ${others.join('\n  ')}`);
    }
    console.log(`bench: compiled into ${path.relative(root, outDir)} (${((Date.now() - started) / 1000).toFixed(1)}s)`);
  }
  const nodeOptions = [process.env.NODE_OPTIONS, '--enable-source-maps'].filter(Boolean).join(' ');
  const child = spawn(process.execPath, [path.join(outDir, 'bench', 'run.js'), ...passThrough], {
    cwd: root,
    stdio: 'inherit',
    env: { ...process.env, NODE_OPTIONS: nodeOptions },
  });
  const forward = (signal) => child.kill(signal);
  process.on('SIGTERM', forward);
  process.on('SIGINT', forward);
  return new Promise((resolve) => child.on('close', (code, signal) => resolve(code ?? (signal ? 1 : 0))));
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(`bench: ${err.message}`);
    process.exit(1);
  },
);
