/**
 * What a WebSocket session reports, each thing once: the handshake as a
 * request (with the status the client got), at most one `ws` error, and the
 * open session's life (live count, messages, duration by close code).
 */
import { performance } from 'node:perf_hooks';
import type { MetricsRecorder } from '../../metrics/recorder.js';
import { type FrameEvents, closeCodeLabel } from './inspector.js';

/** What the session needs to know of the client's upgrade request. */
export interface UpgradeRequest {
  readonly method: string | undefined;
  /** The forwarded path without query, for the route label. */
  readonly path: string;
  readonly key: string | undefined;
  readonly traceparent: string | undefined;
  /** performance.now() when the request arrived. */
  readonly startedAt: number;
}

/** Frame events of both directions of an open session. */
export interface SessionFrameEvents {
  readonly fromClient: FrameEvents;
  readonly fromUpstream: FrameEvents;
}

export class SessionRecord {
  private handshakeRecorded = false;
  private errorCounted = false;
  private openedAt = 0;
  private route = '';
  /** The first close frame seen either way, or the one the proxy sent. */
  closeCode: number | undefined;

  constructor(
    private readonly request: UpgradeRequest,
    private readonly metrics: MetricsRecorder,
  ) {}

  /** The handshake is the request: recorded once, with the status the client got. */
  handshake(status: number, errorType = ''): void {
    if (this.handshakeRecorded) return;
    this.handshakeRecorded = true;
    const { request } = this;
    this.metrics.recordRequest({
      method: request.method,
      path: request.path,
      status,
      errorType,
      durationMs: performance.now() - request.startedAt,
      requestBytes: 0,
      responseBytes: 0,
      traceparent: request.traceparent,
      protocolVersion: '1.1',
    });
  }

  error(): void {
    if (this.errorCounted) return;
    this.errorCounted = true;
    this.metrics.recordError('ws');
  }

  /** The session opened: counts it live and returns the events its relays report frames to. */
  opened(): SessionFrameEvents {
    const { metrics } = this;
    this.openedAt = performance.now();
    const onClose = (code: number): void => {
      this.closeCode ??= code;
    };
    if (!metrics.inspectsSessions) {
      const events = { onMessage: () => {}, onClose };
      return { fromClient: events, fromUpstream: events };
    }
    const route = metrics.routeOf(this.request.path);
    this.route = route;
    metrics.sessionOpened(route);
    return {
      fromClient: { onMessage: (bytes) => metrics.sessionMessage(route, 'upstream', bytes), onClose },
      fromUpstream: { onMessage: (bytes) => metrics.sessionMessage(route, 'downstream', bytes), onClose },
    };
  }

  /** Both sockets are closed: out of the live count, duration recorded with the close code. */
  closed(): void {
    if (!this.metrics.inspectsSessions) return;
    const seconds = (performance.now() - this.openedAt) / 1000;
    this.metrics.sessionClosed(this.route, closeCodeLabel(this.closeCode), seconds);
  }
}
