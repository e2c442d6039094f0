// The dashboard's "Tenant shards" panel, in the browser (served as /tenants.js; type imports
// only, so no bundler). Polls GET /shards of the instance that served the page, falling back to
// the other instances it lists, and shows who owns which shard and the moves as they happen.
import type { ShardsView } from './tenants.controller.js';

const PANEL = document.getElementById('shards');
const MOVES = document.getElementById('shard-moves');
const COLORS = ['#00838f', '#ef6c00', '#ad1457', '#6d4c41', '#546e7a', '#9e9d24', '#5c6bc0', '#8d6e63'];
const colorOf = new Map<string, string>();
let previous = new Map<number, string | null>();

function color(identity: string | null): string {
  if (identity === null) return '#d5d9e0';
  if (!colorOf.has(identity)) colorOf.set(identity, COLORS[colorOf.size % COLORS.length]!);
  return colorOf.get(identity)!;
}

function render(view: ShardsView): void {
  if (!PANEL) return;
  const cells = view.owners
    .map((o) => `<span title="shard ${o.shard}: ${o.identity ?? 'nobody'} (token ${o.fencingToken ?? '-'})" style="display:inline-block;width:54px;margin:2px;padding:4px 0;text-align:center;border-radius:4px;color:#fff;background:${color(o.identity)}">${o.shard}<br><small>${o.identity ?? '—'}</small></span>`)
    .join('');
  const members = view.members.map((m) => `<span style="color:${color(m.identity)};margin-right:12px">● ${m.identity}</span>`).join('');
  PANEL.innerHTML = `<div>${cells}</div><div class="muted" style="margin-top:6px">members (oldest first): ${members}</div>`;
  const now = new Date().toLocaleTimeString();
  for (const o of view.owners) {
    const before = previous.get(o.shard);
    if (previous.size > 0 && before !== o.identity && MOVES) {
      const li = document.createElement('li');
      li.innerHTML = `<span class="t">${now}</span>shard ${o.shard}: ${before ?? 'nobody'} → ${o.identity ?? 'nobody'}`;
      MOVES.prepend(li);
      while (MOVES.children.length > 40) MOVES.lastChild?.remove();
    }
    previous.set(o.shard, o.identity);
  }
}

async function poll(): Promise<void> {
  try {
    const res = await fetch('/shards', { cache: 'no-store', signal: AbortSignal.timeout(1_500) });
    if (res.ok) render((await res.json()) as ShardsView);
  } catch {
    // The instance that served the page is down: the main dashboard says so.
  }
}

void poll();
setInterval(() => void poll(), 1_000);
