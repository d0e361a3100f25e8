/**
 * The HTTP/2 request listeners: the same decisions as the HTTP/1.1 router (router.ts), less the
 * HTTP/1.1 framing checks nghttp2 has made already, plus gRPC. gRPC paths are
 * `/package.Service/Method`, which no `--api-prefix` can cover, so a gRPC call is forwarded
 * whatever the prefix unless its path is one of the proxy's own.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import { performance } from 'node:perf_hooks';
import type { PathClassifier, PathDecision } from './paths.js';
import type { HttpForwarder } from '../proxy/forwarder.js';
import { isGrpc } from '../proxy/grpc.js';
import { pathOf } from '../proxy/url-parts.js';
import { type Handler, errorBody, sendJson } from '../respond.js';

export interface Http2RouterDeps {
  readonly classify: PathClassifier;
  readonly http: HttpForwarder;
  readonly ownRoutes: ReadonlyMap<string, Handler>;
}

/** A gRPC method path: exactly two non-empty segments, nothing to resolve. */
const GRPC_PATH = /^\/[^/?#%\\]+\/[^/?#%\\]+$/;

/**
 * The proxy's own handlers are written against Node's HTTP/1.1 objects; the compatibility API's
 * request and response offer the same surface for what they use (method, url, headers,
 * setHeader, writeHead, end), and every own path is tested over HTTP/2.
 */
function asHttp1(req: Http2ServerRequest, res: Http2ServerResponse): [IncomingMessage, ServerResponse] {
  return [req as unknown as IncomingMessage, res as unknown as ServerResponse];
}

function decide(classify: PathClassifier, req: Http2ServerRequest): PathDecision {
  const decision = classify(req.url);
  if (decision.kind === 'not_found' && isGrpc(req.headers) && GRPC_PATH.test(req.url)) return { kind: 'forward', url: req.url };
  return decision;
}

/**
 * Forwards once the frames read with this stream's HEADERS have been processed: a stream the client
 * reset in the same read (the rapid-reset attack, CVE-2023-44487) is never sent upstream.
 */
function forwardUnlessReset(http: HttpForwarder, req: Http2ServerRequest, res: Http2ServerResponse, url: string, startedAt: number): void {
  setImmediate(forwardIfOpen, http, req, res, url, startedAt);
}

function forwardIfOpen(http: HttpForwarder, req: Http2ServerRequest, res: Http2ServerResponse, url: string, startedAt: number): void {
  if (res.stream.closed || res.stream.destroyed) return;
  http.forward(req, res, url, startedAt);
}

export function createHttp2RequestListener({ classify, http, ownRoutes }: Http2RouterDeps) {
  return function onHttp2Request(req: Http2ServerRequest, res: Http2ServerResponse): void {
    const startedAt = performance.now();
    const decision = decide(classify, req);
    switch (decision.kind) {
      case 'forward':
        forwardUnlessReset(http, req, res, decision.url, startedAt);
        return;
      case 'own': {
        const handler = ownRoutes.get(decision.path);
        if (handler !== undefined) handler(...asHttp1(req, res));
        else sendJson(res, 404, errorBody('not found'));
        return;
      }
      case 'not_found':
        sendJson(res, 404, errorBody('not found'));
        return;
      case 'bad_request':
        sendJson(res, 400, errorBody(decision.msg));
        return;
    }
  };
}

/** The admin listener over HTTP/2: only the proxy's own paths. */
export function createHttp2AdminListener(ownRoutes: ReadonlyMap<string, Handler>) {
  return function onHttp2AdminRequest(req: Http2ServerRequest, res: Http2ServerResponse): void {
    const handler = ownRoutes.get(pathOf(req.url));
    if (handler !== undefined) handler(...asHttp1(req, res));
    else sendJson(res, 404, errorBody('not found'));
  };
}
