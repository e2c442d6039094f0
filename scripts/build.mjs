#!/usr/bin/env node
// Clean build of everything:
//   tsconfig.json        -> build/     (lib + test + sample-app + bench, what the tests run)
//   tsconfig.build.json  -> dist/esm   (published ESM + .d.ts)
//   tsconfig.cjs.json    -> dist/cjs   (published CommonJS + .d.ts)
// then marks each dist flavour with its own package.json so Node picks the right module system
// regardless of the root package's "type": "module".
//
// Usage: node scripts/build.mjs [tsconfig ...]   (default: the three above)
// Any tsc error fails the build with tsc's full output.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const tsc = path.join(root, 'node_modules', '.bin', 'tsc');
const DEFAULT_PROJECTS = ['tsconfig.json', 'tsconfig.build.json', 'tsconfig.cjs.json'];
// dist flavours need a nested package.json: "type" must match the emitted module format.
const FLAVOUR_MARKERS = { 'dist/esm': 'module', 'dist/cjs': 'commonjs' };
// The package's bin (package.json "bin"), relative to each outDir that holds lib/: executable.
const BIN_FILES = { 'dist/esm': 'cli/main.js', 'dist/cjs': 'cli/main.js', build: 'lib/cli/main.js' };

function run(cmd, args) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    child.on('error', (err) => resolve({ code: 127, output: `${output}${err.message}\n` }));
    child.on('close', (code, signal) => resolve({ code: code ?? 128, signal, output }));
  });
}

/** The effective outDir of a project (follows "extends"), relative to the repo root. */
async function outDirOf(project) {
  const { code, output } = await run(tsc, ['-p', project, '--showConfig']);
  if (code !== 0) throw new Error(`tsc --showConfig failed for ${project}:\n${output}`);
  const outDir = JSON.parse(output).compilerOptions?.outDir;
  if (!outDir) throw new Error(`${project} has no compilerOptions.outDir; refusing to guess what to clean`);
  // --showConfig prints paths relative to the config file's own directory.
  return path.relative(root, path.resolve(root, path.dirname(project), outDir));
}

async function main() {
  const projects = process.argv.slice(2).length > 0 ? process.argv.slice(2) : DEFAULT_PROJECTS;
  if (!existsSync(tsc)) {
    throw new Error(`${tsc} not found: run "npm ci" (or "npm install") first`);
  }
  const outDirs = await Promise.all(projects.map(outDirOf));
  for (const dir of new Set(outDirs)) {
    await rm(path.join(root, dir), { recursive: true, force: true });
  }

  // tsc is single threaded; the projects are independent, so overlap them.
  const started = Date.now();
  const results = await Promise.all(projects.map((p) => run(tsc, ['-p', p, '--pretty', 'false'])));
  const failed = results
    .map((r, i) => ({ ...r, project: projects[i] }))
    .filter((r) => r.code !== 0);
  for (const f of failed) {
    process.stderr.write(`\n--- tsc -p ${f.project} failed (exit ${f.code}${f.signal ? `, ${f.signal}` : ''}) ---\n`);
    process.stderr.write(f.output.endsWith('\n') || f.output === '' ? f.output : `${f.output}\n`);
  }
  if (failed.length > 0) {
    throw new Error(`build failed: ${failed.map((f) => f.project).join(', ')}`);
  }

  for (const [dir, type] of Object.entries(FLAVOUR_MARKERS)) {
    if (!outDirs.includes(dir)) continue;
    await mkdir(path.join(root, dir), { recursive: true });
    await writeFile(path.join(root, dir, 'package.json'), `${JSON.stringify({ type }, null, 2)}\n`);
  }
  for (const [dir, file] of Object.entries(BIN_FILES)) {
    const bin = path.join(root, dir, file);
    if (outDirs.includes(dir) && existsSync(bin)) await chmod(bin, 0o755);
  }
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  console.log(`build: ${projects.join(', ')} -> ${outDirs.join(', ')} (${seconds}s)`);
}

main().catch((err) => {
  console.error(`build: ${err.message}`);
  process.exit(1);
});
