/**
 * gRPC over the proxy: recognising a call, reading its status, and failing it the gRPC way. A gRPC
 * client reads the outcome of a call from `grpc-status` (in the trailers, or in the headers of a
 * trailers-only response), never from the HTTP status, so the proxy's own failures are answered
 * with HTTP 200 and a status: UNAVAILABLE when the upstream cannot be reached or breaks the call,
 * DEADLINE_EXCEEDED when a timeout of the proxy's fires.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { Http2ServerResponse } from 'node:http2';
import type { UpstreamFailureKind } from '../errors.js';
import { headerName } from './upstream-pool.js';

export const GRPC_UNAVAILABLE = 14;
export const GRPC_DEADLINE_EXCEEDED = 4;

/** `application/grpc`, `application/grpc+proto`, `application/grpc;…`; not gRPC-Web, which is plain HTTP to a proxy. */
const GRPC_CONTENT_TYPE = /^application\/grpc(?:$|[+;])/i;

export function isGrpc(headers: IncomingHttpHeaders): boolean {
  const type = headers['content-type'];
  return type !== undefined && GRPC_CONTENT_TYPE.test(type);
}

/** The `grpc-status` among raw header or trailer fields; undefined when absent or not a number. */
export function grpcStatusIn(raw: readonly Buffer[] | null): number | undefined {
  if (raw === null) return undefined;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if (headerName(raw[i] as Buffer) !== 'grpc-status') continue;
    const text = (raw[i + 1] as Buffer).toString('latin1').trim();
    return /^\d{1,2}$/.test(text) ? Number(text) : undefined;
  }
  return undefined;
}

/** The status a call failed by the proxy ends with. */
export function grpcStatusOfFailure(kind: UpstreamFailureKind): number {
  return kind === 'response_timeout' || kind === 'idle_timeout' ? GRPC_DEADLINE_EXCEEDED : GRPC_UNAVAILABLE;
}

/** gRPC's percent-encoding of `grpc-message`: bytes outside printable ASCII, and `%` itself. */
export function encodeGrpcMessage(message: string): string {
  let out = '';
  for (const byte of Buffer.from(message, 'utf8')) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/**
 * Ends a call with `status`: a trailers-only response (one HEADERS frame with END_STREAM) when
 * nothing has been sent yet, else trailers after what was relayed. False when the stream is gone.
 */
export function endGrpcCall(res: Http2ServerResponse, status: number, message: string): boolean {
  const stream = res.stream;
  if (stream.destroyed || stream.closed) return false;
  const fields = { 'grpc-status': String(status), 'grpc-message': encodeGrpcMessage(message) };
  if (!res.headersSent) {
    res.statusCode = 200;
    stream.respond({ ':status': 200, 'content-type': 'application/grpc', ...fields }, { endStream: true });
    return true;
  }
  if (res.writableEnded) return false;
  res.addTrailers(fields);
  res.end();
  return true;
}

/**
 * What the RPC metrics get of a call that ended: its method (`/package.Service/Method` →
 * `package.Service/Method`), its status, and whether the client cancelled it: a call without a
 * status whose client left before the upstream was done.
 */
export function rpcOutcome(path: string, grpcStatus: number | undefined, upstreamWasDone: boolean) {
  return { method: path.slice(1), grpcStatus, cancelled: grpcStatus === undefined && !upstreamWasDone };
}
