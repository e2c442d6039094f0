// The dashboard, in the browser. Compiled by tsc like the rest of the app and served as
// /dashboard.js; it only imports types (erased at compile time), so it needs no bundler.
//
// It polls GET /status of every instance (the list comes from the instances' own PEERS)
// and GET /history (the run records and leadership terms every instance wrote to etcd)
// once a second, and listens to GET /events (server-sent events) of every instance for
// leadership changes as they happen. Because it talks to every instance directly (CORS),
// the page keeps working when the instance that served it dies.
import type { ClusterHistory, InstanceStatus, JobRun, LeadershipTerm, ReportState, SampleEvent } from '../sample.types.js';

const POLL_MS = 1_000;
const STATUS_TIMEOUT_MS = 1_500;
const HISTORY_TIMEOUT_MS = 2_500;
const params = new URLSearchParams(location.search);
const WINDOW_MS = Math.max(20, Math.min(600, Number(params.get('window')) || 90)) * 1_000;
/** Instance colours: kept apart from the job colours below. */
const PALETTE = ['#00838f', '#ef6c00', '#ad1457', '#6d4c41', '#546e7a', '#9e9d24', '#5c6bc0', '#8d6e63'];
/** Same colours as the CSS variables: SVG attributes cannot use var(). */
const COLOR = { leader: '#e0a100', interval: '#2f6fdb', cron: '#7b3fc4', report: '#1e8e3e', bad: '#c62828' };

interface Peer {
  url: string;
  status?: InstanceStatus;
  lastOk?: number;
  /** When it stopped answering; undefined while it answers. */
  downSince?: number;
  /** Why it does not answer: refused connections (down) or silence (paused, overloaded). */
  downKind?: 'down' | 'no answer';
  events?: EventSource;
}

interface Outage {
  from: number;
  to?: number;
}

const peers = new Map<string, Peer>([[location.origin, { url: location.origin }]]);
const runs = new Map<string, JobRun>();
const terms = new Map<string, LeadershipTerm>();
const outages = new Map<string, Outage[]>();
/** Per instance: the fencing token while it says it leads, null while it says it does not. */
const lastLeaderEvent = new Map<string, string | null>();
/** Keys of feed entries shown, so an event heard live and read from the history shows once. */
const feedKeys = new Set<string>();
/** The earliest moment anything on the page is about, so a young cluster fills the timeline. */
let firstDataAt = Date.now();
const feed: Array<{ at: number; html: string }> = [];
let report: ReportState | null = null;
let historySince = Date.now() - WINDOW_MS;
let servedBy = '';
let renderQueued = false;

// ------------------------------------------------------------------ helpers

function $(id: string): HTMLElement {
  const element = document.getElementById(id);
  if (!element) throw new Error(`dashboard: #${id} missing`);
  return element;
}

function escapeHtml(value: unknown): string {
  return String(value).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function clock(ms: number): string {
  return new Date(ms).toLocaleTimeString('en-GB', { hour12: false });
}

function seconds(ms: number): string {
  return ms < 10_000 ? `${(ms / 1000).toFixed(2)} s` : `${(ms / 1000).toFixed(1)} s`;
}

function byInstanceName(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}

const colorOf = (() => {
  const assigned = new Map<string, string>();
  return (instance: string) => {
    if (!assigned.has(instance)) assigned.set(instance, PALETTE[assigned.size % PALETTE.length]!);
    return assigned.get(instance)!;
  };
})();

async function fetchJson<T>(url: string, timeoutMs: number): Promise<T> {
  const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), cache: 'no-store' });
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return (await response.json()) as T;
}

function addFeed(at: number, html: string, key?: string): void {
  if (key !== undefined) {
    if (feedKeys.has(key)) return;
    feedKeys.add(key);
  }
  feed.push({ at, html });
  feed.sort((a, b) => a.at - b.at);
  if (feed.length > 60) feed.shift();
  queueRender();
}

function instanceOf(peer: Peer): string {
  return peer.status?.instance ?? peer.url;
}

function isUp(peer: Peer): peer is Peer & { status: InstanceStatus } {
  return peer.status !== undefined && peer.downSince === undefined;
}

// ------------------------------------------------------------------ data

