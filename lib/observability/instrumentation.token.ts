/** DI token of the module instance's Instrumentation (internal). */
export const INSTRUMENTATION = Symbol('nest-etcd-coordination:instrumentation');
