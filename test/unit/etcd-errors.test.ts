import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  ClientClosedError,
  EtcdAuthenticationFailedError,
  EtcdInvalidAuthTokenError,
  EtcdPermissionDeniedError,
  GRPCDeadlineExceededError,
  GRPCUnauthenticatedError,
  GRPCUnavailableError,
} from 'etcd3';
import { classifyEtcdError, isTransientEtcdError, redact, toCoordinationError } from '../../lib/etcd/etcd-errors.js';
import {
  CoordinationError,
  EtcdAuthenticationError,
  EtcdPermissionError,
  EtcdUnavailableError,
  LockTimeoutError,
} from '../../lib/errors/coordination.errors.js';

const HOSTS = ['10.0.0.1:2379'];
const context = { hosts: HOSTS, username: 'app', what: 'grant a lease', timeoutMs: 1_000 };

describe('classifyEtcdError', () => {
  it('classifies etcd3 error classes', () => {
    assert.equal(classifyEtcdError(new GRPCUnavailableError('x')), 'unavailable');
    assert.equal(classifyEtcdError(new GRPCDeadlineExceededError('x')), 'unavailable');
    assert.equal(classifyEtcdError(new EtcdInvalidAuthTokenError('x')), 'unavailable');
    assert.equal(classifyEtcdError(new EtcdAuthenticationFailedError('x')), 'auth');
    assert.equal(classifyEtcdError(new GRPCUnauthenticatedError('x')), 'auth');
    assert.equal(classifyEtcdError(new EtcdPermissionDeniedError('x')), 'permission');
    assert.equal(classifyEtcdError(new ClientClosedError('kv')), 'closed');
  });

  it('classifies plain errors by their message, and anything else as other', () => {
    assert.equal(classifyEtcdError(new Error('connect ECONNREFUSED 127.0.0.1:2379')), 'unavailable');
    assert.equal(classifyEtcdError(new Error('14 UNAVAILABLE: No connection established')), 'unavailable');
    assert.equal(classifyEtcdError(new Error('request timed out')), 'unavailable');
    assert.equal(classifyEtcdError('Deadline exceeded'), 'unavailable');
    assert.equal(classifyEtcdError(new Error('etcdserver: permission denied')), 'permission');
    assert.equal(classifyEtcdError(new Error('etcdserver: user name is empty')), 'auth');
    assert.equal(classifyEtcdError(new Error('etcdserver: authentication failed, invalid user ID or password')), 'auth');
    assert.equal(classifyEtcdError(new Error('etcdserver: mvcc: required revision has been compacted')), 'other');
    assert.equal(classifyEtcdError(undefined), 'other');
  });

  it('our own errors are verdicts: only a retryable EtcdUnavailableError counts as unavailable', () => {
    assert.equal(classifyEtcdError(new EtcdUnavailableError(HOSTS, 'x')), 'unavailable');
    assert.equal(classifyEtcdError(new EtcdUnavailableError(HOSTS, 'x', { retryable: false })), 'other');
    assert.equal(classifyEtcdError(new LockTimeoutError('l', 5, 'timeout')), 'other');
    assert.equal(isTransientEtcdError(new GRPCUnavailableError('x')), true);
    assert.equal(isTransientEtcdError(new EtcdPermissionDeniedError('x')), false);
    assert.equal(isTransientEtcdError(new ClientClosedError('kv')), false);
  });
});

describe('toCoordinationError', () => {
  it('maps auth/permission/unavailable to typed errors naming hosts and user', () => {
    const auth = toCoordinationError(new EtcdAuthenticationFailedError('bad'), context);
    assert.ok(auth instanceof EtcdAuthenticationError);
    assert.equal((auth as CoordinationError).code, 'ETCD_AUTH_FAILED');
    assert.match(auth.message, /10\.0\.0\.1:2379.*"app"/);
    const permission = toCoordinationError(new EtcdPermissionDeniedError('no'), context);
    assert.ok(permission instanceof EtcdPermissionError);
    assert.match(permission.message, /denied permission to grant a lease/);
    const down = toCoordinationError(new GRPCUnavailableError('14 UNAVAILABLE'), context);
    assert.ok(down instanceof EtcdUnavailableError);
    assert.equal((down as EtcdUnavailableError).retryable, true);
    assert.match(down.message, /within 1000 ms \(grant a lease: 14 UNAVAILABLE\)/);
    assert.ok(down.cause instanceof GRPCUnavailableError);
    assert.ok(toCoordinationError(new ClientClosedError('kv'), context) instanceof EtcdUnavailableError);
  });

  it('reports TLS failures as such, with PEM material and tokens redacted', () => {
    const pem = '-----BEGIN PRIVATE KEY-----\nMIIsecretKEY\n-----END PRIVATE KEY-----';
    const err = toCoordinationError(new GRPCUnavailableError(`SSL handshake failed: ${pem} token=abc123secret`), context);
    assert.ok(err instanceof EtcdUnavailableError);
    assert.match(err.message, /TLS handshake with etcd at 10\.0\.0\.1:2379 failed/);
    assert.ok(!err.message.includes('MIIsecretKEY'), err.message);
    assert.ok(!err.message.includes('abc123secret'), err.message);
    assert.match(err.message, /\[redacted PEM\]/);
  });

  it('returns our own errors unchanged and other errors as they are', () => {
    const ours = new LockTimeoutError('l', 5, 'timeout');
    assert.equal(toCoordinationError(ours, context), ours);
    const other = new Error('etcdserver: mvcc: required revision has been compacted');
    assert.equal(toCoordinationError(other, context), other);
    const wrapped = toCoordinationError('a string', context);
    assert.ok(wrapped instanceof Error);
    assert.equal(wrapped.message, 'a string');
  });

  it('never puts a password into the auth message', () => {
    const err = toCoordinationError(new Error('authentication failed password=hunter2-secret'), context);
    assert.ok(err instanceof EtcdAuthenticationError);
    assert.ok(!err.message.includes('hunter2-secret'));
    assert.equal(redact('password: hunter2 and token=xyz'), 'password=[redacted] and token=[redacted]');
  });
});