async function pollPeer(peer: Peer): Promise<void> {
  try {
    const status = await fetchJson<InstanceStatus>(`${peer.url}/status`, STATUS_TIMEOUT_MS);
    const now = Date.now();
    if (peer.downSince !== undefined) {
      const outage = outages.get(status.instance)?.at(-1);
      if (outage && outage.to === undefined) outage.to = now;
      addFeed(now, `<b>${escapeHtml(status.instance)}</b> answers again`);
    }
    peer.status = status;
    peer.lastOk = now;
    firstDataAt = Math.min(firstDataAt, status.startedAt);
    peer.downSince = undefined;
    peer.downKind = undefined;
    if (peer.url === location.origin) servedBy = status.instance;
    for (const url of status.peers) if (!peers.has(url)) peers.set(url, { url });
    listen(peer);
  } catch (err) {
    if (peer.downSince === undefined && peer.lastOk !== undefined) {
      const now = Date.now();
      peer.downSince = now;
      peer.downKind = err instanceof DOMException && err.name === 'TimeoutError' ? 'no answer' : 'down';
      const list = outages.get(instanceOf(peer)) ?? [];
      list.push({ from: peer.lastOk });
      outages.set(instanceOf(peer), list);
      addFeed(now, `<b>${escapeHtml(instanceOf(peer))}</b> <span class="refused">${peer.downKind === 'down' ? 'is down' : 'does not answer'}</span>`);
    }
    peer.events?.close();
    peer.events = undefined;
  }
}

async function pollHistory(): Promise<void> {
  const candidates = [...peers.values()].filter(isUp).sort((a, b) => Number(b.url === location.origin) - Number(a.url === location.origin));
  for (const peer of candidates) {
    try {
      const history = await fetchJson<ClusterHistory>(`${peer.url}/history?since=${historySince}`, HISTORY_TIMEOUT_MS);
      for (const run of history.runs) {
        mergeRun(run);
        if (run.outcome === 'refused') feedRefused(run);
      }
      // What happened before the page was opened (or while an instance's events were not heard).
      for (const term of history.terms) {
        const known = terms.get(term.fencingToken);
        if (!known || known.to === undefined) terms.set(term.fencingToken, term);
        firstDataAt = Math.min(firstDataAt, term.from);
        feedBecameLeader(term.instance, term.fencingToken, term.from);
        if (term.to !== undefined) feedSteppedDown(term.instance, term.fencingToken, term.to);
      }
      report = history.report;
      ledger = history.ledger ?? ledger;
      // Overlap the next window: a run that started earlier may have finished since.
      historySince = history.now - 15_000;
      const horizon = Date.now() - 2 * WINDOW_MS;
      for (const [id, run] of runs) if ((run.endedAt ?? run.startedAt) < horizon) runs.delete(id);
      return;
    } catch {
      // try the next instance
    }
  }
}

function mergeRun(run: JobRun): void {
  const known = runs.get(run.id);
  if (known && known.outcome !== 'running' && run.outcome === 'running') return;
  runs.set(run.id, run);
}

/** Server-sent events of one instance: leadership changes the moment they happen. */
function listen(peer: Peer): void {
  if (peer.events) return;
  const source = new EventSource(`${peer.url}/events`);
  source.onmessage = (message: MessageEvent<string>) => onEvent(JSON.parse(message.data) as SampleEvent);
  source.onerror = () => {
    // Closed at shutdown or dead: polling notices and reopens when it answers again.
    source.close();
    if (peer.events === source) peer.events = undefined;
  };
  peer.events = source;
}

function feedBecameLeader(instance: string, token: string, at: number): void {
  addFeed(at, `<b>${escapeHtml(instance)}</b> <span class="good">became leader</span> (token ${escapeHtml(token)})`, `lead:${token}`);
}

function feedSteppedDown(instance: string, token: string, at: number): void {
  addFeed(at, `<b>${escapeHtml(instance)}</b> stopped leading (token ${escapeHtml(token)})`, `stop:${token}`);
}

function feedRefused(run: JobRun): void {
  addFeed(run.endedAt ?? run.startedAt, `<b>${escapeHtml(run.instance)}</b> report write <span class="refused">refused</span>: ${escapeHtml(run.detail ?? '')}`, `refused:${run.id}`);
}

