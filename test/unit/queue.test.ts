// The pure parts of the queue engine: turn policies, the name registry, key shapes, timeouts,
// and the check that etcd3's internals our watch workaround relies on are there.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Etcd3 } from 'etcd3';
import { permitsPolicy, predecessorPolicy } from '../../lib/queue/turn-policy.js';
import { KEY_SHAPES, NameRegistry } from '../../lib/queue/name-registry.js';
import { MAX_TIMEOUT_MS, validateAcquireOptions, validateTimeout } from '../../lib/queue/queue-spec.js';
import { missingEtcd3Internals } from '../../lib/etcd/etcd3-internals.js';
import { prefixRangeEnd } from '../../lib/etcd/keys.js';
import { InvalidUsageError, NameInUseError } from '../../lib/errors/coordination.errors.js';

const key = (s: string) => Buffer.from(s);
const older = (...entries: Array<[string, number]>) => entries.map(([k, rev]) => ({ key: key(k), createRevision: BigInt(rev) }));
const range = (prefix: string) => ({ key: key(prefix), rangeEnd: prefixRangeEnd(key(prefix)) });

describe('predecessor policy (mutex, election, read, write)', () => {
  const policy = predecessorPolicy(range('n/'));

  it('holds when no key is older than ours', () => {
    assert.deepEqual(policy.standing([], false, 10n), { holds: true });
  });

  it('a waiter in the middle (more older keys) waits for its predecessor\'s deletion and then re-checks', () => {
    // The predecessor is itself a waiter: it may leave (abort) while older keys still hold, so its
    // deletion must NOT hand us the turn. This is the case the re-check-free hand-off must never cover.
    const standing = policy.standing(older(['n/b', 7]), true, 10n);
    assert.equal(standing.holds, false);
    assert.ok(!standing.holds && standing.wait.on === 'delete' && standing.wait.key.toString() === 'n/b');
  });

  it('a waiter that read every older key (at most two, no more) follows all of them', () => {
    const standing = policy.standing(older(['n/b', 7], ['n/a', 5]), false, 10n);
    assert.ok(!standing.holds && standing.wait.on === 'turn');
    assert.ok(!standing.holds && standing.wait.on === 'turn' && standing.wait.older.length === 2, 'both older keys are tracked');
    // Applying the deletion of the predecessor (a waiter giving up) leaves the holder: still waiting.
    const afterB = policy.standing(older(['n/a', 5]), false, 10n);
    assert.ok(!afterB.holds && afterB.wait.on === 'turn');
  });

  it('the next in line (its predecessor is the only older key: the holder) takes the turn on that deletion', () => {
    const standing = policy.standing(older(['n/b', 7]), false, 10n);
    assert.ok(!standing.holds && standing.wait.on === 'turn');
    assert.ok(!standing.holds && standing.wait.on === 'turn' && standing.wait.maxCreateRevision === 10n);
    assert.ok(!standing.holds && standing.wait.on === 'turn' && standing.wait.watch.toString() === 'n/', 'watches the name: our own key too');
  });

  it('a reader next in line watches the whole name (its own key is under read/) but is handed the turn only by writers', () => {
    const reader = predecessorPolicy(range('rw/write/'), key('rw/'));
    const standing = reader.standing(older(['rw/write/a', 3]), false, 10n);
    assert.ok(!standing.holds && standing.wait.on === 'turn' && standing.wait.watch.toString() === 'rw/');
    assert.ok(!standing.holds && standing.wait.on === 'turn' && standing.wait.blocking.key.toString() === 'rw/write/');
  });

  it('reads two older keys and never re-puts its key', () => {
    assert.equal(policy.olderLimit, 2);
    assert.equal(policy.touchOnGrant, false, 'a re-put would reorder Go RWMutex peers, which order by mod revision');
  });
});

