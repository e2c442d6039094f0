// What `npm pack` ships: source maps only with the sources they point to, every build entry of
// package.json "exports", and nothing from the repository's tests or tooling.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { extract, packLibrary } from './support/pack.js';

function filesUnder(dir: string, root = dir): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    return entry.isDirectory() ? filesUnder(full, root) : [path.relative(root, full).split(path.sep).join('/')];
  });
}

describe('the packed tarball', () => {
  const tmp = mkdtempSync(path.join(tmpdir(), 'nec-pack-'));
  const pkg = path.join(tmp, 'package');
  let files: string[] = [];
  before(async () => {
    await extract(await packLibrary(tmp), tmp);
    files = filesUnder(pkg);
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('ships every source map with the sources it names, and every sourceMappingURL has its map', () => {
    const maps = files.filter((f) => f.endsWith('.map'));
    assert.ok(maps.length > 0, 'the build emits source maps');
    const missing: string[] = [];
    for (const map of maps) {
      const json = JSON.parse(readFileSync(path.join(pkg, map), 'utf8')) as { sources: string[]; sourceRoot?: string };
      assert.ok(json.sources.length > 0, `${map} names no source`);
      for (const source of json.sources) {
        const resolved = path.resolve(path.dirname(path.join(pkg, map)), json.sourceRoot ?? '', source);
        if (!resolved.startsWith(pkg + path.sep) || !existsSync(resolved)) missing.push(`${map} -> ${source}`);
      }
    }
    assert.deepEqual(missing, [], 'sources named by maps but not in the tarball');
    for (const js of files.filter((f) => f.endsWith('.js'))) {
      const url = /\/\/# sourceMappingURL=(\S+)\s*$/.exec(readFileSync(path.join(pkg, js), 'utf8'))?.[1];
      if (url) assert.ok(existsSync(path.resolve(path.dirname(path.join(pkg, js)), url)), `${js} points to a missing ${url}`);
    }
  });

  it('holds the entries of package.json "exports" and no tests, builds of tests or tooling', () => {
    const manifest = JSON.parse(readFileSync(path.join(pkg, 'package.json'), 'utf8')) as { exports: Record<string, unknown> };
    const targets: string[] = [];
    const collect = (value: unknown): void => {
      if (typeof value === 'string') targets.push(value.replace(/^\.\//, ''));
      else if (value && typeof value === 'object') Object.values(value).forEach(collect);
    };
    collect(manifest.exports);
    assert.ok(targets.length >= 12);
    for (const target of targets) assert.ok(files.includes(target), `exports names ${target}, which is not packed`);
    const stray = files.filter((f) => /^(test|build|bench|scripts|sample-app|\.cache|node_modules)\//.test(f) || /\.test\.(js|ts)$/.test(f));
    assert.deepEqual(stray, []);
    assert.ok(files.includes('README.md'));
  });
});
