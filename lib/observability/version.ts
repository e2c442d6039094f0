/** The package name, as the OpenTelemetry meter (instrumentation scope) is named. */
export const LIBRARY_NAME = 'nest-etcd-coordination';
/** The package version (a unit test keeps it equal to package.json's). */
export const LIBRARY_VERSION = '0.1.0';
