/**
 * How a client learns that its upstream request failed, on whichever protocol it speaks: a gRPC call
 * ends with a status it can read (before or after the head), a response already begun is broken (so a
 * truncated body never looks complete), and anything else gets the proxy's JSON 502/504.
 */
import { errorBody, sendJson } from '../respond.js';
import * as clientSide from './client-side.js';
import type { ClientRequest, ClientResponse } from './client-side.js';
import { endGrpcCall, grpcStatusOfFailure } from './grpc.js';
import type { UpstreamFailure } from './upstream-errors.js';

/** The grpc-status the call ended with, 'broken' when the response was cut, undefined when the proxy answered (or the call was already over). */
export function answerFailure(
  req: ClientRequest,
  res: ClientResponse,
  failure: UpstreamFailure,
  grpc: boolean,
  answered: boolean,
): number | 'broken' | undefined {
  if (grpc && clientSide.isHttp2(res)) {
    const status = grpcStatusOfFailure(failure.kind);
    return endGrpcCall(res, status, failure.msg) ? status : undefined;
  }
  if (answered || res.headersSent) {
    clientSide.breakResponse(res);
    return 'broken';
  }
  // The rest of an unfinished upload will not be read: the connection cannot carry another request.
  if (!req.complete) clientSide.closeConnectionAfter(res);
  sendJson(res, failure.status, errorBody(failure.msg));
  return undefined;
}
