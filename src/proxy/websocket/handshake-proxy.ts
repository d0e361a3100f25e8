/**
 * The http-proxy-3 server that makes WebSocket handshakes with the upstream,
 * and the keep-alive agent under it (a refused handshake's socket can be
 * reused; an upgraded one leaves the agent). Plain HTTP never comes here: it
 * goes through undici's pool.
 */
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { type ProxyServer, createProxyServer } from 'http-proxy-3';
import { connectHost, serverNameOf } from '../url-parts.js';

export interface HandshakeProxy {
  readonly proxy: ProxyServer;
  readonly close: () => void;
}

/** Idle upstream sockets close before common servers' keep-alive timeouts (Node's is 5 s). */
const IDLE_SOCKET_MS = 4_000;

function createAgent(upstream: URL): HttpAgent {
  const options = { keepAlive: true, maxFreeSockets: 256, scheduling: 'lifo' as const, timeout: IDLE_SOCKET_MS };
  if (upstream.protocol !== 'https:') return new HttpAgent(options);
  // SNI and certificate checks use the upstream's name, not the Host header the client sent: for an IP
  // address '' (no SNI), as undefined would let the agent take the name from each request's Host.
  return new HttpsAgent({ ...options, servername: serverNameOf(connectHost(upstream)) ?? '' });
}

export function createHandshakeProxy(upstream: URL): HandshakeProxy {
  const agent = createAgent(upstream);
  // No `xfwd`, no `changeOrigin`: headers.ts owns the header rules, and the Host the client sent is kept.
  const proxy = createProxyServer({ target: upstream.href, agent, ws: true });
  return {
    proxy,
    close: () => {
      proxy.close();
      agent.destroy();
    },
  };
}
