// The CLI's classification of a namespace's keys (lib/cli/classify.ts) and its rendering
// (lib/cli/render.ts), and its option parsing (lib/cli/cli-options.ts): pure, no etcd.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { classify, REASONS, semaphoreView, shapeOf, type RawKey } from '../../lib/cli/classify.js';
import { cell, renderJson, renderText } from '../../lib/cli/render.js';
import { connectionOptions, parsePermits } from '../../lib/cli/cli-options.js';
import { InvalidUsageError } from '../../lib/errors/coordination.errors.js';

let revision = 100n;
const LEASE_A = 0x694d1n;
const LEASE_B = 0x694d2n;
const LEASE_C = 0x694d3n;

function key(key: string, value: string, lease: bigint, options: { touched?: boolean } = {}): RawKey {
  const createRevision = ++revision;
  return { key: Buffer.from(key), value: Buffer.from(value), createRevision, modRevision: options.touched ? createRevision + 50n : createRevision, lease };
}
const hex = (lease: bigint) => lease.toString(16);
const leases = new Map([
  [LEASE_A, { ttlSeconds: 7, grantedTtlSeconds: 10 }],
  [LEASE_B, { ttlSeconds: 9, grantedTtlSeconds: 10 }],
]);

describe('CLI classification (pure)', () => {
  it('a mutex: the oldest key holds, the rest wait in create-revision order; shown as "lock or election" unless told', () => {
    // Listed out of order: the queue order is the create revision, not the key order.
    const holder = key(`ns/job/${hex(LEASE_B)}`, 'b', LEASE_B);
    const waiter = key(`ns/job/${hex(LEASE_A)}`, 'a', LEASE_A);
    const result = classify('ns/', 200n, [waiter, holder], leases);
    assert.equal(result.locks.length, 1);
    const [lock] = result.locks;
    assert.equal(lock!.kind, 'lock or election');
    assert.equal(lock!.holder.value, 'b');
    assert.equal(lock!.holder.fencingToken, holder.createRevision);
    assert.deepEqual(lock!.waiters.map((w) => w.value), ['a']);
    assert.deepEqual(result.unclassified, []);
    assert.equal(classify('ns/', 200n, [holder], leases, { locks: ['job'] }).locks[0]!.kind, 'lock');
    // The fencing epoch goes in the high bits, as the library's tokens.
    assert.equal(classify('ns/', 200n, [holder], leases, { fencingEpoch: 2 }).locks[0]!.holder.fencingToken, (2n << 48n) + holder.createRevision);
  });

  it('an election (by hint, default "leader" in the CLI): leader, proclaimed value, candidates in order; not counted as identities', () => {
    const leader = key(`leader/${hex(LEASE_A)}`, 'proclaimed-v2', LEASE_A);
    const candidate = key(`leader/${hex(LEASE_B)}`, 'b', LEASE_B);
    const result = classify('', 200n, [candidate, leader], leases, { elections: ['leader'] });
    assert.equal(result.locks.length, 0);
    assert.equal(result.elections[0]!.holder.value, 'proclaimed-v2');
    assert.deepEqual(result.elections[0]!.waiters.map((w) => w.value), ['b']);
    assert.deepEqual(result.sessions.find((s) => s.lease === hex(LEASE_A))!.identities, []);
  });

  it('a read/write lock: readers before the first writer hold together; a writer first holds alone', () => {
    const r1 = key(`ns/cfg/read/${hex(LEASE_A)}-0`, 'a', LEASE_A);
    const r2 = key(`ns/cfg/read/${hex(LEASE_B)}-0`, 'b', LEASE_B);
    const w = key(`ns/cfg/write/${hex(LEASE_C)}-0`, 'c', LEASE_C);
    const r3 = key(`ns/cfg/read/${hex(LEASE_A)}-1`, 'a', LEASE_A);
    const readers = classify('ns/', 200n, [r1, r2, w, r3], leases).readWriteLocks[0]!;
    assert.equal(readers.heldAs, 'read');
    assert.deepEqual(readers.holders.map((h) => h.key), [r1, r2].map((k) => k.key.toString()));
    assert.deepEqual(readers.waiters.map((h) => `${h.side}:${h.value}`), ['write:c', 'read:a']);
    const writer = classify('ns/', 200n, [w, r3], leases).readWriteLocks[0]!;
    assert.equal(writer.heldAs, 'write');
    assert.deepEqual(writer.holders.map((h) => h.value), ['c']);
    assert.deepEqual(writer.waiters.map((h) => h.side), ['read']);
    // Go's recipes.RWMutex keys (<name>/write/<unix nanos>) are the same kind.
    const go = key(`ns/go/write/1733100000000000000`, '', LEASE_A);
    assert.equal(classify('ns/', 200n, [go], leases).readWriteLocks[0]!.holders.length, 1);
  });

  it('a semaphore: with --permits holders and waiters are split; without, only the lower bound the keys prove', () => {
    const p = [
      key(`ns/pool/${hex(LEASE_A)}-0`, 'a', LEASE_A),
      key(`ns/pool/${hex(LEASE_B)}-0`, 'b', LEASE_B),
      key(`ns/pool/${hex(LEASE_B)}-1`, 'b', LEASE_B, { touched: true }), // waited, then got its permit
      key(`ns/pool/${hex(LEASE_A)}-1`, 'a', LEASE_A),
    ];
    const known = classify('ns/', 200n, p, leases, { permits: new Map([['pool', 3]]) }).semaphores[0]!;
    assert.deepEqual([known.permits, known.holders.length, known.waiters.length, known.undetermined.length], [3, 3, 1, 0]);
    const unknown = classify('ns/', 200n, p, leases).semaphores[0]!;
    assert.deepEqual([unknown.permits, unknown.holders.length, unknown.undetermined.length], [null, 3, 1]);
    // Only untouched keys: only the oldest is known to hold.
    const two = classify('ns/', 200n, [p[0]!, p[1]!], leases).semaphores[0]!;
    const untouched = semaphoreView('s', [...two.holders, ...two.undetermined], undefined);
    assert.deepEqual([untouched.holders.length, untouched.undetermined.length], [1, 1]);
  });

  it('what it cannot classify: no name, no lease, a lease hex that is not the key\'s lease, an unknown shape, mixed kinds', () => {
    const keys = [
      key('ns/plain', 'x', 0n),
      key(`ns/nolease/${hex(LEASE_A)}`, 'x', 0n),
      key(`ns/wrong/${hex(LEASE_A)}`, 'x', LEASE_B),
      key('ns/config/db.url', 'x', 0n),
      key(`ns/mixed/${hex(LEASE_A)}`, 'a', LEASE_A),
      key(`ns/mixed/${hex(LEASE_A)}-0`, 'a', LEASE_A),
    ];
    const result = classify('ns/', 200n, keys, leases);
    assert.deepEqual([result.locks, result.semaphores, result.readWriteLocks].map((l) => l.length), [0, 0, 0]);
    const why = new Map(result.unclassified.map((u) => [u.key, u.reason]));
    assert.equal(why.get('ns/plain'), REASONS.noName);
    assert.equal(why.get(`ns/nolease/${hex(LEASE_A)}`), REASONS.noLease);
    assert.equal(why.get(`ns/wrong/${hex(LEASE_A)}`), REASONS.leaseMismatch);
    assert.equal(why.get('ns/config/db.url'), REASONS.unknownShape);
    assert.match(why.get(`ns/mixed/${hex(LEASE_A)}`)!, /several kinds.*lock\/election, semaphore/);
    assert.equal(result.unclassified.length, keys.length);
    // One unreadable key spoils its whole name: the queue order would be unknown.
    const spoiled = classify('ns/', 200n, [key(`ns/job/${hex(LEASE_A)}`, 'a', LEASE_A), key('ns/job/zzz', '', 0n)], leases);
    assert.equal(spoiled.locks.length, 0);
    assert.match(spoiled.unclassified.find((u) => u.key.endsWith(hex(LEASE_A)))!.reason, /unreadable keys/);
  });

  it('library records (_coordination:...) are listed, not interpreted; sessions gather the leases with TTL and identities', () => {
    const record = key(`ns/_coordination:members/${hex(LEASE_A)}`, '{"id":"a"}', LEASE_A);
    const lock = key(`ns/job/${hex(LEASE_A)}`, 'a', LEASE_A);
    const orphan = key(`ns/other/${hex(LEASE_C)}`, 'c', LEASE_C); // lease not looked up
    const result = classify('ns/', 200n, [record, lock, orphan], leases);
    assert.deepEqual(result.libraryRecords.map((r) => [r.record, r.keys.length]), [['_coordination:members', 1]]);
    const a = result.sessions.find((s) => s.lease === hex(LEASE_A))!;
    assert.deepEqual([a.ttlSeconds, a.grantedTtlSeconds, a.keys, a.identities], [7, 10, 2, ['a']]);
    const c = result.sessions.find((s) => s.lease === hex(LEASE_C))!;
    assert.deepEqual([c.ttlSeconds, c.identities], [null, ['c']]);
  });

  it('shapeOf follows the key shapes the library writes', () => {
    assert.equal(shapeOf(hex(LEASE_A), LEASE_A), 'session');
    assert.equal(shapeOf(`${hex(LEASE_A)}-z9`, LEASE_A), 'permit');
    assert.equal(shapeOf('read/anything', LEASE_A), 'readWrite');
    assert.deepEqual(shapeOf('read/anything', 0n), { reason: REASONS.noLease });
    assert.deepEqual(shapeOf('ABC', LEASE_A), { reason: REASONS.unknownShape });
  });
});

