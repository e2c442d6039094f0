// What the numbers were measured on, and which code.
import { execFileSync } from 'node:child_process';
import { readFileSync, realpathSync } from 'node:fs';
import os from 'node:os';

export interface MachineInfo {
  cpuModel: string;
  cores: number;
  memoryGiB: number;
  kernel: string;
  node: string;
  etcd: string;
  etcdDataDir: string;
  /** Filesystem of the etcd data dir, from /proc/mounts (tmpfs = no real fsync cost). */
  etcdDataFs: string;
  etcdDataMount: string;
  loadAverageAtStart: number[];
  loadAverageAtEnd?: number[];
  note: string;
}

export interface CodeInfo {
  commit: string;
  /** Files of lib/ that differ from the commit (the tree is shared and edited while the bench runs). */
  dirtyLibFiles: string[];
}

function cpuModel(): string {
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith('model name'));
    if (line) return line.split(':').slice(1).join(':').trim();
  } catch {
    // not Linux
  }
  return os.cpus()[0]?.model ?? 'unknown';
}

function mountOf(dir: string): { fs: string; mount: string } {
  try {
    const real = realpathSync(dir);
    let best = { fs: 'unknown', mount: '' };
    for (const line of readFileSync('/proc/mounts', 'utf8').split('\n')) {
      const [, mount, fs] = line.split(' ');
      if (!mount || !fs) continue;
      const inside = real === mount || real.startsWith(mount.endsWith('/') ? mount : `${mount}/`);
      if (inside && mount.length >= best.mount.length) best = { fs, mount };
    }
    return best;
  } catch {
    return { fs: 'unknown', mount: '' };
  }
}

export function describeMachine(etcdBinary: string, etcdDataDir: string): MachineInfo {
  let etcd = 'unknown';
  try {
    const out = execFileSync(etcdBinary, ['--version'], { encoding: 'utf8' });
    etcd = /etcd Version:\s*(\S+)/.exec(out)?.[1] ?? out.split('\n')[0]!.trim();
  } catch {
    // reported as unknown
  }
  const { fs, mount } = mountOf(etcdDataDir);
  return {
    cpuModel: cpuModel(),
    cores: os.cpus().length,
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    etcd,
    etcdDataDir,
    etcdDataFs: fs,
    etcdDataMount: mount,
    loadAverageAtStart: os.loadavg().map((v) => Math.round(v * 100) / 100),
    note: 'etcd, the runner and its worker processes share the machine (a single etcd member, loopback only)',
  };
}

export function describeCode(root: string): CodeInfo {
  const git = (args: string[]) => {
    try {
      return execFileSync('git', args, { cwd: root, encoding: 'utf8' });
    } catch {
      return '';
    }
  };
  // Porcelain lines are "XY path": keep the leading status columns (no trim before slicing).
  const dirty = git(['status', '--porcelain', '--', 'lib'])
    .split('\n')
    .filter((l) => l.length > 3)
    .map((l) => l.slice(3));
  return { commit: git(['rev-parse', '--short', 'HEAD']).trim() || 'unknown', dirtyLibFiles: dirty };
}

/** Cumulative CPU jiffies of the whole machine (/proc/stat "cpu" line): busy and total. */
export function cpuTimes(): { busy: number; total: number } | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n').find((l) => l.startsWith('cpu '));
    if (!line) return undefined;
    const v = line.trim().split(/\s+/).slice(1).map(Number);
    const total = v.reduce((a, b) => a + b, 0);
    const idle = (v[3] ?? 0) + (v[4] ?? 0); // idle + iowait
    return { busy: total - idle, total };
  } catch {
    return undefined;
  }
}

/** Percentage of all cores busy between two cpuTimes() readings (100 = every core busy). */
export function cpuBusyPercent(from: ReturnType<typeof cpuTimes>, to: ReturnType<typeof cpuTimes>): number | undefined {
  if (!from || !to || to.total <= from.total) return undefined;
  return Math.round(((to.busy - from.busy) / (to.total - from.total)) * 1000) / 10;
}