describe('permits policy (semaphore)', () => {
  const policy = permitsPolicy(range('s/'), 3);

  it('holds while fewer than permits keys are older', () => {
    assert.deepEqual(policy.standing([], false, 9n), { holds: true });
    assert.deepEqual(policy.standing(older(['s/b', 5], ['s/a', 4]), false, 9n), { holds: true });
  });

  it('the first waiter (exactly permits older keys) watches the range for an older deletion', () => {
    const standing = policy.standing(older(['s/c', 6], ['s/b', 5], ['s/a', 4]), false, 9n);
    assert.ok(!standing.holds && standing.wait.on === 'turn');
    assert.ok(!standing.holds && standing.wait.on === 'turn' && standing.wait.maxCreateRevision === 9n);
  });

  it('the second waiter (permits + 1 older keys, all read) counts the older deletions too', () => {
    const standing = policy.standing(older(['s/d', 7], ['s/c', 6], ['s/b', 5], ['s/a', 4]), false, 9n);
    assert.ok(!standing.holds && standing.wait.on === 'turn' && standing.wait.older.length === 4);
  });

  it('a later waiter watches its predecessor for a change (its touch or its deletion)', () => {
    const standing = policy.standing(older(['s/e', 8], ['s/d', 7], ['s/c', 6], ['s/b', 5]), true, 9n);
    assert.ok(!standing.holds && standing.wait.on === 'change' && standing.wait.key.toString() === 's/e');
  });

  it('reads permits + 1 older keys and touches its key when granted after a wait', () => {
    assert.equal(policy.olderLimit, 4);
    assert.equal(policy.touchOnGrant, true);
  });

  it('permits = 1 behaves like a mutex for holding', () => {
    const one = permitsPolicy(range('s/'), 1);
    assert.deepEqual(one.standing([], false, 3n), { holds: true });
    assert.equal(one.standing(older(['s/a', 2]), false, 3n).holds, false);
  });
});

describe('name registry', () => {
  it('refuses one name as two kinds at once, and frees it when the last use ends', () => {
    const names = new NameRegistry();
    const endA = names.use('x', 'mutex');
    const endB = names.use('x', 'mutex');
    assert.throws(() => names.use('x', 'election'), (err: unknown) => err instanceof NameInUseError && err.code === 'NAME_IN_USE' && err.inUseAs === 'mutex');
    endA();
    endA(); // idempotent: does not end B's use
    assert.throws(() => names.use('x', 'read/write lock'), NameInUseError);
    endB();
    assert.equal(names.size, 0);
    const endC = names.use('x', 'read/write lock');
    endC();
  });

  it('a reserved name stays taken', () => {
    const names = new NameRegistry();
    names.reserve('leader', 'election');
    assert.throws(() => names.use('leader', 'mutex'), /already in use as election/);
    names.use('leader', 'election')();
    assert.equal(names.size, 1);
  });
});

describe('key shapes', () => {
  it('tell session keys, permit keys and read/write keys apart', () => {
    assert.ok(KEY_SHAPES.session.test('694d8b1a2c3e4f5a'));
    assert.ok(!KEY_SHAPES.session.test('694d8b1a2c3e4f5a-0'));
    assert.ok(KEY_SHAPES.permit.test('694d8b1a2c3e4f5a-1z'));
    assert.ok(!KEY_SHAPES.permit.test('write/694d-1'));
    assert.ok(KEY_SHAPES.readWrite.test('read/1700000000000000000'));
    assert.ok(KEY_SHAPES.readWrite.test('write/694d-3'));
    assert.ok(!KEY_SHAPES.readWrite.test('694d8b1a'));
  });
});

describe('acquire options', () => {
  it('accept no timeout, Infinity, 0 and 2^31-1 ms', () => {
    assert.equal(validateTimeout(undefined, 'acquire'), undefined);
    assert.equal(validateTimeout(Infinity, 'acquire'), undefined);
    assert.equal(validateTimeout(0, 'acquire'), 0);
    assert.equal(validateTimeout(MAX_TIMEOUT_MS, 'acquire'), MAX_TIMEOUT_MS);
  });

  it('refuse timeouts Node timers cannot keep (they would fire after 1 ms), negatives and non-numbers', () => {
    for (const bad of [MAX_TIMEOUT_MS + 1, 2 ** 40, -1, NaN, -Infinity, '100', null]) {
      assert.throws(() => validateTimeout(bad, 'acquire'), (err: unknown) => err instanceof InvalidUsageError && /timeout/.test(err.message), String(bad));
    }
  });

  it('refuse a signal that is not an AbortSignal and options that are not an object', () => {
    assert.throws(() => validateAcquireOptions({ signal: {} }), /AbortSignal/);
    assert.throws(() => validateAcquireOptions(null), /must be an object/);
    assert.equal(validateAcquireOptions({}), undefined);
  });
});

describe('etcd3 internals', () => {
  it('the installed etcd3 has every field the refused-watch recovery relies on', () => {
    // No connection is made: etcd3 connects lazily.
    const client = new Etcd3({ hosts: '127.0.0.1:1' });
    try {
      assert.deepEqual(missingEtcd3Internals(client), []);
    } finally {
      client.close();
    }
  });

  it('names what is missing on a client without them', () => {
    assert.deepEqual(missingEtcd3Internals({} as Etcd3), ['watchManager', 'pool.authenticator.invalidateMetadata()']);
  });
});
