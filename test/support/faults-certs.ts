// Extra client certificates for the security tests, issued with the openssl CLI by the CA
// that test/harness/etcd.ts created for a TLS server (its ca.key is in `tls.dir`).
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { EtcdTlsFiles } from '../harness/etcd.js';

export interface ClientCertificate {
  cert: Buffer;
  key: Buffer;
}

function openssl(args: string[], cwd: string): void {
  const r = spawnSync('openssl', args, { cwd, encoding: 'utf8' });
  if (r.error || r.status !== 0) throw new Error(`openssl ${args[0]} failed: ${r.error?.message ?? r.stderr}`);
}

/** A client certificate with common name `cn` (etcd's user name for TLS-authenticated clients), signed by `tls`'s CA. */
export function issueClientCertificate(tls: EtcdTlsFiles, cn: string): ClientCertificate {
  const base = path.join(tls.dir, `client-${cn.replace(/[^A-Za-z0-9_-]/g, '_')}`);
  openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', `${base}.key`], tls.dir);
  openssl(['req', '-new', '-key', `${base}.key`, '-subj', `/CN=${cn}`, '-out', `${base}.csr`], tls.dir);
  writeFileSync(`${base}.ext`, 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n');
  openssl(
    ['x509', '-req', '-in', `${base}.csr`, '-CA', tls.caFile, '-CAkey', path.join(tls.dir, 'ca.key'), '-CAcreateserial', '-days', '7', '-extfile', `${base}.ext`, '-out', `${base}.crt`],
    tls.dir,
  );
  return { cert: readFileSync(`${base}.crt`), key: readFileSync(`${base}.key`) };
}

/**
 * Strings that must never show up in logs or errors for a PEM private key: the whole PEM,
 * its base64 body, and every 16-character slice of the body (so a partial leak is caught too).
 */
export function secretFragments(pemKey: Buffer): string[] {
  const pem = pemKey.toString('utf8');
  const body = pem
    .split('\n')
    .filter((l) => l && !l.startsWith('-----'))
    .join('');
  const slices: string[] = [];
  for (let i = 0; i + 16 <= body.length; i += 8) slices.push(body.slice(i, i + 16));
  return [pem.trim(), body, ...slices];
}
