import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { hostname } from 'node:os';
import { resolveCoordinationOptions, type CoordinationModuleOptions } from '../../lib/coordination.options.js';
import { InvalidOptionsError } from '../../lib/errors/coordination.errors.js';
import { namePrefix } from '../../lib/etcd/keys.js';
import {
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_ELECTION,
  DEFAULT_HOST,
  DEFAULT_REQUEST_TIMEOUT_MS,
  DEFAULT_SESSION_TTL_SECONDS,
} from '../../lib/coordination.constants.js';

const NO_ENV = {};
const resolve = (options: Record<string, unknown> | undefined, env: NodeJS.ProcessEnv = NO_ENV) =>
  resolveCoordinationOptions(options as CoordinationModuleOptions, env);

/** Asserts InvalidOptionsError for `option` whose message matches `pattern` (and never contains `secret`). */
function refuses(options: Record<string, unknown>, option: string, pattern: RegExp, env: NodeJS.ProcessEnv = NO_ENV, secret?: string) {
  assert.throws(() => resolve(options, env), (err: unknown) => {
    assert.ok(err instanceof InvalidOptionsError, `${JSON.stringify(options)}: ${String(err)}`);
    assert.equal(err.code, 'INVALID_OPTIONS');
    assert.equal(err.option, option);
    assert.ok(err.message.includes(`"${option}"`), err.message);
    assert.match(err.message, pattern);
    if (secret) assert.ok(!(err.message + String(err.stack)).includes(secret), `secret leaked: ${err.message}`);
    return true;
  });
}

describe('resolveCoordinationOptions: defaults', () => {
  it('fills every default for no options (and for undefined/null)', () => {
    for (const input of [{}, undefined, null]) {
      const resolved = resolve(input as never);
      assert.deepEqual(resolved.hosts, [DEFAULT_HOST]);
      assert.equal(resolved.namespace, '');
      assert.equal(resolved.sessionTtl, DEFAULT_SESSION_TTL_SECONDS);
      assert.equal(resolved.connectTimeout, DEFAULT_CONNECT_TIMEOUT_MS);
      assert.equal(resolved.requestTimeout, DEFAULT_REQUEST_TIMEOUT_MS);
      assert.equal(resolved.election, DEFAULT_ELECTION);
      assert.equal(resolved.identity, `${hostname()}:${process.pid}`);
    }
  });

  it('reads ETCD_HOSTS (comma separated) when hosts is not given; empty ETCD_HOSTS means unset', () => {
    assert.deepEqual(resolve({}, { ETCD_HOSTS: 'a:1,b:2' }).hosts, ['a:1', 'b:2']);
    assert.deepEqual(resolve({}, { ETCD_HOSTS: '' }).hosts, [DEFAULT_HOST]);
    assert.deepEqual(resolve({ hosts: 'c:3' }, { ETCD_HOSTS: 'a:1' }).hosts, ['c:3']);
  });

  it('keeps valid values as given', () => {
    const resolved = resolve({
      hosts: ['http://10.0.0.1:2379', 'https://[::1]:2379/', 'etcd.internal:2379'],
      namespace: 'app/', sessionTtl: 2, identity: 'worker-1', connectTimeout: 100, requestTimeout: 600_000, election: false,
    });
    assert.deepEqual(resolved.hosts, ['http://10.0.0.1:2379', 'https://[::1]:2379/', 'etcd.internal:2379']);
    assert.equal(resolved.namespace, 'app/');
    assert.equal(resolved.election, false);
    assert.equal(resolved.sessionTtl, 2);
  });
});

describe('resolveCoordinationOptions: namespace', () => {
  it('accepts the empty namespace and one ending with each of / : . - _', () => {
    for (const namespace of ['', 'app/', 'app:', 'app.', 'app-', 'app_', 'a/b/']) {
      assert.equal(resolve({ namespace }).namespace, namespace);
    }
  });

  it('refuses a namespace without a trailing separator ("app" would contain "app1"\'s keys)', () => {
    refuses({ namespace: 'app' }, 'namespace', /"app" must end with one of \/ : \. - _ .*lock "1job" in "app" and lock "job" in "app1" would be the same key.*e\.g\. "app\/"/);
    refuses({ namespace: 'app1' }, 'namespace', /must end with one of/);
    refuses({ namespace: 'a/b' }, 'namespace', /must end with one of/);
  });

  it('why: without a separator, two namespaces share keys', () => {
    assert.deepEqual(namePrefix('app', '1job'), namePrefix('app1', 'job'));
    assert.notDeepEqual(namePrefix('app/', '1job'), namePrefix('app1/', 'job'));
  });

  it('refuses lone surrogates, C0, C1 and format characters, saying where', () => {
    refuses({ namespace: 'bad\u0001ns/' }, 'namespace', /U\+0001 \(control character\) at index 3/);
    refuses({ namespace: 'app\u0085/' }, 'namespace', /U\+0085 \(control character\) at index 3/);
    refuses({ namespace: 'app\u200b/' }, 'namespace', /U\+200B \(format character\) at index 3/);
    refuses({ namespace: 'app\ud800/' }, 'namespace', /lone surrogate U\+D800 at index 3/);
    refuses({ namespace: 42 }, 'namespace', /must be a string/);
    refuses({ namespace: 'x'.repeat(200) + '/' }, 'namespace', /at most 200/);
  });
});

