/**
 * Upstreams at other kinds of address: HTTPS (trusted through NODE_EXTRA_CA_CERTS, which Node reads
 * at start-up, hence the built bin in a child process) and IPv6.
 */
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { describe, expect, it, onTestFinished } from 'vitest';
import { LOOPBACK, startListening } from './bin.js';
import { echoHandler, httpRequest, startProxy, startServer } from './helpers.js';

const CERT = fileURLToPath(new URL('./fixtures/self-signed.crt', import.meta.url));
const KEY = fileURLToPath(new URL('./fixtures/self-signed.key', import.meta.url));

/** An HTTPS upstream with the fixture certificate (localhost, 127.0.0.1) recording the SNI of each request and its connections. */
async function startTlsUpstream() {
  const servernames: Array<string | false | null> = [];
  let connections = 0;
  const server = createHttpsServer({ key: readFileSync(KEY), cert: readFileSync(CERT) }, (req, res) => {
    servernames.push((req.socket as TLSSocket).servername);
    req.resume();
    res.end(`hello over tls for ${req.headers.host ?? ''}`);
  });
  server.on('secureConnection', () => connections++);
  const running = await startServer(server);
  onTestFinished(running.close);
  return { port: running.port, servernames, connections: () => connections };
}

describe('an HTTPS upstream', () => {
  it('is trusted through NODE_EXTRA_CA_CERTS, with SNI on its own name, whatever Host the client sends, over one connection', async () => {
    const tls = await startTlsUpstream();
    const { url, bin } = await startListening(
      ['--upstream', `https://localhost:${tls.port}`, '--port', '0', ...LOOPBACK],
      { NODE_EXTRA_CA_CERTS: CERT },
    );
    for (const host of ['service.example', 'other.example:8443']) {
      const res = await httpRequest(`${url}/api/x`, { headers: { host } });
      expect(res.status).toBe(200);
      expect(res.body.toString()).toBe(`hello over tls for ${host}`);
    }
    expect(tls.servernames).toEqual(['localhost', 'localhost']);
    // A change of Host is no reason to reconnect (undici would, were SNI taken from it).
    expect(tls.connections()).toBe(1);
    expect(bin.stderr()).toBe('');
  });

  it('at an IP address: no SNI (RFC 6066), the certificate checked against the IP, no warning', async () => {
    const tls = await startTlsUpstream();
    const { url, bin } = await startListening(
      ['--upstream', `https://127.0.0.1:${tls.port}`, '--port', '0', ...LOOPBACK],
      { NODE_EXTRA_CA_CERTS: CERT },
    );
    const res = await httpRequest(`${url}/api/x`, { headers: { host: 'service.example' } });
    expect(res.status).toBe(200);
    expect(tls.servernames).toEqual([false]);
    expect(bin.stderr()).toBe('');
  });
});

describe('an IPv6 upstream', () => {
  it('is reached at its bracketed address', async (context) => {
    const server = createHttpServer(echoHandler);
    const listening = await new Promise<boolean>((resolve) => {
      server.once('error', () => resolve(false));
      server.listen(0, '::1', () => resolve(true));
    });
    if (!listening) context.skip('no IPv6 loopback on this host');
    onTestFinished(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const { port } = server.address() as AddressInfo;
    const proxy = await startProxy(`http://[::1]:${port}/base`);
    onTestFinished(proxy.close);
    const res = await httpRequest(`${proxy.url}/api/six?x=1`, { method: 'POST', body: 'over ipv6' });
    expect(res.status).toBe(200);
    expect(res.headers['x-echo-url']).toBe('/base/api/six?x=1');
    expect(res.body.toString()).toBe('over ipv6');
  });
});
