// `npm pack` of this repository, as a user's `npm install nest-etcd-coordination` gets it.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { BUILD_ROOT } from '../harness/processes.js';

const run = promisify(execFile);

/** The repository root (build/ sits in it); overridable for out-of-tree builds. */
export const REPO = process.env.REPO_ROOT ?? path.resolve(BUILD_ROOT, '..');

/** Packs the repository (dist/ must be built) into `destDir`; resolves with the tarball's path. */
export async function packLibrary(destDir: string): Promise<string> {
  if (!existsSync(path.join(REPO, 'dist', 'esm', 'index.js'))) throw new Error('dist/ is missing: run "npm run build" first');
  mkdirSync(destDir, { recursive: true });
  const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', destDir], { cwd: REPO, timeout: 120_000 });
  const [info] = JSON.parse(stdout) as { filename: string }[];
  return path.join(destDir, info!.filename);
}

/** Extracts a tarball made by npm pack into `dir` (its entries are under package/). */
export async function extract(tarball: string, dir: string): Promise<void> {
  mkdirSync(dir, { recursive: true });
  await run('tar', ['-xzf', tarball, '-C', dir], { timeout: 60_000 });
}
