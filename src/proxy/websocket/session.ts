/**
 * One WebSocket session, from the client's upgrade request to the moment both
 * sockets are closed. It is the one object that holds the session's state and
 * the one place that records it:
 *
 * - the handshake counts once as a request (apiCount, apiDuration), with the
 *   status the client got: 101, the upstream's refusal, 502/504 when the
 *   upstream could not be reached, 499 when the client gave up, 503 when the
 *   proxy shut down first;
 * - an open session ends exactly once, however it ends (a close frame, a FIN,
 *   an RST, an error, the idle timeout, shutdown): both sockets are closed,
 *   the live count goes down and the duration is recorded with the close code
 *   (1006 when no close frame crossed).
 *
 * How long an ending session may linger is linger.ts's business.
 */
import type { ClientRequest, IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { MetricsRecorder } from '../../metrics/recorder.js';
import { errorBody, sendJsonOnSocket } from '../../respond.js';
import { CLIENT_CLOSED_REQUEST } from '../exchange-rules.js';
import { type UpstreamFailure, classifyUpstreamError } from '../upstream-errors.js';
import { GOING_AWAY, closeFrame, expectedAccept } from './frames.js';
import { createFrameInspector } from './inspector.js';
import { Linger } from './linger.js';
import { Relay } from './relay.js';
import { SessionRecord, type UpgradeRequest } from './session-record.js';

export type { UpgradeRequest } from './session-record.js';

export interface SessionDeps {
  readonly metrics: MetricsRecorder;
  readonly log: Logger;
  /** No bytes either way for this long closes an open session; 0 = off. */
  readonly idleTimeoutMs: number;
  /** The upstream's 101 was accepted: call `open()` once http-proxy has set the session's sockets up. */
  readonly awaitOpen: (upstream: Socket, session: WebSocketSession) => void;
  /** Both sockets are closed and everything is recorded. */
  readonly ended: (session: WebSocketSession) => void;
}

type Phase = 'handshake' | 'open' | 'ending' | 'ended';

/** Client bytes buffered before the upstream's 101 (clients should send none); beyond this, reading pauses. */
const MAX_EARLY_BYTES = 64 * 1024;
const PROTOCOL_FAILURE = classifyUpstreamError({ code: 'HPE_INVALID_STATUS' });

export class WebSocketSession {
  private phase: Phase = 'handshake';
  private proxyReq: ClientRequest | undefined;
  private upstream: Socket | undefined;
  /** The upstream closed its side first: a failed write to it afterwards is part of a normal close. */
  private upstreamEnded = false;
  /** Client bytes read during the handshake, relayed first once the session opens. */
  private readonly early: Buffer[] = [];
  private earlyBytes = 0;
  /** Close with this code as soon as the handshake completes (a drain began during it). */
  private closeOnOpen: number | undefined;
  private toUpstream: Relay | undefined;
  private toClient: Relay | undefined;
  private linger: Linger | undefined;
  private socketsClosed = 0;

  private readonly record: SessionRecord;

  constructor(
    readonly client: Socket,
    private readonly request: UpgradeRequest,
    private readonly deps: SessionDeps,
  ) {
    this.record = new SessionRecord(request, deps.metrics);
    client.on('data', this.onEarlyData);
    client.on('end', this.onClientEndDuringHandshake);
    client.on('close', this.onClientClose);
  }

  get upstreamSocket(): Socket | undefined {
    return this.upstream;
  }

  get isOpen(): boolean {
    return this.phase === 'open' || this.phase === 'ending';
  }

  /** http-proxy created the upstream upgrade request. */
  upstreamRequested(proxyReq: ClientRequest): void {
    this.proxyReq = proxyReq;
    if (this.phase !== 'handshake') {
      proxyReq.destroy();
      return;
    }
    // Registered before http-proxy's own listeners: these run first.
    proxyReq.once('upgrade', this.onUpgrade);
    proxyReq.once('response', this.onRefused);
  }

  private readonly onUpgrade = (proxyRes: IncomingMessage, upstream: Socket): void => {
    this.upstream = upstream;
    const accept = proxyRes.headers['sec-websocket-accept'];
    if (this.request.key !== undefined && accept !== expectedAccept(this.request.key)) {
      // A 101 that does not prove the upstream speaks WebSocket: never let a blind tunnel open.
      this.deps.log.warn('upstream answered 101 with a wrong Sec-WebSocket-Accept');
      upstream.destroy();
      this.failHandshake(PROTOCOL_FAILURE);
      return;
    }
    this.record.handshake(101);
    this.deps.awaitOpen(upstream, this);
  };

  /** Not a 101: http-proxy relays the upstream's answer as is; for us the handshake failed. */
  private readonly onRefused = (proxyRes: IncomingMessage): void => {
    this.record.error();
    const status = proxyRes.statusCode ?? 502;
    this.record.handshake(status, status >= 500 ? String(status) : '');
    this.deps.log.warn({ status, path: this.request.path }, 'upstream refused the websocket upgrade');
    this.phase = 'ended';
    this.deps.ended(this);
  };

  /**
   * http-proxy has written the 101 and piped the two sockets. The pipes are replaced by relays that
   * know where frames end; nothing has flowed yet (the pipes start on the next tick), so the bytes
   * that came with the 101 and those the client sent early are the first ones relayed.
   */
  open(): void {
    const { client, upstream } = this;
    if (upstream === undefined || this.phase !== 'handshake' || client.destroyed) {
      upstream?.destroy();
      client.destroy();
      return;
    }
    this.phase = 'open';
    upstream.unpipe(client);
    client.unpipe(upstream);
    client.off('data', this.onEarlyData);
    client.off('end', this.onClientEndDuringHandshake);
    client.on('end', this.beginEnding);
    upstream.on('end', this.onUpstreamEnd);
    upstream.on('close', this.onUpstreamClose);
    this.startRelays(client, upstream);
    this.watchIdle(client);
    if (this.closeOnOpen !== undefined) this.close(this.closeOnOpen);
  }

  private startRelays(client: Socket, upstream: Socket): void {
    const { fromClient, fromUpstream } = this.record.opened();
    this.toUpstream = new Relay(client, upstream, createFrameInspector(true, fromClient));
    this.toClient = new Relay(upstream, client, createFrameInspector(false, fromUpstream));
    this.toClient.start();
    this.toUpstream.start(this.early);
    this.early.length = 0;
  }

  private watchIdle(client: Socket): void {
    const { idleTimeoutMs, log } = this.deps;
    if (idleTimeoutMs <= 0) return;
    // Bytes either way cross the client socket (read from it, or written to it), so its timer covers both.
    client.setTimeout(idleTimeoutMs);
    client.once('timeout', () => {
      log.info({ idleTimeoutMs }, 'closing idle websocket session');
      this.close(GOING_AWAY);
    });
  }

  /**
   * Ends the session with `code` (1001 on shutdown and idle): each direction stops at its next frame
   * boundary and the peer gets a close frame. A session still in its handshake closes once it opens.
   */
  close(code: number): void {
    if (this.phase === 'handshake') {
      this.closeOnOpen = code;
      return;
    }
    if (this.phase !== 'open') return;
    this.record.closeCode ??= code;
    this.toClient?.stopAtFrameBoundary(closeFrame(code, false));
    this.toUpstream?.stopAtFrameBoundary(closeFrame(code, true));
    this.beginEnding();
  }

  /** Out of time (the shutdown deadline): a handshake still waiting is answered 503, an open session is cut. */
  abort(): void {
    if (this.phase === 'handshake') {
      this.proxyReq?.destroy();
      this.record.handshake(503);
      this.phase = 'ended';
      sendJsonOnSocket(this.client, 503, errorBody('proxy is shutting down'));
      this.deps.ended(this);
      return;
    }
    this.client.destroy();
    this.upstream?.destroy();
  }

  /** The upstream request or socket failed (http-proxy's error callback). */
  upstreamFailed(err: Error): void {
    if (this.phase === 'handshake') {
      this.failHandshake(classifyUpstreamError(err), err);
      return;
    }
    if (this.phase === 'ended') return;
    if (this.upstreamEnded) {
      // The upstream closed first and the client's last frames found the door shut: a normal end.
      this.deps.log.debug({ err, path: this.request.path }, 'websocket closed by upstream while the client was sending');
      return;
    }
    this.record.error();
    this.deps.log.warn({ err, path: this.request.path }, 'websocket upstream connection failed');
  }

  private failHandshake(failure: UpstreamFailure, err?: Error): void {
    this.record.error();
    this.deps.metrics.recordUpstreamFailure(failure.kind);
    this.record.handshake(failure.status, failure.kind);
    if (err !== undefined) this.deps.log.error({ err, kind: failure.kind, path: this.request.path }, 'websocket upgrade to upstream failed');
    this.phase = 'ended';
    sendJsonOnSocket(this.client, failure.status, errorBody(failure.msg));
    this.deps.ended(this);
  }

  private readonly onEarlyData = (chunk: Buffer): void => {
    this.early.push(chunk);
    this.earlyBytes += chunk.length;
    if (this.earlyBytes >= MAX_EARLY_BYTES) this.client.pause();
  };

  /** A client that half-closes before the 101 has given up waiting. */
  private readonly onClientEndDuringHandshake = (): void => {
    this.client.destroy();
  };

  private readonly onClientClose = (): void => {
    if (this.phase === 'ended') return;
    if (this.phase === 'handshake') {
      // The client gave up during the handshake: stop the upstream request, count the attempt, no error.
      this.phase = 'ended';
      this.proxyReq?.destroy();
      this.record.handshake(CLIENT_CLOSED_REQUEST);
      this.deps.ended(this);
      return;
    }
    this.socketClosed(this.upstream);
  };

  private readonly onUpstreamEnd = (): void => {
    this.upstreamEnded = true;
    this.beginEnding();
  };

  private readonly onUpstreamClose = (): void => {
    this.socketClosed(this.client);
  };

  /** One socket closed: the other is told (FIN after what is queued) and the session ends when both are closed. */
  private socketClosed(other: Socket | undefined): void {
    this.socketsClosed += 1;
    if (this.socketsClosed === 2) {
      this.finish();
      return;
    }
    if (other !== undefined && other.writable) other.end();
    this.beginEnding();
  }

  /** From here the session lingers (linger.ts) until both sockets are closed. */
  private readonly beginEnding = (): void => {
    if (this.phase !== 'open') return;
    this.phase = 'ending';
    this.linger = new Linger(this.upstream === undefined ? [this.client] : [this.client, this.upstream]);
    this.linger.start();
  };

  private finish(): void {
    if (this.phase === 'ended') return;
    this.phase = 'ended';
    this.linger?.stop();
    this.record.closed();
    this.deps.ended(this);
  }
}
