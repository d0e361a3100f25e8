/**
 * gRPC peers: `@grpc/grpc-js` as both the client and the upstream server (insecure, h2c), on the
 * service of test/fixtures/echo.proto, plus the bytes of a gRPC call for tests that speak node:http2
 * themselves. Everything started here is closed in onTestFinished.
 */
import { fileURLToPath } from 'node:url';
import {
  type CallOptions,
  type Client,
  type ClientDuplexStream,
  type ClientReadableStream,
  type ClientUnaryCall,
  type ClientWritableStream,
  type GrpcObject,
  type ServerDuplexStream,
  type ServerReadableStream,
  type ServerUnaryCall,
  type ServerWritableStream,
  type ServiceClientConstructor,
  type ServiceError,
  type StatusObject,
  type sendUnaryData,
  Metadata,
  Server,
  ServerCredentials,
  credentials,
  loadPackageDefinition,
} from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { onTestFinished } from 'vitest';

export const PROTO_PATH = fileURLToPath(new URL('./fixtures/echo.proto', import.meta.url));

const definition = loadSync(PROTO_PATH, { longs: Number, defaults: true, keepCase: true });
const echoPackage = loadPackageDefinition(definition).echo as GrpcObject;
const EchoService = echoPackage.Echo as ServiceClientConstructor;

/** The paths of the four methods, as they go on the wire. */
export const PATHS = {
  unary: '/echo.Echo/Unary',
  serverStream: '/echo.Echo/ServerStream',
  clientStream: '/echo.Echo/ClientStream',
  bidi: '/echo.Echo/Bidi',
} as const;

export interface EchoRequest {
  text: string;
  payload: Buffer;
  seq: number;
}

export interface StreamRequest {
  count: number;
  size: number;
}

export interface EchoReply {
  text: string;
  payload: Buffer;
  seq: number;
  count: number;
  bytes: number;
}

type Callback = (error: ServiceError | null, reply?: EchoReply) => void;

export interface EchoClient extends Client {
  Unary(request: Partial<EchoRequest>, metadata: Metadata, options: CallOptions, callback: Callback): ClientUnaryCall;
  ServerStream(request: Partial<StreamRequest>, metadata: Metadata, options: CallOptions): ClientReadableStream<EchoReply>;
  ClientStream(metadata: Metadata, options: CallOptions, callback: Callback): ClientWritableStream<Partial<EchoRequest>>;
  Bidi(metadata: Metadata, options: CallOptions): ClientDuplexStream<Partial<EchoRequest>, EchoReply>;
}

export interface EchoHandlers {
  Unary(call: ServerUnaryCall<EchoRequest, EchoReply>, callback: sendUnaryData<Partial<EchoReply>>): void;
  ServerStream(call: ServerWritableStream<StreamRequest, Partial<EchoReply>>): void;
  ClientStream(call: ServerReadableStream<EchoRequest, EchoReply>, callback: sendUnaryData<Partial<EchoReply>>): void;
  Bidi(call: ServerDuplexStream<EchoRequest, Partial<EchoReply>>): void;
}

/** Echo behaviour for every method: what a test does not override. */
export const ECHO: EchoHandlers = {
  Unary(call, callback) {
    callback(null, { text: call.request.text, payload: call.request.payload, seq: call.request.seq });
  },
  ServerStream(call) {
    void writeReplies(call, call.request.count, call.request.size);
  },
  ClientStream(call, callback) {
    let count = 0;
    let bytes = 0;
    call.on('data', (m: EchoRequest) => {
      if (m.seq !== count) call.destroy(new Error(`message ${m.seq} arrived as number ${count}`));
      count++;
      bytes += m.payload.length;
    });
    call.on('end', () => callback(null, { count, bytes }));
  },
  Bidi(call) {
    call.on('data', (m: EchoRequest) => call.write({ text: m.text, payload: m.payload, seq: m.seq }));
    call.on('end', () => call.end());
  },
};

/** Writes `count` replies of `size` bytes (seq 0…), honouring backpressure; returns how many went out. */
export async function writeReplies(
  call: ServerWritableStream<StreamRequest, Partial<EchoReply>>,
  count: number,
  size: number,
  onWrite: (written: number) => void = () => {},
): Promise<number> {
  let written = 0;
  for (let seq = 0; seq < count; seq++) {
    if (call.cancelled || call.destroyed) return written;
    const more = call.write({ seq, payload: patternedPayload(seq, size) });
    onWrite(++written);
    if (!more) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          call.off('drain', done);
          call.off('cancelled', done);
          call.off('close', done);
          resolve();
        };
        call.once('drain', done);
        call.once('cancelled', done);
        call.once('close', done);
      });
    }
  }
  call.end();
  return written;
}

