/**
 * The undici version the proxy is written against, pinned exactly in package.json:
 * upstream-pool.ts imports undici's files rather than its index and reaches into its HTTP/1
 * parser, which no semver range promises to keep. test/undici-pin.test.ts fails when the installed
 * version, or the one package.json or package-lock.json names, is another.
 *
 * Before moving to another version, re-read in its source:
 * - the files imported directly (upstream-pool.ts, undici-internals.d.ts), and that package.json
 *   still has no `exports` map to refuse them: lib/dispatcher/client.js, lib/dispatcher/pool.js,
 *   lib/core/connect.js, lib/core/util.js (headerNameToString), lib/core/symbols.js (kParser, kRunning);
 * - lib/dispatcher/client-h1.js: the parser's onHeadersComplete and the state the stray-100 rule
 *   resets (upstream-pool.ts), the legacy handler callbacks the exchange implements (onConnect,
 *   onHeaders, onData, onComplete, onError), the `Keep-Alive: timeout=` hint (config/types.ts), and
 *   the SocketError messages undici-errors.ts matches;
 * - lib/core/errors.js: the codes in undici-errors.ts;
 * - lib/core/util.js `destroy()`: it sets an IncomingMessage body's `socket` to null, which exchange.ts expects.
 */
export const UNDICI_VERSION = '7.30.2';
