/**
 * The contract between an HTTP/2 upstream call (h2-call.ts) and what runs it: the session that
 * lends it a stream slot (h2-sessions.ts) and the pool that queues it (h2-upstream.ts).
 */
import type { ClientHttp2Stream, OutgoingHttpHeaders } from 'node:http2';
import type { H2Call } from './h2-call.js';

/** Waiting for a stream slot, on a stream, or over: completed, failed or aborted. */
export type CallPhase = 'queued' | 'streaming' | 'done';

/** A stream slot a session reserved for a call: the call gives it back exactly once. */
export interface StreamSlot {
  open(headers: OutgoingHttpHeaders, endStream: boolean): ClientHttp2Stream;
  release(): void;
  /** The session under the stream is gone: a stream that ends now was cut, not finished. */
  readonly gone: boolean;
}

/** What a call needs from the pool that runs it. */
export interface CallHost {
  /** Sends a call: on a session with room now, or when one has. A call may be submitted again, once (see `requeue`). */
  submit(call: H2Call): void;
  /** A handler's exception nobody else can take. */
  readonly onStrayError: (err: Error) => void;
}
