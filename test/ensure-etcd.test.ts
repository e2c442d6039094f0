// scripts/ensure-etcd.sh must say what failed in every failure path (it used to exit silently
// when `etcd --version` failed, under set -e + pipefail). Runs the script against stub binaries
// in a temp dir; ENSURE_ETCD_NO_INSTALL=1 and a stub apt-get that records calls make sure no
// test can ever install anything.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const script = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'scripts', 'ensure-etcd.sh');

function stub(dir: string, name: string, body: string): void {
  const file = path.join(dir, name);
  writeFileSync(file, `#!/bin/sh\n${body}\n`);
  chmodSync(file, 0o755);
}

function run(bin: string, env: NodeJS.ProcessEnv = {}): { status: number | null; stdout: string; stderr: string } {
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'ETCD_BIN' && k !== 'ENSURE_ETCD_NO_INSTALL'));
  const res = spawnSync('bash', [script], {
    encoding: 'utf8',
    timeout: 30_000,
    env: { ...inherited, PATH: `${bin}:/usr/bin:/bin`, ENSURE_ETCD_NO_INSTALL: '1', ...env },
  });
  return { status: res.status, stdout: res.stdout, stderr: res.stderr };
}

describe('scripts/ensure-etcd.sh failure messages', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ensure-etcd-test-'));
  const bin = path.join(dir, 'bin');
  mkdirSync(bin);
  // Must never run: the script may only install when allowed to.
  stub(bin, 'apt-get', `touch "${dir}/apt-get-called"; exit 1`);
  const good = { etcd: 'echo "etcd Version: 3.4.23"; echo "Git SHA: stub"', etcdctl: 'echo "etcdctl version: 3.4.23"; echo "API version: 3.4"' };

  it('etcd --version fails: names the command, its exit code and its output', () => {
    stub(bin, 'etcd', 'echo "cannot execute binary file: Exec format error" >&2; exit 126');
    stub(bin, 'etcdctl', good.etcdctl);
    const res = run(bin);
    assert.equal(res.status, 1, res.stderr);
    assert.match(res.stderr, new RegExp(`${bin.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/etcd --version\` failed with exit code 126`));
    assert.match(res.stderr, /Exec format error/);
  });

  it('etcd prints no version: says so and shows what it printed', () => {
    stub(bin, 'etcd', 'echo "something else entirely"');
    stub(bin, 'etcdctl', good.etcdctl);
    const res = run(bin);
    assert.equal(res.status, 1, res.stderr);
    assert.match(res.stderr, /etcd --version` did not report a version/);
    assert.match(res.stderr, /something else entirely/);
  });

  it('etcd too old: names the version found', () => {
    stub(bin, 'etcd', 'echo "etcd Version: 3.3.25"');
    stub(bin, 'etcdctl', good.etcdctl);
    const res = run(bin);
    assert.equal(res.status, 1, res.stderr);
    assert.match(res.stderr, /is etcd 3\.3\.25; v3\.4 or newer is required/);
  });

  it('etcdctl version fails: names the command, its exit code and its output', () => {
    stub(bin, 'etcd', good.etcd);
    stub(bin, 'etcdctl', 'echo "etcdctl: segfault" >&2; exit 139');
    const res = run(bin);
    assert.equal(res.status, 1, res.stderr);
    assert.match(res.stderr, /etcdctl version` failed with exit code 139/);
    assert.match(res.stderr, /etcdctl: segfault/);
  });

  it('ETCD_BIN without the binaries: names what is missing', () => {
    const empty = path.join(dir, 'empty');
    mkdirSync(empty, { recursive: true });
    const res = run(bin, { ETCD_BIN: empty });
    assert.equal(res.status, 1, res.stderr);
    assert.match(res.stderr, /does not provide: etcd \(server.*etcdctl \(client/);
  });

  it('working stubs: succeeds and prints the versions (the checks above can pass)', () => {
    stub(bin, 'etcd', good.etcd);
    stub(bin, 'etcdctl', good.etcdctl);
    const res = run(bin);
    assert.equal(res.status, 0, res.stderr);
    assert.match(res.stdout, /etcd 3\.4\.23 at .*\/bin\/etcd; etcdctl 3\.4\.23 at/);
  });

  it('never ran apt-get', () => {
    assert.equal(existsSync(path.join(dir, 'apt-get-called')), false);
    rmSync(dir, { recursive: true, force: true });
  });
});