describe('CLI rendering (pure)', () => {
  const keys = [
    key(`ns/job/${hex(LEASE_A)}`, 'a', LEASE_A),
    key(`ns/job/${hex(LEASE_B)}`, '', LEASE_B),
    key(`ns/leader/${hex(LEASE_B)}`, 'b-value', LEASE_B),
    key('ns/evil\u202e/x', 'x', 0n),
  ];
  const inspection = classify('ns/', 321n, keys, leases, { elections: ['leader'] });
  const context = { endpoints: ['127.0.0.1:2379'], at: new Date('2026-01-01T00:00:00Z') };

  it('text: one row per holder and waiter, identity "(not recorded)" when empty, tokens only for holders', () => {
    const text = renderText(inspection, context);
    assert.match(text, /namespace "ns\/"\s+revision 321/);
    assert.match(text, new RegExp(`job\\s+lock or election\\s+holder\\s+a\\s+${hex(LEASE_A)}\\s+rev ${keys[0]!.createRevision}\\s+${keys[0]!.createRevision}`));
    assert.match(text, new RegExp(`waiter 1\\s+\\(not recorded\\)\\s+${hex(LEASE_B)}\\s+rev ${keys[1]!.createRevision}\\s+-`));
    assert.match(text, /leader\s+leader\s+b-value/);
    assert.match(text, /7 s\s+10 s/);
    // A bidi override in a key is shown, not obeyed.
    assert.match(text, /evil<U\+202E>\/x/);
    assert.doesNotMatch(text, /\u202e/);
  });

  it('JSON: bigints as decimal strings, parseable, the same content', () => {
    const json = JSON.parse(renderJson(inspection, context));
    assert.equal(json.revision, '321');
    assert.equal(json.locks[0].holder.fencingToken, String(keys[0]!.createRevision));
    assert.equal(json.elections[0].holder.value, 'b-value');
    assert.equal(json.unclassified[0].key, 'ns/evil\u202e/x');
    assert.equal(json.at, '2026-01-01T00:00:00.000Z');
  });

  it('cell cuts long values', () => {
    assert.equal(cell('x'.repeat(100), 10), `${'x'.repeat(9)}…`);
  });
});

