// Configuration of one sample-app instance, from the environment.
//
//   ETCD_HOSTS       comma-separated etcd endpoints            default 127.0.0.1:2379
//   PORT             HTTP port (0: any free port)               default 3000
//   HOST             interface to listen on                     default 127.0.0.1
//   INSTANCE_ID      this instance's name in the cluster        default instance-<PORT>
//   COORD_NAMESPACE  prefix of every etcd key of the cluster    default sample-app/
//   SESSION_TTL      etcd session lease TTL in seconds (2..3600) default 10
//   PEERS            comma-separated URLs of the other instances, for the dashboard
//   LOG_LEVEL        "debug" also logs every skipped @LeaderOnly/@WithLock call (read in main.ts)

export interface SampleConfig {
  etcdHosts: string[];
  port: number;
  host: string;
  instanceId: string;
  namespace: string;
  sessionTtl: number;
  /** Base URLs of the other instances (no trailing slash). */
  peers: string[];
}

export const SAMPLE_CONFIG = Symbol.for('sample-app:config');

export class SampleConfigError extends Error {}

const invalid = (variable: string, problem: string) => new SampleConfigError(`sample-app: ${variable} ${problem}`);

function integer(env: NodeJS.ProcessEnv, variable: string, min: number, max: number, fallback: number): number {
  const raw = env[variable]?.trim();
  if (!raw) return fallback;
  const value = Number(raw);
  if (!/^\d+$/.test(raw) || value < min || value > max) {
    throw invalid(variable, `must be an integer from ${min} to ${max}, got ${JSON.stringify(raw)}`);
  }
  return value;
}

function list(raw: string | undefined): string[] {
  return (raw ?? '').split(',').map((s) => s.trim()).filter(Boolean);
}

export function loadSampleConfig(env: NodeJS.ProcessEnv = process.env): SampleConfig {
  const port = integer(env, 'PORT', 0, 65535, 3000);
  const etcdHosts = list(env.ETCD_HOSTS);
  const peers = list(env.PEERS).map((url) => {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw invalid('PEERS', `holds ${JSON.stringify(url)}, which is not a URL like http://127.0.0.1:3001`);
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw invalid('PEERS', `holds ${url}: only http(s) URLs`);
    return parsed.origin;
  });
  const instanceId = env.INSTANCE_ID?.trim() || `instance-${port}`;
  if (/[\u0000-\u001f\u007f/]/.test(instanceId) || instanceId.length > 64) {
    throw invalid('INSTANCE_ID', 'must be at most 64 characters, without "/" or control characters');
  }
  return {
    etcdHosts: etcdHosts.length > 0 ? etcdHosts : ['127.0.0.1:2379'],
    port,
    host: env.HOST?.trim() || '127.0.0.1',
    instanceId,
    namespace: env.COORD_NAMESPACE ?? 'sample-app/',
    sessionTtl: integer(env, 'SESSION_TTL', 2, 3600, 10),
    peers,
  };
}
