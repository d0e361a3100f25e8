/**
 * The request and upgrade listeners: the metrics path is answered here, the
 * API prefix goes to the forwarders, anything else gets a 404 and is never
 * forwarded. Only forwarded requests appear in the api* metrics.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { performance } from 'node:perf_hooks';
import type { MetricsEndpoint } from './metrics-endpoint.js';
import type { PathClassifier } from './paths.js';
import type { HttpForwarder } from './proxy.js';
import { errorBody, sendJson, sendJsonOnSocket } from './respond.js';
import type { WebSocketForwarder } from './websocket.js';

export interface RouterDeps {
  readonly classify: PathClassifier;
  readonly http: HttpForwarder;
  readonly websocket: WebSocketForwarder;
  readonly serveMetrics: MetricsEndpoint;
}

const NOT_FOUND = errorBody('not found');

/** A reset client socket is closed by Node already; there is nothing left to answer. */
function ignoreSocketError(): void {}

export function createRequestListener({ classify, http, serveMetrics }: RouterDeps) {
  return function onRequest(req: IncomingMessage, res: ServerResponse): void {
    const startedAt = performance.now();
    const decision = classify(req.url ?? '');
    switch (decision.kind) {
      case 'forward':
        http.forward(req, res, decision.url, startedAt);
        return;
      case 'metrics':
        serveMetrics(req, res);
        return;
      case 'not_found':
        sendJson(res, 404, NOT_FOUND);
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
    const decision = classify(req.url ?? '');
    if (decision.kind === 'bad_request') {
      sendJsonOnSocket(socket, 400, errorBody(decision.msg));
    } else if (decision.kind !== 'forward') {
      sendJsonOnSocket(socket, 404, NOT_FOUND);
    } else if (req.method !== 'GET' || req.headers.upgrade?.toLowerCase() !== 'websocket') {
      sendJsonOnSocket(socket, 400, errorBody('only websocket upgrades are supported'));
    } else {
      websocket.forward(req, socket, head, decision.url, startedAt);
    }
  };
}
