/**
 * Everything that knows undici: the pool of upstream connections, the
 * connector under it, and the handler shape undici 7's HTTP/1 client calls.
 * A major upgrade (undici 8 drops the legacy callbacks for onRequestStart,
 * onResponseStart, …) should touch this file only.
 *
 * - One `Pool` per upstream origin, at most `maxConnections` connections,
 *   pipelining 1.
 * - undici's own header and body timers are off: the exchange sweep owns the
 *   response and idle timeouts, so it can blame the side that went quiet.
 * - The connector pins TLS SNI and certificate checks to the upstream's own
 *   name (undici would take them from each request's Host header, and
 *   reconnect whenever that changes), and arms a precise connect timer per new
 *   connection (undici's has a resolution of about a second).
 * - `opening` is true while undici hands a just-opened connection its first
 *   request, which it does synchronously inside the connector's callback: the
 *   handler's `onConnect` reads it to learn whether its connection is fresh.
 * - The connector also times each new connection and counts it open until its
 *   socket closes (upstream-connections.ts).
 * - A request goes to undici only when one of the `maxConnections` is free for
 *   it; the others wait in a queue of ours (upstream-queue.ts), which a request
 *   given up leaves at once. One undici already has, given up before its
 *   connection came, is declined when it comes: `onConnect` throws, and undici
 *   drops the request unwritten and keeps the connection (calling its `abort`
 *   there would destroy the connection).
 * - Each connection's parser skips a `100 Continue`: undici never asks for one
 *   and would fail the request and the connection on it.
 */
import type { EventEmitter } from 'node:events';
import { connectHost, serverNameOf } from './url-parts.js';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
// The dispatcher classes straight from their files: undici's index loads fetch, WebSocket, caches and
// more besides (+40 ms and +9 MB at start-up, measured). The version is pinned; see undici-internals.d.ts.
import Client from 'undici/lib/dispatcher/client.js';
import Pool from 'undici/lib/dispatcher/pool.js';
import buildConnector from 'undici/lib/core/connect.js';
import undiciUtil from 'undici/lib/core/util.js';
import { UpstreamTimeoutError } from '../errors.js';
import type { UpstreamConnectionMetrics, UpstreamProtocol } from '../metrics/recorder.js';
import { Http1Connections, NO_CONNECTION_METRICS } from './upstream-connections.js';
import { skipStrayContinue } from './undici-continue.js';
import { ConnectionSlots, type QueueLinks, type SlotOwner } from './upstream-queue.js';

/** undici's own symbols, for the parser and the client state the stray-100 rule reads (untyped: CommonJS, no declarations). */

export type Abort = (err?: Error) => void;

/** One request as undici's `dispatch` takes it; built once per exchange, reused for a retry. */
export interface UpstreamRequest {
  readonly method: string;
  readonly path: string;
  readonly headers: Array<string | string[]>;
  readonly body: Readable | null;
  /** Constant per pool: undici would otherwise derive SNI from the Host header. */
  readonly servername: string;
}

export interface UpstreamPoolOptions {
  readonly upstream: URL;
  readonly maxConnections: number;
  /** Idle connections close after this, unless the upstream sends a `Keep-Alive: timeout=` hint: undici then uses the hint (less a margin), shorter or longer, up to 600 s. */
  readonly keepAliveTimeoutMs: number;
  /** TCP connect and TLS handshake of a new connection; 0 = off. */
  readonly connectTimeoutMs: number;
  /** An error no request could take (undici emits it on a connection's client): logged, never thrown. */
  readonly onStrayError: (err: Error) => void;
  /** Where the connect times and the open connections go; none by default. */
  readonly metrics?: UpstreamConnectionMetrics;
}