describe('CLI options (pure)', () => {
  it('endpoints from the flag, else ETCD_ENDPOINTS, ETCDCTL_ENDPOINTS, ETCD_HOSTS; namespace from ETCD_NAMESPACE', () => {
    assert.deepEqual(connectionOptions({}, {}).hosts, ['127.0.0.1:2379']);
    assert.deepEqual(connectionOptions({}, { ETCD_HOSTS: 'h:3' }).hosts, ['h:3']);
    assert.deepEqual(connectionOptions({}, { ETCDCTL_ENDPOINTS: 'h:2', ETCD_HOSTS: 'h:3' }).hosts, ['h:2']);
    assert.deepEqual(connectionOptions({}, { ETCD_ENDPOINTS: 'h:1,h:4', ETCDCTL_ENDPOINTS: 'h:2' }).hosts, ['h:1', 'h:4']);
    assert.deepEqual(connectionOptions({ endpoints: 'f:1' }, { ETCD_ENDPOINTS: 'h:1' }).hosts, ['f:1']);
    assert.equal(connectionOptions({}, { ETCD_NAMESPACE: 'app/' }).namespace, 'app/');
    assert.equal(connectionOptions({ namespace: 'x/' }, { ETCD_NAMESPACE: 'app/' }).namespace, 'x/');
  });

  it('auth from flags or ETCD_USERNAME/ETCD_PASSWORD (etcdctl\'s name:password too); errors never show the password', () => {
    assert.deepEqual(connectionOptions({}, { ETCD_USERNAME: 'u', ETCD_PASSWORD: 'p' }).auth, { username: 'u', password: 'p' });
    assert.deepEqual(connectionOptions({ user: 'u:s3cret:x' }, {}).auth, { username: 'u', password: 's3cret:x' });
    assert.throws(() => connectionOptions({}, { ETCD_PASSWORD: 'hunter2' }), (err: unknown) =>
      err instanceof InvalidUsageError && !err.message.includes('hunter2'));
    assert.throws(() => connectionOptions({ user: 'u' }, {}), InvalidUsageError);
  });

  it('TLS files: --cert needs --key and --cacert; an unreadable file is named, bad values are refused with the module\'s errors', () => {
    assert.throws(() => connectionOptions({ cert: 'c.pem' }, {}), /must be given together/);
    assert.throws(() => connectionOptions({ cert: 'c.pem', key: 'k.pem' }, {}), /need --cacert/);
    assert.throws(() => connectionOptions({}, { ETCD_CACERT: '/nonexistent/ca.pem' }), /cannot read the CA certificate.*\/nonexistent\/ca\.pem.*ENOENT/);
    // The module's checks, named by flag and variable (not "CoordinationModule: invalid option").
    const named = (pattern: RegExp) => (err: unknown) =>
      err instanceof InvalidUsageError && pattern.test(err.message) && !/CoordinationModule/.test(err.message);
    assert.throws(() => connectionOptions({ endpoints: 'no-port' }, {}), named(/^invalid --endpoints \(or ETCD_ENDPOINTS\): .*no-port/));
    assert.throws(() => connectionOptions({ namespace: 'app' }, {}), named(/^invalid --namespace \(or ETCD_NAMESPACE\): /));
    assert.throws(() => connectionOptions({ 'request-timeout': 'soon' }, {}), /--request-timeout must be a whole number/);
    assert.throws(() => connectionOptions({ 'fencing-epoch': '99999' }, {}), named(/^invalid --fencing-epoch: /));
  });

  it('--permits name=n', () => {
    assert.deepEqual([...parsePermits(['pool=3', 'a=b=2'])], [['pool', 3], ['a=b', 2]]);
    assert.throws(() => parsePermits(['pool']), InvalidUsageError);
    assert.throws(() => parsePermits(['pool=0']), InvalidUsageError);
  });
});