describe('resolveCoordinationOptions: identity', () => {
  it('refuses empty, non-string, too long, and unsafe characters', () => {
    refuses({ identity: '' }, 'identity', /non-empty string/);
    refuses({ identity: 7 }, 'identity', /non-empty string/);
    refuses({ identity: 'x'.repeat(257) }, 'identity', /at most 256/);
    refuses({ identity: 'w\n1' }, 'identity', /U\+000A \(control character\) at index 1/);
    refuses({ identity: 'w\u009b1' }, 'identity', /U\+009B \(control character\)/);
    refuses({ identity: 'w\u202e1' }, 'identity', /U\+202E \(format character\) at index 1/);
    refuses({ identity: 'w\udfff' }, 'identity', /lone surrogate U\+DFFF at index 1/);
    assert.equal(resolve({ identity: 'Wörker 1' }).identity, 'Wörker 1');
  });
});

describe('resolveCoordinationOptions: hosts', () => {
  it('refuses white space and control characters anywhere, never trimming, with option and index', () => {
    refuses({ hosts: ['127.0.0.1:2379\n'] }, 'hosts[0]', /"127\.0\.0\.1:2379\\n" contains U\+000A \(control character\) at index 14.*not trimmed/);
    refuses({ hosts: ['a:1', ' b:2'] }, 'hosts[1]', /U\+0020 \(white space\) at index 0/);
    refuses({ hosts: ['a:1', 'b:2\t'] }, 'hosts[1]', /U\+0009 \(control character\) at index 3/);
    refuses({ hosts: ['a :1'] }, 'hosts[0]', /U\+0020 \(white space\) at index 1/);
    refuses({ hosts: ['a:1\u00a0'] }, 'hosts[0]', /U\+00A0 \(white space\) at index 3/);
    refuses({ hosts: ['a:1\u200b'] }, 'hosts[0]', /U\+200B \(format character\) at index 3/);
    refuses({ hosts: ['a:1\u0085'] }, 'hosts[0]', /U\+0085 \(control character\) at index 3/);
  });

  it('refuses white space in the comma string and in ETCD_HOSTS, naming the entry', () => {
    refuses({ hosts: 'a:1, b:2' }, 'hosts[1]', /U\+0020 \(white space\) at index 0/);
    refuses({ hosts: 'a:1,b:2\r\n' }, 'hosts[1]', /U\+000D \(control character\) at index 3/);
    refuses({}, 'ETCD_HOSTS[0]', /environment variable: .*U\+000A \(control character\) at index 3/, { ETCD_HOSTS: 'a:1\n' });
    refuses({}, 'ETCD_HOSTS[1]', /environment variable: .*U\+0020 \(white space\)/, { ETCD_HOSTS: 'a:1, b:2' });
    refuses({}, 'ETCD_HOSTS[0]', /environment variable: .*white space/, { ETCD_HOSTS: '   ' });
  });

  it('keeps the older host rules: non-empty, a port, in range, a list with at least one entry', () => {
    refuses({ hosts: [] }, 'hosts', /at least one/);
    refuses({ hosts: 5 }, 'hosts', /string or an array/);
    refuses({ hosts: [''] }, 'hosts[0]', /non-empty string/);
    refuses({ hosts: 'a:1,' }, 'hosts[1]', /non-empty string/);
    refuses({ hosts: ['no-port-here'] }, 'hosts[0]', /no port/);
    refuses({ hosts: ['h:0'] }, 'hosts[0]', /out of range/);
    refuses({ hosts: ['h:65536'] }, 'hosts[0]', /out of range/);
    refuses({ hosts: ['h:1/path'] }, 'hosts[0]', /not of the form host:port/);
  });

  it('refuses user:password@ in a host without echoing it', () => {
    refuses({ hosts: ['http://root:hunter2-secret@127.0.0.1:2379'] }, 'hosts[0]', /must not contain "user:password@"/, NO_ENV, 'hunter2-secret');
    refuses({ hosts: 'root:hunter2 secret@127.0.0.1:2379' }, 'hosts[0]', /user:password@/, NO_ENV, 'hunter2');
    refuses({}, 'ETCD_HOSTS[0]', /user:password@/, { ETCD_HOSTS: 'root:hunter2-secret@h:1' }, 'hunter2-secret');
  });
});