function onEvent(event: SampleEvent): void {
  const who = `<b>${escapeHtml(event.instance)}</b>`;
  switch (event.kind) {
    case 'leader': {
      const before = lastLeaderEvent.get(event.instance);
      lastLeaderEvent.set(event.instance, event.isLeader ? event.fencingToken : null);
      if (event.isLeader && event.fencingToken) feedBecameLeader(event.instance, event.fencingToken, event.at);
      if (!event.isLeader && before) feedSteppedDown(event.instance, before, event.at);
      break;
    }
    case 'session':
      if (event.status === 'lost') addFeed(event.at, `${who} <span class="refused">lost its etcd session</span>: its locks and candidacy are gone`);
      break;
    case 'run':
      mergeRun(event.run);
      if (event.run.outcome === 'refused') {
        feedRefused(event.run);
      } else if (event.run.outcome === 'aborted') {
        addFeed(event.at, `${who} ${escapeHtml(event.run.job)} run stopped early: ${escapeHtml(event.run.detail ?? 'aborted')}`);
      }
      queueRender();
      break;
  }
}

// ------------------------------------------------------------------ derived views

interface ClusterLeader {
  identity: string;
  fencingToken?: string;
  since?: number;
  /** The leader is known (from the others, i.e. from etcd) but does not answer itself. */
  silent: boolean;
}

function clusterLeader(): ClusterLeader | null {
  const up = [...peers.values()].filter(isUp);
  const self = up.find((p) => p.status.isLeader);
  if (self) {
    return {
      identity: self.status.instance,
      fencingToken: self.status.leadership?.fencingToken ?? self.status.leader?.fencingToken,
      since: self.status.leadership?.since,
      silent: false,
    };
  }
  // Nobody answering claims leadership: go by what the others read from etcd.
  const votes = new Map<string, { count: number; token?: string }>();
  for (const p of up) {
    const leader = p.status.leader;
    if (!leader) continue;
    const vote = votes.get(leader.identity) ?? { count: 0, token: leader.fencingToken };
    vote.count++;
    votes.set(leader.identity, vote);
  }
  const best = [...votes.entries()].sort((a, b) => b[1].count - a[1].count)[0];
  if (!best) return null;
  return { identity: best[0], fencingToken: best[1].token, silent: true };
}

function termsInOrder(): LeadershipTerm[] {
  return [...terms.values()].sort((a, b) => (BigInt(a.fencingToken) < BigInt(b.fencingToken) ? -1 : 1));
}

/**
 * When a term ended. An instance that steps down records the moment; one that dies cannot.
 * For those the term is over once the instance stopped answering, restarted, or someone else
 * began to lead (leadership is exclusive), and we show it ending at the last sign of life we
 * know of: when it stopped answering, else its last job run under that term (`estimated`).
 */
function termEnd(term: LeadershipTerm, now: number): { at: number; estimated: boolean } {
  if (term.to !== undefined) return { at: term.to, estimated: false };
  const outage = outages.get(term.instance)?.find((o) => o.from >= term.from);
  if (outage) return { at: outage.from, estimated: true };
  const peer = [...peers.values()].find((p) => p.status?.instance === term.instance);
  const restarted = peer?.status !== undefined && peer.status.startedAt > term.from;
  const superseded = termsInOrder().some((t) => BigInt(t.fencingToken) > BigInt(term.fencingToken));
  if (!restarted && !superseded) return { at: now, estimated: false }; // still leading
  let last = term.from;
  for (const run of runs.values()) {
    if (run.instance === term.instance && run.fencingToken === term.fencingToken) last = Math.max(last, run.endedAt ?? run.startedAt);
  }
  return { at: last, estimated: true };
}

/**
 * When a run ended. A run still "running" is drawn up to now only while its process answers;
 * a process that died mid-run never records the end, so stop it where the process was last seen.
 */
function runEnd(run: JobRun, now: number): number {
  if (run.endedAt !== undefined) return run.endedAt;
  const peer = [...peers.values()].find((p) => p.status?.instance === run.instance);
  const samePid = peer?.status !== undefined && run.id.startsWith(`${run.instance}:${peer.status.pid}#`);
  if (peer && isUp(peer) && samePid) return now;
  const outage = outages.get(run.instance)?.find((o) => o.to === undefined || o.to >= run.startedAt);
  return Math.max(run.startedAt, outage?.from ?? run.startedAt);
}

interface Handover {
  from: string;
  to: string;
  at: number;
  gap: number;
  /** The gap is measured from the last sign of life of a leader that died. */
  estimated: boolean;
  how: 'stepped down' | 'was lost' | 're-elected';
}