export interface UpstreamPool {
  /** Sends through the pool; when every connection is busy, the request waits for one. */
  dispatch(request: UpstreamRequest, handler: UpstreamHandler): void;
  /**
   * The handler gave its request up while it waited (its client left, or a timeout answered): out of
   * the queue if it is still there (true: it is never sent and its handler hears nothing more).
   * Already handed on (false), it declines the connection it is given (`onConnect`), or fails.
   */
  withdraw(handler: UpstreamHandler): boolean;
  /** Sends on a connection opened for this request alone, closed after it (a retry). */
  dispatchFresh(request: UpstreamRequest, handler: UpstreamHandler): void;
  /** True inside `onConnect` when the connection was opened for this request. */
  readonly opening: boolean;
  /** The request's `servername` for this upstream. */
  readonly servername: string;
  /** The leg's HTTP version, the network_protocol_version of its metrics. */
  readonly protocolVersion: UpstreamProtocol;
  /**
   * A request got its connection, from `onConnect` until it is over (`connectionFreed`): the active
   * state of the open-connections gauge. The HTTP/2 leg counts its streams itself and ignores these.
   */
  connectionTaken(): void;
  connectionFreed(): void;
  close(): Promise<void>;
}

/**
 * An exchange as undici sees it: the legacy callbacks of undici 7's HTTP/1 client (no
 * per-request adapter, headers as raw Buffer arrays), renamed onto methods of ours.
 */
export abstract class UpstreamHandler implements QueueLinks {
  waitingRequest: UpstreamRequest | undefined = undefined;
  waitingPrev: UpstreamHandler | undefined = undefined;
  waitingNext: UpstreamHandler | undefined = undefined;
  slotOwner: SlotOwner | undefined = undefined;

  /** The request got a connection and is about to be written; `abort` cancels it from now on. */
  protected abstract upstreamAssigned(abort: Abort): void;
  protected abstract upstreamBodySent(bytes: number): void;
  /** The whole request, body included, has been written. */
  protected abstract upstreamRequestSent(): void;
  /** The first byte of a response arrived. */
  protected abstract upstreamResponseStarted(): void;
  /** Return false to stop reading until `resume` is called. */
  protected abstract upstreamHeaders(status: number, raw: Buffer[], resume: () => void, statusText: string): boolean;
  protected abstract upstreamData(chunk: Buffer): boolean;
  protected abstract upstreamComplete(rawTrailers: Buffer[] | null): void;
  protected abstract upstreamFailed(err: Error): void;

  /**
   * True when the request was given up while it waited for its connection: it is declined when the
   * connection comes, dropped unwritten, and the connection is left as it is.
   */
  protected declinesConnection(): boolean {
    return false;
  }

  onConnect(abort: Abort): void {
    // undici catches what onConnect throws and drops the request unwritten (writeH1); its `abort` would destroy the connection.
    if (this.declinesConnection()) throw DECLINED;
    this.upstreamAssigned(abort);
  }

  onBodySent(chunk: Buffer): void {
    this.upstreamBodySent(chunk.length);
  }

  onRequestSent(): void {
    this.upstreamRequestSent();
  }

  onResponseStarted(): void {
    this.upstreamResponseStarted();
  }

  onHeaders(status: number, raw: Buffer[], resume: () => void, statusText: string): boolean {
    return this.upstreamHeaders(status, raw, resume, statusText);
  }

  onData(chunk: Buffer): boolean {
    return this.upstreamData(chunk);
  }

  onComplete(rawTrailers: Buffer[] | null): void {
    try {
      this.upstreamComplete(rawTrailers);
    } finally {
      this.freeSlot();
    }
  }

  onError(err: Error): void {
    try {
      this.upstreamFailed(err);
    } finally {
      this.freeSlot();
    }
  }

  /** undici is done with the request: its connection may take the next one waiting. */
  private freeSlot(): void {
    const owner = this.slotOwner;
    if (owner === undefined) return;
    this.slotOwner = undefined;
    owner.release();
  }
}

/** What a declined request fails with; its handler has given it up and ignores it. */
const DECLINED = new Error('the request was given up before it got a connection');

