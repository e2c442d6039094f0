// Every README TypeScript snippet that is a complete module (it starts with its imports) compiles
// under `strict` against the library's sources, as a user would write it. (Snippets that start
// with a decorator or a call are excerpts of such a module and are not compiled on their own.)
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

describe('README snippets', () => {
  it('every complete TypeScript snippet compiles under strict', () => {
    const readme = readFileSync(path.join(repo, 'README.md'), 'utf8');
    const snippets = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]!).filter((code) => /^import /.test(code.trimStart()));
    assert.ok(snippets.length >= 4, `found ${snippets.length} complete snippets`);
    // Inside the repository, so the snippets resolve @nestjs/*, etcd3 and rxjs from node_modules.
    const dir = path.join(repo, 'build', 'readme-snippets');
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    const files = snippets.map((code, i) => {
      const file = path.join(dir, `snippet-${i + 1}.ts`);
      writeFileSync(file, code);
      return file;
    });
    writeFileSync(
      path.join(dir, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'ES2022', lib: ['ES2022', 'ESNext.Disposable'], module: 'NodeNext', moduleResolution: 'NodeNext',
          strict: true, experimentalDecorators: true, emitDecoratorMetadata: true, noEmit: true, skipLibCheck: true, types: ['node'],
          typeRoots: [path.join(repo, 'node_modules', '@types')],
          baseUrl: repo,
          paths: {
            'nest-etcd-coordination': ['lib/index.ts'],
            'nest-etcd-coordination/health': ['lib/health/index.ts'],
            'nest-etcd-coordination/testing': ['lib/testing/index.ts'],
          },
        },
        files,
      }),
    );
    const tsc = spawnSync(process.execPath, [path.join(repo, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', dir, '--pretty', 'false'], { encoding: 'utf8' });
    const report = `${tsc.stdout}${tsc.stderr}`.replaceAll(dir + path.sep, 'README ');
    assert.equal(tsc.status, 0, `README snippets do not compile:\n${report}\n(snippet n is the n-th \`\`\`ts block that starts with an import)`);
  });
});
