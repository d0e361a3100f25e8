/**
 * The stray-100 rule, on undici 7's HTTP/1 parser (see undici-version.ts before a bump): an upstream's
 * unsolicited `100 Continue` is skipped like any other interim response instead of failing the
 * request and destroying its connection.
 */
import type { Socket } from 'node:net';
// An import, not a runtime require: the bin's bundle must share the one copy of undici's symbols.
import undiciSymbols from 'undici/lib/core/symbols.js';

const { kParser, kRunning } = undiciSymbols;

/** What the stray-100 rule touches of undici's HTTP/1 parser (client-h1.js, one per connection). */
interface UndiciParser {
  statusCode: number;
  headers: Buffer[];
  headersSize: number;
  readonly client: Readonly<Record<symbol, unknown>>;
  readonly socket: Socket;
  onHeadersComplete: (this: UndiciParser, statusCode: number, upgrade: boolean, shouldKeepAlive: boolean) => number;
}

let undiciHeadersComplete: UndiciParser['onHeadersComplete'] | undefined;

/**
 * A `100 Continue` answers `Expect: 100-continue`, which undici never sends (it refuses the header;
 * Node's server answers the client's Expect itself). undici fails the request and destroys the
 * connection on one; an upstream that sends one anyway has it skipped like any other interim
 * response, and its final response is read as usual. On a connection with no request, it stays
 * undici's error.
 */
function headersCompleteSkippingContinue(this: UndiciParser, statusCode: number, upgrade: boolean, shouldKeepAlive: boolean): number {
  if (statusCode === 100 && !upgrade && !this.socket.destroyed && (this.client[kRunning] as number) > 0) {
    // The state undici keeps for an interim response: its onMessageComplete resets it for the next head.
    this.statusCode = statusCode;
    this.headers = [];
    this.headersSize = 0;
    return 1; // no body: the message ends with its head
  }
  return (undiciHeadersComplete as UndiciParser['onHeadersComplete']).call(this, statusCode, upgrade, shouldKeepAlive);
}

/** Installs the rule on the parser undici has just given a new connection (its own property: undici's class is untouched). */
export function skipStrayContinue(socket: Socket): void {
  const parser = (socket as unknown as Readonly<Record<symbol, UndiciParser | null | undefined>>)[kParser];
  if (parser === null || parser === undefined || typeof parser.onHeadersComplete !== 'function') return;
  undiciHeadersComplete ??= parser.onHeadersComplete;
  parser.onHeadersComplete = headersCompleteSkippingContinue;
}
