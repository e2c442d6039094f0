// The soak's summary: plain-text tables for the terminal (the JSON has everything).
import type { SoakResult } from './soak.js';

function table(headers: string[], rows: Array<Array<string | number>>): string {
  const cells = [headers, ...rows.map((r) => r.map(String))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => `  ${r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ')}`;
  return [line(headers), `  ${widths.map((w) => '-'.repeat(w)).join('  ')}`, ...cells.slice(1).map(line)].join('\n');
}

export function formatSummary(r: SoakResult): string {
  const out: string[] = [];
  const o = r.options;
  out.push(
    `soak: seed ${r.seed}, ${r.etcd}, ${o.workers} workers, TTL ${o.ttlSeconds} s, permits ${o.permits}; ` +
      `setup ${r.phases.setupSeconds} s, faults ${r.phases.faultSeconds} s, quiet ${r.phases.quietSeconds} s, shutdown ${r.phases.shutdownSeconds} s (total ${r.phases.totalSeconds} s)`,
  );
  const kinds = Object.entries(r.faultCounts);
  out.push('', `Faults (${r.faults.length}):`, table(['kind', 'count'], kinds.map(([k, n]) => [k, n])));
  out.push('', 'Operations:', table(['', 'value'], Object.entries(r.operations).map(([k, v]) => [k, v])));
  if (r.perWorker.length > 0) {
    const cols = Object.keys(r.perWorker[0]!);
    out.push('', 'Per worker process:', table(cols, r.perWorker.map((w) => cols.map((c) => w[c] ?? ''))));
  }
  out.push('', 'Invariants:', table(['invariant', 'result', 'checked'], r.invariants.map((i) => [i.name, i.ok ? 'held' : `FAILED (${i.violations.length})`, i.checked])));
  for (const i of r.invariants.filter((x) => !x.ok)) {
    out.push('', `FAILED: ${i.name}`, ...i.violations.map((v) => `  - ${v}`));
  }
  if (r.invariants.some((i) => !i.ok && i.name.startsWith('progress')) && r.keysAtQuietEnd) {
    out.push('', 'Keys under the namespace at the end of the quiet phase:', table(['key', 'create revision', 'owner'], r.keysAtQuietEnd.map((k) => [k.key, k.createRevision, k.owner])));
  }
  if (r.error) out.push('', `ERROR: the soak could not finish: ${r.error}`);
  out.push('', r.ok ? 'soak: every invariant held' : 'soak: FAILED');
  return out.join('\n');
}

/** The violations of a result, one per line (for a test's failure message). */
export function violations(r: SoakResult): string[] {
  return [
    ...(r.error ? [`soak did not finish: ${r.error}`] : []),
    ...r.invariants.filter((i) => !i.ok).flatMap((i) => i.violations.map((v) => `${i.name}: ${v}`)),
  ];
}