describe('resolveCoordinationOptions: other validations', () => {
  it('integers: sessionTtl 2..3600, connectTimeout and requestTimeout 100..600000', () => {
    for (const bad of [0, 1, 3601, 2.5, '10', NaN]) refuses({ sessionTtl: bad }, 'sessionTtl', /integer from 2 to 3600/);
    for (const bad of [-5, 99, 600_001]) refuses({ connectTimeout: bad }, 'connectTimeout', /integer from 100 to 600000/);
    refuses({ requestTimeout: 50 }, 'requestTimeout', /integer from 100 to 600000/);
  });

  it('unknown options, wrong shapes, election names and isGlobal', () => {
    refuses({ sesionTtl: 5 }, 'sesionTtl', /unknown option/);
    assert.throws(() => resolve('x' as never), (err: unknown) => err instanceof InvalidOptionsError && err.option === 'options');
    refuses({ election: 'a/b' }, 'election', /"\/"/);
    refuses({ election: 'lead\u200ber' }, 'election', /U\+200B \(format character\) at index 4/);
    refuses({ election: 'x\ud800' }, 'election', /lone surrogate/);
    refuses({ election: true }, 'election', /a name or false/);
    refuses({ isGlobal: 'yes' }, 'isGlobal', /must be a boolean, got string/);
  });

  it('auth and credentials: the password never appears in a message', () => {
    const secret = 'hunter2-secret';
    refuses({ auth: { username: 'u', password: '' } }, 'auth.password', /non-empty/);
    refuses({ auth: { username: 42, password: secret } }, 'auth.username', /non-empty/, NO_ENV, secret);
    refuses({ auth: { username: '', password: secret } }, 'auth.username', /non-empty/, NO_ENV, secret);
    refuses({ auth: null }, 'auth', /username, password/);
    refuses({ credentials: { rootCertificate: 'pem' } }, 'credentials.rootCertificate', /Buffer/);
    refuses({ credentials: { rootCertificate: Buffer.from('x'), privateKey: Buffer.from(secret) } }, 'credentials', /together/, NO_ENV, secret);
  });

  it('client: must look like an Etcd3 and cannot be combined with hosts/auth/credentials', () => {
    refuses({ client: {} }, 'client', /Etcd3 instance/);
    const fakeClient = { kv: {}, leaseClient: {}, watch: () => undefined };
    refuses({ client: fakeClient, hosts: 'x:1' }, 'hosts', /cannot be combined with "client"/);
    refuses({ client: fakeClient, auth: { username: 'u', password: 'hunter2' } }, 'auth', /cannot be combined/, NO_ENV, 'hunter2');
    assert.deepEqual(resolve({ client: fakeClient }).hosts, ['(user-provided client)']);
  });
});

describe('membership options (memberValue, membership)', () => {
  const resolveMembership = (options: Record<string, unknown>) => resolveCoordinationOptions(options as CoordinationModuleOptions, {});
  it('defaults: no member value, membership on; membership: false opts out, with or without a value', () => {
    assert.equal(resolveMembership({}).memberValue, null);
    assert.equal(resolveMembership({}).membership, true);
    assert.equal(resolveMembership({ membership: true }).membership, true);
    assert.equal(resolveMembership({ membership: false }).membership, false);
    assert.deepEqual(resolveMembership({ memberValue: { zone: 'eu' } }).memberValue, { zone: 'eu' });
    assert.equal(resolveMembership({ memberValue: { zone: 'eu' } }).membership, true);
    assert.equal(resolveMembership({ memberValue: 1, membership: false }).membership, false);
    assert.equal(resolveMembership({ memberValue: 1, membership: false }).memberValue, 1, 'kept for a later join()');
  });

  it('refuses a value JSON cannot carry, one over 64 KiB, and a non-boolean membership, naming the option', () => {
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    for (const [options, option, pattern] of [
      [{ memberValue: cyclic }, 'memberValue', /JSON-serialisable/],
      [{ memberValue: 10n }, 'memberValue', /JSON-serialisable/],
      [{ memberValue: () => 1 }, 'memberValue', /JSON-serialisable/],
      [{ memberValue: 'x'.repeat(70_000) }, 'memberValue', /at most 65536/],
      [{ membership: 'yes' }, 'membership', /must be a boolean/],
      [{ membership: null }, 'membership', /must be a boolean, got null/],
    ] as const) {
      assert.throws(() => resolveMembership(options), (err: unknown) => err instanceof InvalidOptionsError && err.option === option && pattern.test(err.message));
    }
  });
});
