/*
 * The status page's behaviour. It polls `status.json` (relative to itself), keeps the last few snapshots,
 * and shows rates, error ratio and p50/p99 over that window, computed from the cumulative counts as
 * Prometheus' rate() and histogram_quantile() would. Route names come from request paths, so they are
 * only ever written with textContent. Query parameters: `interval` (poll period, default 1s) and
 * `window` (rate window, default 5s). Runs after figures.js, in the same scope (see assemble.ts).
 */
/* global duration, rate, percent, seconds, uptime, count, quantile, minus */

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const intervalMs = duration(params.get('interval'), 1000, 100);
const windowMs = Math.max(duration(params.get('window'), 5000, 100), intervalMs);
const TOKEN_KEY = 'metrics-proxy-status-token';
const CHART_POINTS = 120;
/** Snapshots over the rate window, oldest first. */
let snapshots = [];
/** requests/s, one point per poll. */
const chart = [];
let lastOk = 0;
let timer;

function show(id, text, value) {
  const el = $(id);
  el.textContent = text;
  el.dataset.value = value === null || value === undefined ? '' : String(value);
}

function restarted(before, now) {
  return before.instance !== now.instance || (now.requests.total ?? 0) < (before.requests.total ?? 0);
}

/** Adds a snapshot to the window; returns the oldest one still in it (null while there is only one). */
function remember(snap) {
  if (snapshots.length > 0 && restarted(snapshots[snapshots.length - 1], snap)) snapshots = [];
  snapshots.push(snap);
  while (snapshots.length > 2 && snapshots[1].time <= snap.time - windowMs) snapshots.shift();
  return snapshots.length > 1 ? snapshots[0] : null;
}

function showHealth(snap) {
  const health = snap.health;
  const badge = $('health');
  const state = health.draining ? 'draining' : health.upstream.reachable ? 'ready' : 'down';
  badge.className = 'badge ' + state;
  badge.dataset.state = state;
  badge.textContent = state === 'ready' ? 'upstream up' : state === 'draining' ? 'draining' : 'upstream down';
  badge.title = health.upstream.msg || '';
  $('upstream').textContent = '→ ' + health.upstream.url + (health.upstream.msg ? ' (' + health.upstream.msg + ')' : '') +
    ' · up ' + uptime(snap.uptimeSeconds);
}

/** The tiles; returns requests/s over the window (null without a window yet). */
function showTiles(snap, base, dt, bounds, top) {
  const total = snap.requests.total;
  const errors = snap.requests.errors;
  let rps = null, ratio = null, p50 = null, p99 = null;
  if (base !== null && dt > 0 && total !== null) {
    const requests = total - (base.requests.total ?? 0);
    rps = requests / dt;
    ratio = requests > 0 ? (errors - (base.requests.errors ?? 0)) / requests : null;
    const recent = minus(snap.latency.counts, base.latency && base.latency.counts, bounds.length + 1);
    p50 = quantile(0.5, bounds, recent);
    p99 = quantile(0.99, bounds, recent);
  }
  show('rps', rate(rps), rps);
  show('total', total === null ? '–' : count(total) + ' total', total);
  show('error-ratio', percent(ratio), ratio);
  show('errors-total', errors === null ? '–' : count(errors) + ' total', errors);
  $('error-ratio').parentElement.classList.toggle('alert', ratio !== null && ratio > 0);
  show('p50', seconds(p50, top), p50);
  show('p99', seconds(p99, top), p99);
  show('inflight', snap.requests.inFlight === null ? 'n/a' : count(snap.requests.inFlight), snap.requests.inFlight);
  show('websockets', count(snap.websockets), snap.websockets);
  return rps;
}

function showSource(snap) {
  const failures = snap.upstreamFailures ? Object.entries(snap.upstreamFailures).filter((e) => e[1] > 0) : [];
  $('failures').textContent = failures.length === 0 ? '' :
    'proxy-answered failures: ' + failures.map((e) => e[0] + ' ' + count(e[1])).join(', ');
  const notice = $('notice');
  notice.hidden = snap.source === 'standard';
  notice.textContent = snap.source === 'seed'
    ? 'Only the seed family is enabled (--metrics seed): totals, errors and latency come from apiCount, apiErrorCount and apiDuration. Per-route figures and in-flight requests need the standard family.'
    : 'Metrics are off (--metrics none): only health and WebSocket sessions are shown.';
}

function update(snap) {
  const base = remember(snap);
  const dt = base === null ? 0 : (snap.time - base.time) / 1000;
  const bounds = snap.latency ? snap.latency.bounds : [];
  const top = bounds[bounds.length - 1];
  showHealth(snap);
  const rps = showTiles(snap, base, dt, bounds, top);
  showSource(snap);
  if (rps !== null) chart.push(rps);
  while (chart.length > CHART_POINTS) chart.shift();
  drawChart();
  showRoutes(snap, base, dt, bounds, top);
  $('window').textContent = 'rates over the last ' + (dt > 0 ? dt.toFixed(1) + ' s' : '…') + ' (window ' + windowMs / 1000 +
    ' s, polled every ' + intervalMs / 1000 + ' s) · instance ' + snap.instance.slice(0, 8);
}

function cell(row, text, value, bad) {
  const td = document.createElement('td');
  td.textContent = text;
  if (value !== undefined) td.dataset.value = value === null ? '' : String(value);
  if (bad) td.className = 'bad';
  row.appendChild(td);
}

