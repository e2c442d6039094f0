import { resolveCoordinationOptions, type ResolvedCoordinationOptions } from '../coordination.options.js';
import { InvalidOptionsError } from '../errors/coordination.errors.js';
import { TestingMessages } from '../coordination.messages.js';
import { FakeCluster } from './fake-cluster.js';

/** Options of `CoordinationTestingModule.forRoot()`. */
export interface CoordinationTestingOptions {
  /** Whether this instance leads the default election from the start (default true). With false, another instance leads until `FakeCoordination.elect()`. */
  leader?: boolean;
  /** The default election's name (default `'leader'`), or false for none, as in `CoordinationModule`. */
  election?: string | false;
  /** This instance's identity (default `'test'`): the value of its keys, `leader$`'s `leader.identity`. */
  identity?: string;
  /** The identity of the simulated other instance (default `'other-instance'`). */
  otherIdentity?: string;
  /** Key prefix, as in `CoordinationModule` (only visible in `key` fields). */
  namespace?: string;
  /** Whether the module is global (default true, as `CoordinationModule`). */
  isGlobal?: boolean;
  /**
   * Share one in-memory "etcd" with other testing applications of this
   * process (several instances contending, hand-over, failover). Default: a
   * new one for each application.
   */
  cluster?: FakeCluster;
  /** The graceful drain on `app.close()`, in ms, as in `CoordinationModule` (default 10000; 0 aborts running runs at once). */
  shutdownTimeout?: number;
  /** Register in the member list at startup, as in `CoordinationModule` (default true; `false` opts out). */
  membership?: boolean;
  /** This instance's member value, as in `CoordinationModule` (default `null`). */
  memberValue?: unknown;
}

/** The validated options (internal). */
export interface ResolvedTestingOptions {
  leader: boolean;
  otherIdentity: string;
  cluster?: FakeCluster;
  coordination: ResolvedCoordinationOptions;
}

/** Injection token of the resolved testing options (internal). */
export const TESTING_OPTIONS = Symbol.for('nest-etcd-coordination:testing-options');

const KNOWN = ['leader', 'election', 'identity', 'otherIdentity', 'namespace', 'isGlobal', 'cluster', 'shutdownTimeout', 'membership', 'memberValue'] as const;

/** Validates the options with the library's own rules (identity, namespace, election name). */
export function resolveTestingOptions(input: CoordinationTestingOptions = {}): ResolvedTestingOptions {
  if (typeof input !== 'object' || input === null) throw new InvalidOptionsError('options', TestingMessages.invalidOption('options', 'must be an object'));
  for (const key of Object.keys(input)) {
    if (!(KNOWN as readonly string[]).includes(key)) throw new InvalidOptionsError(key, TestingMessages.unknownOption(key, KNOWN));
  }
  if (input.leader !== undefined && typeof input.leader !== 'boolean') {
    throw new InvalidOptionsError('leader', TestingMessages.invalidOption('leader', 'must be a boolean'));
  }
  const { identity = 'test', otherIdentity = 'other-instance', namespace, election, isGlobal, shutdownTimeout, membership, memberValue } = input;
  const coordination = resolveCoordinationOptions({ identity, namespace, election, isGlobal, shutdownTimeout, membership, memberValue }, {});
  resolveCoordinationOptions({ identity: otherIdentity }, {});
  if (otherIdentity === coordination.identity) {
    throw new InvalidOptionsError('otherIdentity', TestingMessages.invalidOption('otherIdentity', 'must differ from identity'));
  }
  if (input.cluster !== undefined && !(input.cluster instanceof FakeCluster)) {
    throw new InvalidOptionsError('cluster', TestingMessages.invalidOption('cluster', 'must be a FakeCluster'));
  }
  return { leader: input.leader ?? true, otherIdentity, coordination, cluster: input.cluster };
}