function handovers(now: number): Handover[] {
  const ordered = termsInOrder();
  const result: Handover[] = [];
  for (let i = 1; i < ordered.length; i++) {
    const previous = ordered[i - 1]!;
    const next = ordered[i]!;
    const end = termEnd(previous, now);
    result.push({
      from: previous.instance,
      to: next.instance,
      at: next.from,
      gap: Math.max(0, next.from - end.at),
      estimated: end.estimated,
      how: previous.instance === next.instance ? 're-elected' : previous.to !== undefined ? 'stepped down' : 'was lost',
    });
  }
  return result;
}

// ------------------------------------------------------------------ rendering

function queueRender(): void {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    render();
  });
}

function render(): void {
  const now = Date.now();
  const all = [...peers.values()];
  const namespace = all.find((p) => p.status)?.status?.namespace ?? '';
  $('meta').innerHTML =
    `namespace <b>${escapeHtml(namespace || '(none)')}</b> · served by <b>${escapeHtml(servedBy || location.host)}</b>` +
    ` · ${all.filter(isUp).length}/${all.length} instances answering · updated ${clock(now)}`;
  renderLeader(now);
  renderInstances(now);
  renderTimeline(now);
  renderHandovers();
  renderReport();
  renderLedger();
  $('feed').innerHTML = [...feed].reverse().map((f) => `<li><span class="t">${clock(f.at)}</span>${f.html}</li>`).join('') ||
    '<li class="muted">waiting for events…</li>';
}

function renderLeader(now: number): void {
  const leader = clusterLeader();
  const name = $('leader-name');
  name.textContent = leader ? leader.identity : 'none';
  name.className = leader ? '' : 'none';
  name.dataset.leader = leader?.identity ?? '';
  name.dataset.silent = String(leader?.silent ?? false);
  const ttl = [...peers.values()].find((p) => p.status?.session.ttlSeconds)?.status?.session.ttlSeconds;
  let detail: string;
  if (!leader) detail = 'no instance leads right now';
  else if (leader.silent) {
    detail = `token ${escapeHtml(leader.fencingToken ?? '?')} · <b>not answering</b>: the others wait for its session lease` +
      `${ttl ? ` (TTL ${ttl} s)` : ''} to expire before one of them takes over`;
  } else {
    detail = `fencing token ${escapeHtml(leader.fencingToken ?? '?')}` + (leader.since ? ` · leading for ${seconds(now - leader.since)} (since ${clock(leader.since)})` : '');
  }
  $('leader-detail').innerHTML = detail;
}

function renderInstances(now: number): void {
  const rows = [...peers.values()].sort((a, b) => byInstanceName(instanceOf(a), instanceOf(b))).map((peer) => {
    const s = peer.status;
    const instance = instanceOf(peer);
    const role = peer.downSince !== undefined ? (peer.downKind === 'no answer' ? 'paused' : 'down') : s?.role ?? 'down';
    const roleText = role === 'paused' ? 'no answer' : role === 'down' && peer.downSince !== undefined ? `down ${seconds(now - peer.downSince)}` : role;
    const locks = s?.heldLocks.length ? s.heldLocks.map((l) => `${escapeHtml(l.name)} <span class="muted">#${escapeHtml(l.fencingToken)}</span>`).join(', ') : '<span class="muted">–</span>';
    const session = !s
      ? '–'
      : peer.downSince !== undefined
        ? `last seen ${clock(peer.lastOk ?? peer.downSince)}`
        : `${escapeHtml(s.session.status)} <span class="mono muted">${escapeHtml(s.session.leaseHex ?? '')}</span>`;
    const counters = s?.counters;
    return `<tr data-instance="${escapeHtml(instance)}" data-role="${escapeHtml(role === 'paused' ? 'down' : role)}">
      <td><span class="dot" style="background:${colorOf(instance)}"></span><b>${escapeHtml(instance)}</b></td>
      <td><span class="badge ${escapeHtml(role)}">${escapeHtml(roleText)}</span></td>
      <td>${session}</td>
      <td>${locks}</td>
      <td>${counters ? `${counters.interval.runs} interval · ${counters.cron.runs} cron` : '–'}</td>
      <td>${counters ? `${counters.report.runs - counters.reportRefused} written${counters.reportRefused ? ` · <span class="refused">${counters.reportRefused} refused</span>` : ''}` : '–'}</td>
      <td class="mono muted">${escapeHtml(peer.url.replace(/^https?:\/\//, ''))}</td>
    </tr>`;
  });
  $('instances').querySelector('tbody')!.innerHTML = rows.join('');
}