/** Per route: its figures over the window, busiest first. */
function routeRows(snap, base, dt, bounds) {
  const before = new Map(base && base.routes ? base.routes.map((r) => [r.route, r]) : []);
  const rows = snap.routes.map((r) => {
    const b = before.get(r.route);
    const requests = r.requests - (b ? b.requests : 0);
    const recent = minus(r.counts, b && b.counts, bounds.length + 1);
    return {
      route: r.route, total: r.requests, errorsTotal: r.errors, websockets: r.websockets,
      rate: dt > 0 ? requests / dt : null,
      ratio: dt > 0 && requests > 0 ? (r.errors - (b ? b.errors : 0)) / requests : null,
      p50: dt > 0 ? quantile(0.5, bounds, recent) : null,
      p99: dt > 0 ? quantile(0.99, bounds, recent) : null,
    };
  });
  return rows.sort((a, b) => (b.rate || 0) - (a.rate || 0) || b.total - a.total || (a.route < b.route ? -1 : 1));
}

function showRoutes(snap, base, dt, bounds, top) {
  const table = $('routes');
  const empty = $('routes-empty');
  if (snap.routes === null) {
    table.hidden = true;
    empty.hidden = false;
    empty.textContent = 'Per-route figures need the standard metric family.';
    return;
  }
  const rows = routeRows(snap, base, dt, bounds);
  const body = document.createElement('tbody');
  for (const r of rows) {
    const tr = document.createElement('tr');
    tr.dataset.route = r.route;
    cell(tr, r.route);
    cell(tr, rate(r.rate), r.rate);
    cell(tr, percent(r.ratio), r.ratio, r.ratio !== null && r.ratio > 0);
    cell(tr, seconds(r.p50, top), r.p50);
    cell(tr, seconds(r.p99, top), r.p99);
    cell(tr, count(r.total), r.total);
    cell(tr, count(r.errorsTotal), r.errorsTotal, r.errorsTotal > 0);
    cell(tr, count(r.websockets), r.websockets);
    body.appendChild(tr);
  }
  table.replaceChild(body, table.tBodies[0]);
  table.hidden = rows.length === 0;
  empty.hidden = rows.length > 0;
  empty.textContent = 'No forwarded requests yet.';
}

function drawChart() {
  const canvas = $('chart');
  const ratio = window.devicePixelRatio || 1;
  const width = Math.round(canvas.clientWidth * ratio), height = Math.round(canvas.clientHeight * ratio);
  if (canvas.width !== width || canvas.height !== height) { canvas.width = width; canvas.height = height; }
  const ctx = canvas.getContext('2d');
  ctx.clearRect(0, 0, width, height);
  const style = getComputedStyle(document.documentElement);
  const max = Math.max(1, ...chart);
  const pad = 6 * ratio;
  ctx.fillStyle = style.getPropertyValue('--muted');
  ctx.font = (11 * ratio) + 'px system-ui, sans-serif';
  ctx.fillText('req/s, max ' + rate(max), pad, pad + 9 * ratio);
  if (chart.length < 2) return;
  const step = (width - 2 * pad) / (CHART_POINTS - 1);
  const x0 = width - pad - (chart.length - 1) * step;
  ctx.beginPath();
  chart.forEach((v, i) => {
    const x = x0 + i * step, y = height - pad - (v / max) * (height - 2 * pad - 12 * ratio);
    if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
  });
  ctx.strokeStyle = style.getPropertyValue('--accent');
  ctx.lineWidth = 2 * ratio;
  ctx.stroke();
}

function stale(reason) {
  document.body.classList.add('stale');
  const badge = $('health');
  if (lastOk === 0) { badge.className = 'badge'; badge.dataset.state = 'unknown'; badge.textContent = 'no data'; }
  $('updated').textContent = (lastOk === 0 ? 'no data yet' : 'stale since ' + new Date(lastOk).toLocaleTimeString()) + ': ' + reason;
}

function askForToken(wrong) {
  $('auth').hidden = false;
  $('auth-msg').textContent = wrong ? 'That token was refused. ' : '';
  $('token').focus();
  stale('the status data needs the metrics bearer token');
}

async function poll() {
  timer = undefined;
  const token = sessionStorage.getItem(TOKEN_KEY);
  const headers = { accept: 'application/json' };
  if (token !== null) headers.authorization = 'Bearer ' + token;
  try {
    const res = await fetch('status.json', { headers, cache: 'no-store' });
    if (res.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      askForToken(token !== null);
      return;
    }
    if (!res.ok) throw new Error('HTTP ' + res.status);
    const snap = await res.json();
    if (snap.version !== 1) throw new Error('unknown status.json version ' + snap.version);
    update(snap);
    lastOk = Date.now();
    document.body.classList.remove('stale');
    $('updated').textContent = 'updated ' + new Date(lastOk).toLocaleTimeString();
  } catch (err) {
    stale(err instanceof Error ? err.message : String(err));
  }
  timer = setTimeout(poll, intervalMs);
}

$('auth').addEventListener('submit', (event) => {
  event.preventDefault();
  const value = $('token').value.trim();
  if (value === '') return;
  sessionStorage.setItem(TOKEN_KEY, value);
  $('token').value = '';
  $('auth').hidden = true;
  if (timer !== undefined) clearTimeout(timer);
  poll();
});
poll();
