/** Injection token of the raw options given to forRoot/forRootAsync. */
export const COORDINATION_MODULE_OPTIONS = Symbol.for('nest-etcd-coordination:options');
/** Injection token of the validated, defaulted options (internal). */
export const RESOLVED_COORDINATION_OPTIONS = Symbol.for('nest-etcd-coordination:resolved-options');
/** Injection token of the etcd client holder (internal). */
export const ETCD_CLIENT_HOLDER = Symbol.for('nest-etcd-coordination:etcd-client');

export const DEFAULT_HOST = '127.0.0.1:2379';
export const DEFAULT_SESSION_TTL_SECONDS = 10;
export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
export const DEFAULT_REQUEST_TIMEOUT_MS = 5_000;
export const DEFAULT_ELECTION = 'leader';
export const MAX_NAME_LENGTH = 200;

/**
 * Token of the provider every CoordinationModule instance registers once
 * (internal). `Symbol.for` so that two copies of the library in one
 * application (its ESM and CJS builds) are still counted as two instances.
 */
export const COORDINATION_MODULE_INSTANCE = Symbol.for('nest-etcd-coordination:module-instance');

/** A non-empty namespace ends with one of these, so that no namespace's keys fall inside another's range. */
export const NAMESPACE_SEPARATORS: readonly string[] = ['/', ':', '.', '-', '_'];
