/**
 * The request and upgrade listeners. The proxy's own endpoints (metrics,
 * health) are answered here, the API prefix goes to the forwarders, anything
 * else gets a 404 and is never forwarded. Only forwarded requests appear in
 * the api* metrics.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import type { PathClassifier } from './paths.js';
import type { HttpForwarder } from '../proxy/forwarder.js';
import { type Refusal, checkRequest, isPoisoned, poison } from './request-checks.js';
import { type Handler, errorBody, sendJson, sendJsonOnSocket } from '../respond.js';
import type { WebSocketForwarder } from '../proxy/websocket/forwarder.js';
import { pathOf } from '../proxy/url-parts.js';

export type { Handler } from '../respond.js';

export interface RouterDeps {
  readonly classify: PathClassifier;
  readonly http: HttpForwarder;
  readonly websocket: WebSocketForwarder;
  /** Handlers of the proxy's own paths; a path the classifier reserves but this map lacks gets 404. */
  readonly ownRoutes: ReadonlyMap<string, Handler>;
  /** While draining, every answer asks the client to close its connection. */
  readonly isDraining: () => boolean;
  /** Idle timeout of a client connection while the proxy answers it itself; 0 = off. */
  readonly clientIdleMs: number;
}

const NOT_FOUND = errorBody('not found');

/** A reset client socket is closed by Node already; there is nothing left to answer. */
function ignoreSocketError(): void {}

export function notFound(_req: IncomingMessage, res: ServerResponse): void {
  sendJson(res, 404, NOT_FOUND);
}

function refuse(req: IncomingMessage, res: ServerResponse, refusal: Refusal): void {
  if (refusal.poison) {
    poison(req);
    res.shouldKeepAlive = false;
  }
  sendJson(res, refusal.status, errorBody(refusal.msg));
}

/** What every listener checks first; false when the request has been answered (or dropped) already. */
function admit(req: IncomingMessage, res: ServerResponse, isDraining: () => boolean): boolean {
  if (isPoisoned(req)) {
    // Pipelined behind a request whose framing was faulty: these bytes were never a request.
    req.socket.destroy();
    return false;
  }
  const refusal = checkRequest(req);
  if (refusal !== undefined) {
    refuse(req, res, refusal);
    return false;
  }
  if (isDraining()) res.shouldKeepAlive = false;
  return true;
}

export function createRequestListener({ classify, http, ownRoutes, isDraining, clientIdleMs }: RouterDeps) {
  /** Arms the client idle timer, or (for a forwarded exchange, watched upstream) disarms it. */
  const watchClient = (req: IncomingMessage, ms: number): void => {
    if ((req.socket.timeout ?? 0) !== ms) req.socket.setTimeout(ms);
  };
  return function onRequest(req: IncomingMessage, res: ServerResponse): void {
    const startedAt = performance.now();
    const decision = classify(req.url ?? '');
    watchClient(req, decision.kind === 'forward' ? 0 : clientIdleMs);
    if (!admit(req, res, isDraining)) return;
    switch (decision.kind) {
      case 'forward':
        http.forward(req, res, decision.url, startedAt);
        return;
      case 'own':
        (ownRoutes.get(decision.path) ?? notFound)(req, res);
        return;
      case 'not_found':
        notFound(req, res);
        return;
      case 'bad_request':
        sendJson(res, 400, errorBody(decision.msg));
        return;
    }
  };
}

export function createUpgradeListener({ classify, websocket }: RouterDeps) {
  return function onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const startedAt = performance.now();
    // Node drops its own error listener from a socket it hands over for an upgrade.
    socket.on('error', ignoreSocketError);
    const refusal = checkRequest(req);
    if (refusal !== undefined) {
      sendJsonOnSocket(socket, refusal.status, errorBody(refusal.msg));
      return;
    }
    const decision = classify(req.url ?? '');
    if (decision.kind === 'bad_request') {
      sendJsonOnSocket(socket, 400, errorBody(decision.msg));
    } else if (decision.kind !== 'forward') {
      sendJsonOnSocket(socket, 404, NOT_FOUND);
    } else if (req.method !== 'GET' || req.headers.upgrade?.toLowerCase() !== 'websocket') {
      sendJsonOnSocket(socket, 400, errorBody('only websocket upgrades are supported'));
    } else if (typeof req.headers['sec-websocket-key'] !== 'string') {
      // Without a key the upstream's 101 cannot be verified, and the upgrade would be a blind tunnel.
      sendJsonOnSocket(socket, 400, errorBody('websocket upgrade without Sec-WebSocket-Key'));
    } else {
      websocket.forward(req, socket, head, decision.url, startedAt);
    }
  };
}

/** The admin listener: only the proxy's own paths, never forwarding. */
export function createAdminListener(ownRoutes: ReadonlyMap<string, Handler>, isDraining: () => boolean) {
  return function onAdminRequest(req: IncomingMessage, res: ServerResponse): void {
    if (!admit(req, res, isDraining)) return;
    (ownRoutes.get(pathOf(req.url)) ?? notFound)(req, res);
  };
}

export function refuseUpgrade(_req: IncomingMessage, socket: Duplex): void {
  socket.on('error', ignoreSocketError);
  sendJsonOnSocket(socket, 404, NOT_FOUND);
}
