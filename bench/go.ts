// The Go yardstick (bench/go/yardstick: etcd's own concurrency.Mutex and Election) for the
// bench: scripts/ensure-go.sh, then a cached GOPATH-mode build (the approach of
// test/support/go-peer.ts, whose GoPeer process wrapper is reused: same flags, same JSON lines).
// Never rejects: a machine without Go gets { unavailable } and the Go parts are skipped, saying so.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { GoPeer, startGoPeer } from '../test/support/go-peer.js';

export type GoBuild = { binary: string; goVersion: string; unavailable?: undefined } | { binary?: undefined; unavailable: string };

function run(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', (err) => resolve({ code: 127, stdout, stderr: `${stderr}${cmd}: ${err.message}\n` }));
    child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
}

const lastLines = (text: string) => text.trim().split('\n').filter(Boolean).slice(-3).join(' | ');

/** Builds (or finds in .cache/go-bin) the yardstick for the Go toolchain ensure-go.sh reports. */
export async function prepareYardstick(root: string): Promise<GoBuild> {
  try {
    const ensure = await run('bash', [path.join(root, 'scripts', 'ensure-go.sh')], { cwd: root });
    if (ensure.code !== 0) return { unavailable: `Go toolchain not available: ${lastLines(ensure.stderr) || `ensure-go.sh exited with ${ensure.code}`}` };
    const use = /^ensure-go: use GO=(\S+) GOPATH=(\S+)/m.exec(ensure.stdout);
    const goBin = use?.[1] ?? 'go';
    const gopath = use?.[2] ?? '/usr/share/gocode';
    const version = await run(goBin, ['version']);
    if (version.code !== 0) return { unavailable: `${goBin} version failed: ${lastLines(version.stderr)}` };
    const goVersion = version.stdout.trim().replace(/^go version /, '');
    const source = path.join(root, 'bench', 'go', 'yardstick');
    const hash = createHash('sha256').update(version.stdout).update(gopath);
    for (const file of readdirSync(source).filter((f) => f.endsWith('.go')).sort()) hash.update(file).update(readFileSync(path.join(source, file)));
    const binDir = path.join(root, '.cache', 'go-bin');
    const binary = path.join(binDir, `yardstick-${hash.digest('hex').slice(0, 16)}`);
    if (existsSync(binary)) return { binary, goVersion };
    mkdirSync(binDir, { recursive: true });
    const cache = path.join(root, '.cache', 'go-build');
    mkdirSync(cache, { recursive: true });
    const partial = `${binary}.${process.pid}.tmp`;
    const build = await run(goBin, ['build', '-o', partial, '.'], {
      cwd: source,
      env: { ...process.env, GO111MODULE: 'off', GOPATH: gopath, GOCACHE: cache, GOFLAGS: '' },
    });
    if (build.code !== 0) {
      rmSync(partial, { force: true });
      // The toolchain is there but the program does not build: a real failure, not a skip.
      throw new Error(`go build in ${source} failed (exit ${build.code}):\n${build.stderr}`);
    }
    renameSync(partial, binary);
    for (const stale of readdirSync(binDir)) {
      if (/^yardstick-[0-9a-f]{16}$/.test(stale) && path.join(binDir, stale) !== binary) rmSync(path.join(binDir, stale), { force: true });
    }
    return { binary, goVersion };
  } catch (err) {
    if (err instanceof Error && err.message.startsWith('go build')) throw err;
    return { unavailable: `preparing the Go yardstick failed: ${err instanceof Error ? err.message : String(err)}` };
  }
}

/** One yardstick process (one Go client, one session). */
export async function startYardstick(binary: string, endpoint: string, id: string, ttl = 10): Promise<GoPeer> {
  const peer = startGoPeer(binary, { endpoint, id, ttl });
  await peer.waitForMessage('ready', 30_000);
  return peer;
}

export type { GoPeer };
