/**
 * Pure parsers for option values. Each takes the raw string and the name of
 * the place it came from (`--port` or `METRICS_PROXY_PORT`) and either returns
 * the typed value or throws an InvalidValueError (MP_ERR_INVALID_VALUE) whose
 * one-line message names both and the value.
 */
import { availableParallelism } from 'node:os';
import { InvalidValueError } from '../errors.js';
import { LOG_FORMATS, LOG_LEVELS, type LogFormatSetting, type LogLevel } from '../logger.js';

function invalid(source: string, raw: string, expected: string): InvalidValueError {
  return new InvalidValueError(source, raw, expected);
}

export function parseUpstream(raw: string, source: string): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw invalid(source, raw, 'expected an http:// or https:// URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw invalid(source, raw, 'expected an http:// or https:// URL');
  }
  if (url.username !== '' || url.password !== '') {
    throw invalid(source, raw, 'credentials in the URL are not supported');
  }
  if (url.search !== '' || url.hash !== '') {
    throw invalid(source, raw, 'a query or fragment is not allowed in the upstream URL');
  }
  return url;
}

export function parsePort(raw: string, source: string): number {
  const port = /^\d{1,5}$/.test(raw.trim()) ? Number(raw.trim()) : Number.NaN;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw invalid(source, raw, 'expected an integer from 0 to 65535');
  }
  return port;
}

