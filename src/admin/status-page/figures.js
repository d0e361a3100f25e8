/*
 * The status page's arithmetic and wording, without the DOM: query durations, numbers as shown, and
 * histogram_quantile over cumulative bucket counts. A classic script: the build inlines it with page.js,
 * in this order, into the page's one <script>, where both share one scope.
 */
/* exported duration, rate, percent, seconds, uptime, count, quantile, minus */

const wholeNumber = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

/** A query parameter such as `250ms`, `2s` or `2` (seconds) in ms, at least `min`, at most an hour. */
function duration(text, fallback, min) {
  if (text === null || text === '') return fallback;
  const match = /^(\d+(?:\.\d+)?)(ms|s)?$/.exec(text.trim());
  if (match === null) return fallback;
  const ms = Number(match[1]) * (match[2] === 'ms' ? 1 : 1000);
  return Math.min(Math.max(ms, min), 3600000);
}

function count(value) {
  return wholeNumber.format(value);
}

function rate(value) {
  if (value === null) return '–';
  if (value >= 100) return wholeNumber.format(value);
  return value.toFixed(value >= 10 ? 1 : 2);
}

function percent(ratio) {
  if (ratio === null) return '–';
  const p = ratio * 100;
  return (p === 0 || p === 100 ? p.toFixed(0) : p < 10 ? p.toFixed(2) : p.toFixed(1)) + ' %';
}

/** A latency; Infinity (beyond the last bucket) shows as more than the top bound. */
function seconds(s, top) {
  if (s === null) return '–';
  if (s === Infinity) return '> ' + seconds(top, top);
  if (s < 0.001) return (s * 1e6).toPrecision(3) + ' µs';
  if (s < 1) return (s * 1000).toPrecision(3) + ' ms';
  return s.toFixed(2) + ' s';
}

function uptime(s) {
  const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
  if (d > 0) return d + 'd ' + h + 'h';
  if (h > 0) return h + 'h ' + m + 'm';
  return m + 'm ' + Math.floor(s % 60) + 's';
}

/** histogram_quantile over cumulative counts on bounds (+Inf last), linear within a bucket. */
function quantile(q, bounds, counts) {
  const total = counts[counts.length - 1] || 0;
  if (total <= 0) return null;
  const rank = q * total;
  let i = 0;
  while (i < counts.length - 1 && counts[i] < rank) i++;
  if (i === counts.length - 1) return bounds.length === 0 ? null : Infinity;
  const lower = i === 0 ? 0 : bounds[i - 1];
  const below = i === 0 ? 0 : counts[i - 1];
  const inBucket = counts[i] - below;
  return inBucket <= 0 ? bounds[i] : lower + (bounds[i] - lower) * (rank - below) / inBucket;
}

/** Cumulative counts now minus those of an earlier snapshot (none: all of them), never below zero. */
function minus(now, before, length) {
  const out = [];
  for (let i = 0; i < length; i++) out.push(Math.max((now[i] || 0) - ((before && before[i]) || 0), 0));
  return out;
}
