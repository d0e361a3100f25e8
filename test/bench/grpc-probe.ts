/**
 * The gRPC scenario's check before a cell: one unary call through the target with node:http2,
 * which must come back as the upstream (h2-upstream.mjs) answers it: :status 200, a gRPC
 * content type, one message of the expected size, and `grpc-status: 0` in the trailers. h2load
 * only sees HTTP statuses, so without this a target that turned every call into a gRPC error
 * (HTTP 200, trailers-only) would pass for a fast one. h2load.ts also checks the DATA bytes.
 */
import { type IncomingHttpHeaders, connect } from 'node:http2';

const TIMEOUT_MS = 5_000;

interface Reply {
  readonly headers: IncomingHttpHeaders;
  readonly trailers: IncomingHttpHeaders | undefined;
  readonly body: Buffer;
}

function call(baseUrl: string, path: string, message: Buffer): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const session = connect(baseUrl);
    const timer = setTimeout(() => {
      session.destroy();
      reject(new Error(`no answer within ${TIMEOUT_MS} ms`));
    }, TIMEOUT_MS);
    const fail = (err: Error): void => {
      clearTimeout(timer);
      session.destroy();
      reject(err);
    };
    session.on('error', fail);
    const stream = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers' });
    let headers: IncomingHttpHeaders = {};
    let trailers: IncomingHttpHeaders | undefined;
    const chunks: Buffer[] = [];
    stream.on('response', (h) => {
      headers = h;
    });
    stream.on('trailers', (t: IncomingHttpHeaders) => {
      trailers = t;
    });
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.on('error', fail);
    stream.on('end', () => {
      clearTimeout(timer);
      session.close();
      resolve({ headers, trailers, body: Buffer.concat(chunks) });
    });
    stream.end(message);
  });
}

/** Throws, saying what is wrong, unless the call succeeded with a reply of `replyBytes` (prefix included). */
export async function grpcProbe(baseUrl: string, path: string, message: Buffer, replyBytes: number): Promise<void> {
  let reply: Reply;
  try {
    reply = await call(baseUrl, path, message);
  } catch (err) {
    throw new Error(`gRPC probe: ${(err as Error).message}`, { cause: err });
  }
  const { headers, trailers, body } = reply;
  const status = Number(headers[':status']);
  const type = String(headers['content-type'] ?? '');
  const grpcStatus = trailers?.['grpc-status'] ?? headers['grpc-status'];
  const wrong =
    status !== 200
      ? `:status ${status}`
      : !type.startsWith('application/grpc')
        ? `content-type ${JSON.stringify(type)}`
        : trailers === undefined
          ? `no trailers (grpc-status ${String(grpcStatus)} in the headers, message ${JSON.stringify(String(headers['grpc-message'] ?? ''))})`
          : grpcStatus !== '0'
            ? `grpc-status ${String(grpcStatus)} (${String(trailers['grpc-message'] ?? '')})`
            : body.length !== replyBytes
              ? `a reply of ${body.length} bytes, expected ${replyBytes}`
              : undefined;
  if (wrong !== undefined) throw new Error(`gRPC probe: the call came back with ${wrong}`);
}
