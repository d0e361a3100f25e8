/**
 * Liveness and readiness, as Kubernetes probes expect them. /healthz answers
 * while the event loop turns. /readyz is 200 only when the upstream is
 * reachable (a TCP connect, or a GET of --ready-path) and the proxy is not
 * draining; the upstream check is cached for a second so probes cannot load it.
 */
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect } from 'node:net';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { connectTls } from '../lazy-modules.js';
import { connectHost, serverNameOf } from '../proxy/url-parts.js';
import { errorBody, sendJson } from '../respond.js';

export const HEALTH_PATH = '/healthz';
export const READY_PATH = '/readyz';

export interface HealthOptions {
  readonly upstream: URL;
  /** Upstream path to GET; undefined = a TCP (or TLS) connect is enough. */
  readonly readyPath: string | undefined;
  readonly timeoutMs: number;
  /** How long one check result is reused. */
  readonly cacheMs?: number;
}

export interface Health {
  /** Readiness turns 503 at once and stays so. */
  startDraining(): void;
  readonly draining: boolean;
  serveLiveness(req: IncomingMessage, res: ServerResponse): void;
  serveReadiness(req: IncomingMessage, res: ServerResponse): void;
  /** The upstream check behind /readyz (the same cached result), draining aside; for the status page. */
  checkUpstream(): Promise<CheckResult>;
}

export type CheckResult = { readonly ok: true } | { readonly ok: false; readonly msg: string };

function upstreamPort(upstream: URL): number {
  return upstream.port !== '' ? Number(upstream.port) : upstream.protocol === 'https:' ? 443 : 80;
}

function checkConnect(upstream: URL, timeoutMs: number): Promise<CheckResult> {
  return new Promise((resolve) => {
    const host = connectHost(upstream);
    const options = { host, port: upstreamPort(upstream), timeout: timeoutMs };
    const socket =
      upstream.protocol === 'https:'
        ? connectTls({ ...options, servername: serverNameOf(host) }, () => done({ ok: true }))
        : connect(options, () => done({ ok: true }));
    function done(result: CheckResult): void {
      socket.destroy();
      resolve(result);
    }
    socket.once('timeout', () => done({ ok: false, msg: 'upstream connect timed out' }));
    socket.once('error', (err: NodeJS.ErrnoException) => done({ ok: false, msg: `upstream unreachable: ${err.code ?? 'error'}` }));
  });
}

function checkPath(upstream: URL, path: string, timeoutMs: number): Promise<CheckResult> {
  return new Promise((resolve) => {
    const url = new URL(upstream.pathname.replace(/\/$/, '') + path, upstream);
    const send = upstream.protocol === 'https:' ? httpsRequest : httpRequest;
    const req = send(url, { method: 'GET', timeout: timeoutMs, agent: false, headers: { 'user-agent': 'metrics-proxy readiness' } }, (res) => {
      res.resume();
      const status = res.statusCode ?? 0;
      resolve(status >= 200 && status < 400 ? { ok: true } : { ok: false, msg: `upstream ready path answered ${status}` });
    });
    req.once('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })));
    req.once('error', (err: NodeJS.ErrnoException) => resolve({ ok: false, msg: `upstream unreachable: ${err.code ?? 'error'}` }));
    req.end();
  });
}

export function createHealth(options: HealthOptions): Health {
  const cacheMs = options.cacheMs ?? 1_000;
  let draining = false;
  let cached: { at: number; result: Promise<CheckResult> } | undefined;

  function check(): Promise<CheckResult> {
    const now = Date.now();
    if (cached === undefined || now - cached.at >= cacheMs) {
      const result =
        options.readyPath === undefined
          ? checkConnect(options.upstream, options.timeoutMs)
          : checkPath(options.upstream, options.readyPath, options.timeoutMs);
      cached = { at: now, result };
    }
    return cached.result;
  }

  return {
    get draining() {
      return draining;
    },
    startDraining() {
      draining = true;
    },
    checkUpstream: check,
    serveLiveness(_req, res) {
      sendJson(res, 200, { ok: true });
    },
    serveReadiness(_req, res) {
      if (draining) {
        sendJson(res, 503, errorBody('draining'));
        return;
      }
      check()
        .then((result) => {
          if (draining) sendJson(res, 503, errorBody('draining'));
          else if (result.ok) sendJson(res, 200, { ok: true });
          else sendJson(res, 503, errorBody(result.msg));
        })
        .catch(() => res.destroy());
    },
  };
}
