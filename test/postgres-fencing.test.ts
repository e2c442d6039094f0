// The README's PostgreSQL fencing recipe against a real, throwaway PostgreSQL (Debian's
// postgresql package, see scripts/ensure-postgres.sh) and a real etcd: the database refuses the
// write of a stale holder (frozen with SIGSTOP past its TTL, or force-released) once a newer
// holder wrote, and accepts every write of the current holder. Skipped, with the reason, where
// PostgreSQL cannot be found or started.
import { after, afterEach, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { LockService } from '../lib/index.js';
import { etcdFixture } from './harness/etcd.js';
import { spawnNodeScript, type NodeProcess } from './harness/processes.js';
import { findPostgres, startPostgres, type PostgresServer } from './harness/postgres.js';
import { closeApps, createApp, uniqueNamespace } from './support/apps.js';
import { FENCED_TABLE, FENCED_UPDATE } from './support/fenced-sql.js';

describe('fencing tokens in PostgreSQL (the README recipe, real PostgreSQL and etcd)', () => {
  const etcd = etcdFixture();
  let pg: PostgresServer | undefined;
  let unavailable = '';
  const holders: NodeProcess[] = [];

  before(async () => {
    const found = findPostgres();
    if ('missing' in found) {
      unavailable = found.missing;
      return;
    }
    try {
      pg = await startPostgres(found.bin);
      await pg.sql(FENCED_TABLE);
    } catch (err) {
      unavailable = `PostgreSQL could not be started: ${(err as Error).message}`;
    }
  });
  after(() => pg?.stop());
  afterEach(async () => {
    for (const holder of holders.splice(0)) {
      if (holder.pid !== undefined) {
        try {
          process.kill(holder.pid, 'SIGCONT');
        } catch {
          // already gone
        }
      }
      await holder.kill('SIGKILL');
    }
    await closeApps();
  });

  const write = (id: string, state: string, token: bigint) => pg!.sql(FENCED_UPDATE, { id, state, token: token.toString() }).then(Number);
  const row = async (id: string) => {
    const [state, token] = (await pg!.sql(`SELECT state, fencing_token FROM invoices WHERE id = :'id'`, { id })).split('|');
    return { state, token: BigInt(token!) };
  };

  it('a holder frozen (SIGSTOP) past its TTL is refused after the next holder wrote; the current holder\'s writes succeed', async (t) => {
    if (!pg) return t.skip(unavailable);
    const ns = uniqueNamespace('pg-stop');
    await pg.sql(`INSERT INTO invoices (id, state) VALUES ('inv-1', 'new')`);
    const frozen = spawnNodeScript('test/fixtures/fenced-sql-holder.js', {
      name: 'frozen',
      args: [JSON.stringify({ hosts: etcd().endpoint, namespace: ns, identity: 'frozen', ttl: 2, psql: pg.psql })],
    });
    holders.push(frozen);
    await frozen.waitForMessage('ready', 30_000);
    frozen.send({ type: 'acquire', name: 'invoice' });
    const first = BigInt(String((await frozen.waitForMessage('acquired', 20_000)).token));
    frozen.send({ type: 'write', id: 'inv-1', state: 'paid' });
    assert.equal((await frozen.waitForMessage('wrote', 20_000)).rows, 1);
    frozen.send({ type: 'write', id: 'inv-1', state: 'paid+receipt' });
    assert.equal((await frozen.waitForMessage('wrote', 20_000)).rows, 1, 'the same holder writes again with the same token');

    process.kill(frozen.pid!, 'SIGSTOP');
    // While it is frozen its lease expires and the next holder gets the lock and writes.
    const next = await createApp({ hosts: etcd().endpoint, namespace: ns, identity: 'next', sessionTtl: 2 });
    const hold = await next.get(LockService).acquire('invoice', { timeout: 30_000 });
    assert.ok(hold.fencingToken > first);
    assert.equal(await write('inv-1', 'refunded', hold.fencingToken), 1);

    process.kill(frozen.pid!, 'SIGCONT');
    // The resumed process writes with its old token, as code that does not check its hold would.
    frozen.send({ type: 'write', id: 'inv-1', state: 'shipped' });
    const stale = await frozen.waitForMessage('wrote', 20_000);
    assert.equal(stale.rows, 0, 'the database refuses the stale holder');
    assert.equal(stale.held, false, 'and the library already knew the hold was gone');
    assert.deepEqual(await row('inv-1'), { state: 'refunded', token: hold.fencingToken });
    assert.equal(await write('inv-1', 'refunded+note', hold.fencingToken), 1, 'the current holder still writes');
    await hold.release();
  });

  it('a holder whose lock was force-released is refused after the next holder wrote', async (t) => {
    if (!pg) return t.skip(unavailable);
    const ns = uniqueNamespace('pg-force');
    await pg.sql(`INSERT INTO invoices (id, state) VALUES ('inv-2', 'new')`);
    const [a, b, operator] = await Promise.all(['a', 'b', 'operator'].map((identity) => createApp({ hosts: etcd().endpoint, namespace: ns, identity })));
    const old = await a!.get(LockService).acquire('invoice');
    assert.equal(await write('inv-2', 'a', old.fencingToken), 1);
    const waiting = b!.get(LockService).acquire('invoice');
    assert.ok(await operator!.get(LockService).forceRelease('invoice'));
    const current = await waiting;
    assert.equal(await write('inv-2', 'b', current.fencingToken), 1);
    assert.equal(await write('inv-2', 'a-late', old.fencingToken), 0, 'refused');
    assert.deepEqual(await row('inv-2'), { state: 'b', token: current.fencingToken });
    await current.release();
  });
});
