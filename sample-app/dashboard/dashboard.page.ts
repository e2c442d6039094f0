// The dashboard's HTML and CSS. The behaviour is dashboard.client.ts, compiled by the
// same tsc run as the rest of the app into a plain ES module the browser loads as is:
// no bundler, no framework, nothing fetched from outside the cluster.

export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sample cluster · nest-etcd-coordination</title>
<style>
  :root {
    --bg: #f5f6f8; --panel: #fff; --text: #1d2330; --muted: #5d6677; --line: #dde1e8;
    --leader: #e0a100; --leader-bg: #fff4d1; --follower: #2f6fdb; --down: #9aa1ad;
    --ok: #1e8e3e; --bad: #c62828; --cron: #7b3fc4; --interval: #2f6fdb; --report: #1e8e3e;
  }
  * { box-sizing: border-box; }
  body { margin: 0; background: var(--bg); color: var(--text);
         font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", sans-serif; }
  header { display: flex; align-items: baseline; justify-content: space-between; gap: 16px; flex-wrap: wrap;
           padding: 14px 24px; background: #1d2330; color: #fff; }
  header h1 { margin: 0; font-size: 18px; font-weight: 600; }
  header h1 span { color: #aeb6c6; font-weight: 400; }
  #meta { color: #cfd5e1; font-size: 13px; }
  #meta b { color: #fff; font-weight: 600; }
  main { padding: 18px 24px 32px; display: grid; gap: 18px; max-width: 1400px; margin: 0 auto; }
  section { background: var(--panel); border: 1px solid var(--line); border-radius: 8px; padding: 14px 18px; }
  h2 { margin: 0 0 10px; font-size: 15px; font-weight: 600; }
  h2 small { color: var(--muted); font-weight: 400; font-size: 13px; }
  .top { display: grid; grid-template-columns: minmax(260px, 1fr) 2.4fr; gap: 18px; }
  .leader-card { background: var(--leader-bg); border-color: #f0d27a; }
  .leader-card .label { text-transform: uppercase; letter-spacing: .08em; font-size: 12px; color: #8a6a00; }
  #leader-name { font-size: 34px; font-weight: 700; margin: 2px 0 4px; }
  #leader-name.none { color: var(--bad); font-size: 24px; }
  #leader-detail { color: #5c4b12; }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: left; padding: 7px 10px; border-bottom: 1px solid var(--line); white-space: nowrap; }
  th { color: var(--muted); font-weight: 500; font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
  tr:last-child td { border-bottom: none; }
  tr[data-role="down"] td { color: var(--down); }
  .badge { display: inline-block; padding: 1px 9px; border-radius: 10px; font-size: 12px; font-weight: 600; }
  .badge.leader { background: var(--leader); color: #fff; }
  .badge.follower { background: #e3ecfb; color: var(--follower); }
  .badge.down, .badge.no-session { background: #eceef2; color: #6b7280; }
  .badge.paused { background: #fde2e1; color: var(--bad); }
  .dot { display: inline-block; width: 10px; height: 10px; border-radius: 50%; margin-right: 6px; vertical-align: 0; }
  .mono { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: 12.5px; }
  .muted { color: var(--muted); }
  svg { width: 100%; display: block; }
  svg text { font: 12px system-ui, sans-serif; fill: var(--text); }
  svg .axis text { fill: var(--muted); font-size: 11px; }
  .legend { display: flex; gap: 18px; flex-wrap: wrap; color: var(--muted); font-size: 12.5px; margin-top: 8px; }
  .legend i { display: inline-block; width: 14px; height: 10px; margin-right: 5px; vertical-align: -1px; border-radius: 2px; }
  .bottom { display: grid; grid-template-columns: 1fr 1fr 1.2fr; gap: 18px; }
  ol { margin: 0; padding-left: 0; list-style: none; }
  ol li { padding: 5px 0; border-bottom: 1px dashed var(--line); }
  ol li:last-child { border-bottom: none; }
  #feed { max-height: 260px; overflow: auto; }
  ol li .t { color: var(--muted); margin-right: 8px; font-variant-numeric: tabular-nums; }
  .refused { color: var(--bad); font-weight: 600; }
  .good { color: var(--ok); font-weight: 600; }
  @media (max-width: 1000px) { .top, .bottom { grid-template-columns: 1fr; } }
</style>
</head>
<body>
<header>
  <h1>nest-etcd-coordination <span>· sample cluster</span></h1>
  <div id="meta">connecting…</div>
</header>
<main>
  <div class="top">
    <section class="leader-card" aria-live="polite">
      <div class="label">Leader</div>
      <div id="leader-name" data-testid="leader">…</div>
      <div id="leader-detail"></div>
    </section>
    <section>
      <h2>Instances</h2>
      <table id="instances" data-testid="instances">
        <thead><tr><th>Instance</th><th>Role</th><th>Session</th><th>Held locks</th><th>Leader-only runs</th><th>Report writes</th><th>Address</th></tr></thead>
        <tbody></tbody>
      </table>
    </section>
  </div>
  <section>
    <h2>Timeline <small id="window-label"></small></h2>
    <svg id="timeline" role="img" aria-label="leadership and job runs per instance over time"></svg>
    <div class="legend">
      <span><i style="background:var(--leader)"></i>leader (token)</span>
      <span><i style="background:var(--interval)"></i>@Interval run (leader only)</span>
      <span><i style="background:var(--cron)"></i>@Cron run (leader only)</span>
      <span><i style="background:var(--report)"></i>@WithLock report written</span>
      <span><i style="background:var(--bad)"></i>stale report write refused</span>
      <span><i style="background:repeating-linear-gradient(45deg,#d5d9e0 0 3px,#fff 3px 6px)"></i>not answering</span>
      <span>┆ handover</span>
    </div>
  </section>
  <div class="bottom">
    <section><h2>Handovers</h2><ol id="handovers" data-testid="handovers"></ol></section>
    <section><h2>Shared report <small>fenced by the lock's token</small></h2><div id="report" data-testid="report"></div></section>
    <section><h2>Run ledger <small>once per firing, from etcd (JobsService.history)</small></h2><div id="ledger" data-testid="ledger"></div></section>
    <section><h2>Live events <small>server-sent, from every instance</small></h2><ol id="feed"></ol></section>
  </div>
  <div class="bottom">
    <section style="grid-column: span 2"><h2>Tenant shards <small>per-tenant job, 16 shards over the live members</small></h2><div id="shards" data-testid="shards"></div></section>
    <section><h2>Shard moves</h2><ol id="shard-moves"></ol></section>
  </div>
</main>
<script type="module" src="/dashboard.js"></script>
<script type="module" src="/tenants.js"></script>
</body>
</html>
`;