/** `size` bytes that differ per `seq`, so a reordered or mixed-up message shows. */
export function patternedPayload(seq: number, size: number): Buffer {
  const payload = Buffer.alloc(size, seq % 251);
  if (size >= 4) payload.writeUInt32BE(seq);
  return payload;
}

export interface GrpcUpstream {
  readonly server: Server;
  readonly port: number;
  /** `http://127.0.0.1:port`: the proxy's --upstream. */
  readonly url: string;
  /** Stops at once, cutting every call (a crash, as far as the peers can tell). */
  readonly kill: () => void;
}

/** A grpc-js server on 127.0.0.1:0 with `handlers` over the echo defaults; killed when the test ends. */
export async function startGrpcUpstream(handlers: Partial<EchoHandlers> = {}): Promise<GrpcUpstream> {
  const server = new Server();
  server.addService(EchoService.service, { ...ECHO, ...handlers });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, bound) => (err === null ? resolve(bound) : reject(err))),
  );
  const kill = (): void => server.forceShutdown();
  onTestFinished(kill);
  return { server, port, url: `http://127.0.0.1:${port}`, kill };
}

/** A grpc-js client of the echo service at `target` (`127.0.0.1:port`, the proxy); closed when the test ends. */
export function echoClient(target: string, options: Record<string, string | number> = {}): EchoClient {
  const client = new EchoService(target, credentials.createInsecure(), options) as unknown as EchoClient;
  onTestFinished(() => client.close());
  return client;
}

/** The address of a proxy or server URL as grpc-js wants it. */
export function targetOf(url: string): string {
  return new URL(url).host;
}

export interface UnaryOutcome {
  readonly reply: EchoReply | undefined;
  readonly error: ServiceError | undefined;
  readonly status: StatusObject;
  /** The response headers' metadata (undefined when the answer was trailers-only). */
  readonly headers: Metadata | undefined;
}

/** A unary call, resolved with its whole outcome (error included) once its status arrived. */
export function callUnary(
  client: EchoClient,
  request: Partial<EchoRequest>,
  metadata: Metadata = new Metadata(),
  options: CallOptions = {},
): Promise<UnaryOutcome> {
  return new Promise((resolve) => {
    let reply: EchoReply | undefined;
    let error: ServiceError | undefined;
    let headers: Metadata | undefined;
    let status: StatusObject | undefined;
    let answered = false;
    const finish = (): void => {
      if (answered && status !== undefined) resolve({ reply, error, status, headers });
    };
    const call = client.Unary(request, metadata, options, (err, value) => {
      error = err ?? undefined;
      reply = value;
      answered = true;
      finish();
    });
    call.on('metadata', (m: Metadata) => {
      headers = m;
    });
    call.on('status', (s: StatusObject) => {
      status = s;
      finish();
    });
  });
}

export interface StreamOutcome {
  readonly messages: EchoReply[];
  readonly status: StatusObject;
}

/** Reads a server stream to its status (errors included). */
export function collectStream(call: ClientReadableStream<EchoReply> | ClientDuplexStream<Partial<EchoRequest>, EchoReply>): Promise<StreamOutcome> {
  return new Promise((resolve) => {
    const messages: EchoReply[] = [];
    call.on('data', (m: EchoReply) => messages.push(m));
    call.on('error', () => {});
    call.on('status', (status: StatusObject) => resolve({ messages, status }));
  });
}

/** A gRPC message as it goes in a DATA frame: uncompressed flag, 32-bit length, the protobuf bytes. */
export function grpcFrame(message: Buffer = Buffer.alloc(0)): Buffer {
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(message.length, 1);
  return Buffer.concat([prefix, message]);
}

/** The request headers of a gRPC call by hand (node:http2), at `path`. */
export function grpcHeaders(path: string = PATHS.unary, extra: Record<string, string> = {}): Record<string, string> {
  return {
    ':method': 'POST',
    ':path': path,
    'content-type': 'application/grpc',
    te: 'trailers',
    ...extra,
  };
}