function svg(tag: string, attributes: Record<string, string | number>, text?: string): string {
  const attrs = Object.entries(attributes).map(([k, v]) => `${k}="${escapeHtml(v)}"`).join(' ');
  return text === undefined ? `<${tag} ${attrs}/>` : `<${tag} ${attrs}>${escapeHtml(text)}</${tag}>`;
}

function renderTimeline(now: number): void {
  const element = $('timeline') as unknown as SVGSVGElement;
  const width = Math.max(600, element.clientWidth || 1200);
  const instances = [...new Set([...[...peers.values()].map(instanceOf), ...[...terms.values()].map((t) => t.instance)])]
    .filter((i) => !i.startsWith('http'))
    .sort(byInstanceName);
  const left = 96;
  const right = 12;
  const top = 26;
  const lane = 50;
  const height = top + lane * Math.max(1, instances.length) + 18;
  // Up to WINDOW_MS, but no more than the cluster's age: a young cluster fills the width.
  const span = Math.max(20_000, Math.min(WINDOW_MS, now - firstDataAt + 3_000));
  const start = now - span;
  const x = (t: number) => left + ((Math.max(start, Math.min(now, t)) - start) / span) * (width - left - right);
  const parts: string[] = [
    `<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">` +
      `<rect width="6" height="6" fill="#fff"/><rect width="3" height="6" fill="#d5d9e0"/></pattern></defs>`,
  ];
  // Axis: a tick every 5 or 10 s of wall-clock time.
  const step = span <= 45_000 ? 5_000 : 10_000;
  parts.push('<g class="axis">');
  for (let t = Math.ceil(start / step) * step; t <= now; t += step) {
    parts.push(svg('line', { x1: x(t), x2: x(t), y1: top - 4, y2: height - 4, stroke: '#eef0f4' }));
    if (x(t) < width - right - 28) parts.push(svg('text', { x: x(t), y: top - 10, 'text-anchor': 'middle' }, clock(t)));
  }
  parts.push('</g>');
  instances.forEach((instance, index) => {
    const y = top + index * lane;
    parts.push(svg('rect', { x: left, y: y + 2, width: width - left - right, height: lane - 6, fill: '#f7f8fa', rx: 4 }));
    parts.push(svg('circle', { cx: 10, cy: y + lane / 2 - 1, r: 5, fill: colorOf(instance) }));
    parts.push(svg('text', { x: 20, y: y + lane / 2 + 3, 'font-weight': 600 }, instance));
    for (const outage of outages.get(instance) ?? []) {
      const end = outage.to ?? now;
      if (end < start) continue;
      parts.push(svg('rect', { x: x(outage.from), y: y + 2, width: Math.max(1, x(end) - x(outage.from)), height: lane - 6, fill: 'url(#hatch)' }));
    }
    for (const term of terms.values()) {
      if (term.instance !== instance) continue;
      const end = termEnd(term, now).at;
      if (end < start) continue;
      const w = Math.max(2, x(end) - x(term.from));
      parts.push(svg('rect', { x: x(term.from), y: y + 5, width: w, height: 13, fill: COLOR.leader, rx: 3 }));
      if (w > 110) parts.push(svg('text', { x: x(term.from) + 6, y: y + 15.5, fill: '#fff', 'font-size': 11, 'font-weight': 600 }, `leader · token ${term.fencingToken}`));
      else if (w > 28) parts.push(svg('text', { x: x(term.from) + 4, y: y + 15.5, fill: '#fff', 'font-size': 11, 'font-weight': 600 }, term.fencingToken));
    }
    for (const run of runs.values()) {
      if (run.instance !== instance) continue;
      const end = runEnd(run, now);
      if (end < start) continue;
      // Rows inside the lane: leader bar, @Interval, @Cron, report.
      const row = { interval: 21, cron: 29, report: 37 }[run.job];
      const color = run.outcome === 'refused' || run.outcome === 'failed' ? COLOR.bad : COLOR[run.job];
      parts.push(svg('rect', { x: x(run.startedAt), y: y + row, width: Math.max(2, x(end) - x(run.startedAt)), height: 6, fill: color, rx: 1 }));
      if (run.outcome === 'refused') parts.push(svg('text', { x: x(end) + 3, y: y + row + 6, fill: COLOR.bad, 'font-weight': 700, 'font-size': 11 }, '✕ refused'));
    }
  });
  for (const handover of handovers(now)) {
    if (handover.at < start || handover.how === 're-elected') continue;
    parts.push(svg('line', { x1: x(handover.at), x2: x(handover.at), y1: top - 2, y2: height - 4, stroke: '#1d2330', 'stroke-dasharray': '3 3' }));
    const nearRight = x(handover.at) > width - right - 110;
    parts.push(svg('text', {
      x: x(handover.at) + (nearRight ? -4 : 4),
      y: height - 5,
      'font-size': 11,
      fill: '#1d2330',
      'text-anchor': nearRight ? 'end' : 'start',
    }, `handover ${handover.estimated ? '≈' : ''}${seconds(handover.gap)}`));
  }
  element.setAttribute('viewBox', `0 0 ${width} ${height}`);
  element.setAttribute('height', String(height));
  element.innerHTML = parts.join('');
  $('window-label').textContent = `last ${Math.round(span / 1000)} s · per instance: leader bar, @Interval runs, @Cron runs, report runs`;
}