export function parseHost(raw: string, source: string): string {
  const host = raw.trim();
  if (host === '' || /[\s/?#@]/.test(host)) throw invalid(source, raw, 'expected an IP address or host name');
  return host;
}

/**
 * A URL path used for routing: starts with `/`, no query, fragment, dot
 * segments or percent-escapes (so it can be compared as plain text), no
 * trailing slash except for the root itself.
 */
export function parseRoutePath(raw: string, source: string): string {
  const path = raw.trim();
  if (!path.startsWith('/')) throw invalid(source, raw, 'expected a path starting with /');
  if (/[?#%\\\s]/.test(path)) throw invalid(source, raw, 'a query, fragment, escape or blank is not allowed');
  const segments = path.split('/');
  if (segments.some((s) => s === '.' || s === '..')) throw invalid(source, raw, 'dot segments are not allowed');
  if (path.includes('//')) throw invalid(source, raw, 'empty path segments are not allowed');
  return path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path;
}

/** Histogram bucket upper bounds in milliseconds: positive, finite, strictly increasing. */
export function parseBuckets(raw: string, source: string): number[] {
  return parseBounds(raw, source, 'milliseconds');
}

/** Histogram bucket upper bounds in seconds (the standard family's unit). */
export function parseSecondsBuckets(raw: string, source: string): number[] {
  return parseBounds(raw, source, 'seconds');
}

function parseBounds(raw: string, source: string, unit: string): number[] {
  const parts = raw.split(',').map((p) => p.trim());
  if (parts.length === 0 || parts.some((p) => p === '')) {
    throw invalid(source, raw, 'expected a comma-separated list of numbers, e.g. 5,10,50');
  }
  const bounds = parts.map((p) => (/^[0-9]*\.?[0-9]+(e[+-]?[0-9]+)?$/i.test(p) ? Number(p) : Number.NaN));
  if (bounds.some((b) => !Number.isFinite(b) || b <= 0)) {
    throw invalid(source, raw, `every bucket must be a positive finite number of ${unit}`);
  }
  for (let i = 1; i < bounds.length; i++) {
    if ((bounds[i] as number) <= (bounds[i - 1] as number)) {
      throw invalid(source, raw, 'buckets must be strictly increasing');
    }
  }
  return bounds;
}

export function parseLogLevel(raw: string, source: string): LogLevel {
  const level = raw.trim().toLowerCase();
  const known = LOG_LEVELS.find((l) => l === level);
  if (known === undefined) throw invalid(source, raw, `expected one of ${LOG_LEVELS.join(', ')}`);
  return known;
}

export function parseLogFormat(raw: string, source: string): LogFormatSetting {
  const format = raw.trim().toLowerCase();
  const known = LOG_FORMATS.find((f) => f === format);
  if (known === undefined) throw invalid(source, raw, `expected one of ${LOG_FORMATS.join(', ')}`);
  return known;
}

/**
 * On/off options: `true`/`false`/`1`/`0` (any case). Parsed here rather than by commander,
 * which turns a boolean flag on for any defined env value, `false` included.
 */
export function parseBoolean(raw: string, source: string): boolean {
  const text = raw.trim().toLowerCase();
  if (text === 'true' || text === '1') return true;
  if (text === 'false' || text === '0') return false;
  throw invalid(source, raw, 'expected true, false, 1 or 0');
}

/** A ratio strictly between 0 and 1, such as an availability objective (0.999). */
export function parseRatio(raw: string, source: string): number {
  const text = raw.trim();
  const ratio = /^[0-9]*\.?[0-9]+(e-?[0-9]+)?$/i.test(text) ? Number(text) : Number.NaN;
  if (!(ratio > 0 && ratio < 1)) throw invalid(source, raw, 'expected a number between 0 and 1, both excluded, e.g. 0.999');
  return ratio;
}

/** A duration in whole milliseconds; 0 means "off" where the option allows it. */
export function parseMillis(raw: string, source: string): number {
  const text = raw.trim();
  const ms = /^\d{1,10}$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(ms) || ms > 2_147_483_647) {
    throw invalid(source, raw, 'expected a whole number of milliseconds, 0 or more');
  }
  return ms;
}

/** Milliseconds where 0 would mean nothing sensible (a timer that must run). */
export function parsePositiveMillis(raw: string, source: string): number {
  const text = raw.trim();
  const ms = /^\d{1,10}$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(ms) || ms < 1 || ms > 2_147_483_647) {
    throw invalid(source, raw, 'expected a whole number of milliseconds, 1 or more');
  }
  return ms;
}

/** A size in bytes, within Node's limits for header sizes. */
export function parseHeaderSize(raw: string, source: string): number {
  const text = raw.trim();
  const bytes = /^\d{1,9}$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isInteger(bytes) || bytes < 1024 || bytes > 1024 * 1024) {
    throw invalid(source, raw, 'expected a number of bytes from 1024 to 1048576');
  }
  return bytes;
}

export function parseFilePath(raw: string, source: string): string {
  if (raw.trim() === '') throw invalid(source, raw, 'expected a file path');
  return raw;
}

export const METRIC_FAMILIES = ['seed', 'standard'] as const;
export type MetricFamilyName = (typeof METRIC_FAMILIES)[number];

/** `seed,standard`, `seed`, `standard`, or `none` (process metrics only). */
export function parseFamilies(raw: string, source: string): MetricFamilyName[] {
  const names = raw.split(',').map((n) => n.trim().toLowerCase()).filter((n) => n !== '');
  if (names.length === 1 && names[0] === 'none') return [];
  const families: MetricFamilyName[] = [];
  for (const name of names) {
    const family = METRIC_FAMILIES.find((f) => f === name);
    if (family === undefined) throw invalid(source, raw, `expected a comma-separated list of ${METRIC_FAMILIES.join(', ')} (or none)`);
    if (!families.includes(family)) families.push(family);
  }
  if (families.length === 0) throw invalid(source, raw, `expected a comma-separated list of ${METRIC_FAMILIES.join(', ')} (or none)`);
  return families;
}

/**
 * The growth factor between neighbouring native-histogram buckets, as client_golang takes it:
 * above 1 (up to 65536, schema -4), or 0 to turn native histograms off.
 */
export function parseBucketFactor(raw: string, source: string): number {
  const text = raw.trim();
  const factor = /^[0-9]*\.?[0-9]+$/.test(text) ? Number(text) : Number.NaN;
  if (factor === 0 || (factor > 1 && factor <= 65_536)) return factor;
  throw invalid(source, raw, 'expected a factor above 1 (e.g. 1.1), at most 65536, or 0 to turn native histograms off');
}

/** A whole number from 1 to 100 000. */
export function parseCount(raw: string, source: string): number {
  const text = raw.trim();
  const n = /^\d{1,6}$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isInteger(n) || n < 1 || n > 100_000) throw invalid(source, raw, 'expected a whole number from 1 to 100000');
  return n;
}

export const UPSTREAM_PROTOCOLS = ['http1', 'http2'] as const;
export type UpstreamProtocol = (typeof UPSTREAM_PROTOCOLS)[number];

export function parseUpstreamProtocol(raw: string, source: string): UpstreamProtocol {
  const text = raw.trim().toLowerCase();
  const known = UPSTREAM_PROTOCOLS.find((p) => p === text);
  if (known === undefined) throw invalid(source, raw, `expected one of ${UPSTREAM_PROTOCOLS.join(', ')}`);
  return known;
}

/** `--workers`: a count from 1 to 64, or `auto` for the cores this process may use. */
export function parseWorkers(raw: string, source: string): number {
  const text = raw.trim().toLowerCase();
  if (text === 'auto') return Math.max(1, availableParallelism());
  const n = /^\d{1,2}$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isInteger(n) || n < 1 || n > 64) throw invalid(source, raw, 'expected a number of workers from 1 to 64, or auto');
  return n;
}
