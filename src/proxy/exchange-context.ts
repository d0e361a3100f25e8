/** What an exchange is given: what every exchange of an app shares, and its own request. */
import type { Logger } from 'pino';
import type { ClientRequest, ClientResponse } from './client-side.js';
import type { ExchangeSweep } from './exchange-sweep.js';
import type { UpstreamCallContext } from './upstream-call.js';
import type { UpstreamPool, UpstreamRequest } from './upstream-pool.js';

/** What every exchange of an app shares. */
export interface ExchangeContext extends UpstreamCallContext {
  readonly log: Logger;
  readonly sweep: ExchangeSweep;
  /** While true, every response tells the client to close its connection (graceful drain). */
  readonly isDraining: () => boolean;
}

/** One request as the forwarder hands it over. */
export interface ExchangeStart {
  readonly req: ClientRequest;
  readonly res: ClientResponse;
  readonly request: UpstreamRequest;
  /** Arrival, from performance.now(). */
  readonly startedAt: number;
  readonly pool: UpstreamPool;
  /** A gRPC call from an HTTP/2 client: its outcome is its grpc-status, and the proxy fails it the gRPC way. */
  readonly grpc: boolean;
}
