/**
 * The HTTP/1.1 leg's connection metrics, kept current as things happen:
 * - the connect time of each new connection, timed by the connector from its call to its callback
 *   (DNS, TCP connect, TLS handshake), with the failure kind when it failed;
 * - the open connections by state: open from the connector's success to the socket's 'close', active
 *   while a request holds it (UpstreamCall says when, through the pool: with pipelining 1 a connection
 *   carries one request at a time), idle otherwise.
 * The HTTP/2 leg counts its sessions itself (h2-upstream.ts).
 */
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { UpstreamConnectionMetrics } from '../metrics/recorder.js';
import { classifyUpstreamError } from './upstream-errors.js';

/** For a pool given no metrics (tests that drive a pool alone). */
export const NO_CONNECTION_METRICS: UpstreamConnectionMetrics = Object.freeze({
  upstreamConnectEnded() {},
  upstreamConnections() {},
});

export class Http1Connections {
  private open = 0;
  private active = 0;
  private readonly metrics: UpstreamConnectionMetrics;

  constructor(metrics: UpstreamConnectionMetrics) {
    this.metrics = metrics;
  }

  /** The connector's callback: a connection opened (`err` null) or failed to, `startedAt` (performance.now()) after it started. */
  connectEnded(startedAt: number, err: Error | null, socket: Socket | null): void {
    const seconds = (performance.now() - startedAt) / 1000;
    if (err !== null || socket === null) {
      this.metrics.upstreamConnectEnded('1.1', classifyUpstreamError(err).kind, seconds);
      return;
    }
    this.metrics.upstreamConnectEnded('1.1', '', seconds);
    this.open++;
    socket.once('close', this.onSocketClose);
    this.publish();
  }

  /** A request got its connection. */
  taken(): void {
    this.active++;
    this.publish();
  }

  /** A request that had a connection is over: the connection is idle again (or closing). */
  freed(): void {
    this.active--;
    this.publish();
  }

  private readonly onSocketClose = (): void => {
    this.open--;
    this.publish();
  };

  private publish(): void {
    // A socket may close a moment before the request on it learns so: never more active than open.
    const active = Math.min(this.active, this.open);
    this.metrics.upstreamConnections('1.1', active, this.open - active);
  }
}