/** The lower-case name of a raw header (interned for well-known names: no allocation). */
export function headerName(raw: Buffer): string {
  return undiciUtil.headerNameToString(raw);
}

/** Within a keep-alive hint: `timeout=5` keeps a connection idle at most 4 s, so it is never reused as the upstream closes it. */
const KEEP_ALIVE_HINT_MARGIN_MS = 1_000;

function expireConnect(socket: Socket, ms: number): void {
  socket.destroy(new UpstreamTimeoutError('MP_ERR_CONNECT_TIMEOUT', ms));
}

type Connector = buildConnector.connector;

/** undici's connector, with the rules above: pinned SNI, a precise connect timer, connection metrics, `opening`, the stray 100. */
function createConnector(sni: string | undefined, connectTimeoutMs: number, connections: Http1Connections, state: { opening: boolean }): Connector {
  const base = buildConnector({ timeout: 0, ...(sni === undefined ? {} : { servername: sni }) });
  return (connectOptions, callback) => {
    let timer: NodeJS.Timeout | undefined;
    const startedAt = performance.now();
    // buildConnector returns the socket it opens (its .d.ts says void): the timer needs it.
    const socket = (base as unknown as (o: buildConnector.Options, cb: buildConnector.Callback) => Socket)(
      { ...connectOptions, servername: sni },
      (...args) => {
        clearTimeout(timer);
        connections.connectEnded(startedAt, args[0], args[1]);
        state.opening = args[0] === null;
        try {
          callback(...args);
        } finally {
          state.opening = false;
        }
        // undici made the connection's parser inside the callback; no byte of it has been read yet.
        if (args[0] === null) skipStrayContinue(args[1]);
      },
    );
    if (connectTimeoutMs > 0) timer = setTimeout(expireConnect, connectTimeoutMs, socket, connectTimeoutMs);
  };
}

export function createUpstreamPool(options: UpstreamPoolOptions): UpstreamPool {
  const { upstream } = options;
  const hostname = connectHost(upstream);
  // No SNI for an IP address (RFC 6066); the certificate is then checked against the IP.
  const sni = serverNameOf(hostname);
  const connections = new Http1Connections(options.metrics ?? NO_CONNECTION_METRICS);
  const state = { opening: false };
  const clientOptions = {
    connect: createConnector(sni, options.connectTimeoutMs, connections, state),
    pipelining: 1,
    keepAliveTimeout: options.keepAliveTimeoutMs,
    keepAliveTimeoutThreshold: KEEP_ALIVE_HINT_MARGIN_MS,
    headersTimeout: 0,
    bodyTimeout: 0,
  };
  // undici re-emits a handler's exception on the client as 'error', which would kill the process unheard.
  const newClient = (origin: string | URL): Client => {
    const client = new Client(origin, clientOptions);
    (client as unknown as EventEmitter).on('error', options.onStrayError);
    return client;
  };
  const pool = new Pool(upstream.origin, { ...clientOptions, connections: options.maxConnections, factory: newClient });
  // Any upstream name works as `servername`, as long as it is the same for every request.
  const servername = sni ?? hostname;

  const slots = new ConnectionSlots(options.maxConnections, (request, handler) => {
    pool.dispatch(request as unknown as Dispatcher.DispatchOptions, handler as unknown as Dispatcher.DispatchHandler);
  });

  return {
    dispatch: (request, handler) => slots.dispatch(request, handler),
    withdraw: (handler) => slots.withdraw(handler),
    dispatchFresh(request, handler) {
      const client = newClient(upstream.origin);
      client.dispatch(request as unknown as Dispatcher.DispatchOptions, handler as unknown as Dispatcher.DispatchHandler);
      // Closes once its one request is done.
      void client.close().catch(() => {});
    },
    get opening() {
      return state.opening;
    },
    servername,
    protocolVersion: '1.1',
    connectionTaken: () => connections.taken(),
    connectionFreed: () => connections.freed(),
    close() {
      const closed = pool.destroy();
      slots.close();
      return closed;
    },
  };
}
