/**
 * Framing rules llhttp leaves to the application (RFC 9112), checked before a
 * request is routed. Each failure names the status to answer with; a request
 * whose framing cannot be trusted also poisons its connection, so nothing
 * pipelined behind it is ever read as a request.
 */
import type { IncomingMessage } from 'node:http';

export interface Refusal {
  readonly status: 400 | 505;
  readonly msg: string;
  /** Close the connection after answering, and drop whatever was pipelined after it. */
  readonly poison: boolean;
}

const VERSION: Refusal = { status: 505, msg: 'HTTP version not supported', poison: true };
const TWO_HOSTS: Refusal = { status: 400, msg: 'more than one Host header', poison: false };
const HTTP10_TE: Refusal = { status: 400, msg: 'Transfer-Encoding in an HTTP/1.0 request', poison: true };

const POISONED = Symbol('metrics-proxy.poisoned');
type Tracked = IncomingMessage['socket'] & { [POISONED]?: true };

function hostHeaders(raw: readonly string[]): number {
  let hosts = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    if (name.length === 4 && name.toLowerCase() === 'host') hosts++;
  }
  return hosts;
}

export function checkRequest(req: IncomingMessage): Refusal | undefined {
  if (req.httpVersionMajor !== 1) return VERSION;
  if (req.httpVersionMinor === 0 && req.headers['transfer-encoding'] !== undefined) return HTTP10_TE;
  if (hostHeaders(req.rawHeaders) > 1) return TWO_HOSTS;
  return undefined;
}

export function poison(req: IncomingMessage): void {
  (req.socket as Tracked)[POISONED] = true;
}

export function isPoisoned(req: IncomingMessage): boolean {
  return (req.socket as Tracked)[POISONED] === true;
}