function renderHandovers(): void {
  const list = handovers(Date.now()).reverse().slice(0, 8);
  $('handovers').innerHTML = list.length
    ? list
        .map((h) => {
          // A dead leader's end is only known roughly (see termEnd): hence "≈".
          const gap = ` after <b>${h.estimated ? '≈' : ''}${seconds(h.gap)}</b>`;
          const what = h.how === 're-elected'
            ? `<b>${escapeHtml(h.to)}</b> re-elected (new session)`
            : `<b>${escapeHtml(h.from)}</b> ${h.how} → <b>${escapeHtml(h.to)}</b> leads${gap}`;
          return `<li><span class="t">${clock(h.at)}</span>${what}</li>`;
        })
        .join('')
    : '<li class="muted">none yet: stop the leader (Ctrl-C or kill) to see one</li>';
}

let ledger: ClusterHistory['ledger'] = {};

/** The library's run ledger: the last slots of each once-per-firing job, who ran them, and how. */
function renderLedger(): void {
  const jobs = Object.entries(ledger ?? {});
  $('ledger').innerHTML = jobs.length
    ? jobs
        .map(([job, rows]) =>
          `<p><b>${escapeHtml(job)}</b> · ${rows.length} records</p><ol>${rows
            .slice(0, 6)
            .map((r) => `<li><span class="t">${clock(r.slot)}</span><b>${escapeHtml(r.instance)}</b> ${escapeHtml(r.outcome)}` +
              `${r.attempt > 1 ? ` <span class="refused">attempt ${r.attempt}</span>` : ''} <span class="mono">#${escapeHtml(r.fencingToken)}</span>` +
              `${r.error ? ` <span class="muted">${escapeHtml(r.error)}</span>` : ''}</li>`)
            .join('')}</ol>`)
        .join('')
    : '<p class="muted">no once-per-firing run recorded yet</p>';
}

function renderReport(): void {
  const refused = [...runs.values()].filter((r) => r.outcome === 'refused').sort((a, b) => (b.endedAt ?? 0) - (a.endedAt ?? 0));
  const head = report
    ? `<p>Highest accepted token <b class="mono">${escapeHtml(report.fencingToken)}</b>, written by <b>${escapeHtml(report.writer)}</b> at ${clock(report.writtenAt)} · ${report.version} accepted writes.</p>`
    : '<p class="muted">no report written yet</p>';
  const stale = refused.length
    ? `<ol>${refused.slice(0, 5).map((r) => `<li><span class="t">${clock(r.endedAt ?? r.startedAt)}</span><b>${escapeHtml(r.instance)}</b> <span class="refused">refused</span>: ${escapeHtml(r.detail ?? '')}${r.lockHeldAtWrite === false ? ' <span class="muted">(its lock had expired during a pause)</span>' : ''}</li>`).join('')}</ol>`
    : '<p class="muted">No stale write so far. <code>npm run demo</code> pauses a lock holder (SIGSTOP) to provoke one.</p>';
  $('report').innerHTML = head + stale;
}

// ------------------------------------------------------------------ main loop

async function tick(): Promise<void> {
  await Promise.all([...peers.values()].map(pollPeer));
  await pollHistory();
  render();
}

async function loop(): Promise<void> {
  for (;;) {
    const started = Date.now();
    try {
      await tick();
    } catch (err) {
      console.error('dashboard refresh failed', err);
    }
    await new Promise((resolve) => window.setTimeout(resolve, Math.max(100, POLL_MS - (Date.now() - started))));
  }
}

window.addEventListener('resize', queueRender);
void loop();

export {};
