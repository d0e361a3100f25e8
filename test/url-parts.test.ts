/**
 * The URL rules written once in proxy/url-parts.ts, and the readiness check that now shares them:
 * it sent an IP address as the TLS server name, which Node warns about (DEP0123).
 */
import { readFileSync } from 'node:fs';
import { createServer as createHttpsServer } from 'node:https';
import { fileURLToPath } from 'node:url';
import { describe, expect, it, onTestFinished } from 'vitest';
import { connectHost, pathOf, serverNameOf } from '../src/proxy/url-parts.js';
import { LOOPBACK, startListening } from './bin.js';
import { httpRequest, startServer } from './helpers.js';

const CERT = fileURLToPath(new URL('./fixtures/self-signed.crt', import.meta.url));
const KEY = fileURLToPath(new URL('./fixtures/self-signed.key', import.meta.url));

describe('pathOf', () => {
  it.each([
    ['/api/x?a=1&b=2', '/api/x'],
    ['/api/x', '/api/x'],
    ['/api/x?', '/api/x'],
    ['/?q', '/'],
    ['/a?b?c', '/a'],
    ['', ''],
    [undefined, '/'],
  ])('%j → %j', (target, path) => {
    expect(pathOf(target)).toBe(path);
  });
});

describe('connectHost and serverNameOf', () => {
  it.each([
    ['http://localhost:8080/', 'localhost', 'localhost'],
    ['https://api.example/base', 'api.example', 'api.example'],
    ['http://127.0.0.1:9', '127.0.0.1', undefined],
    ['https://[::1]:8443/', '::1', undefined],
    ['http://[2001:db8::1]/', '2001:db8::1', undefined],
  ])('%s → dial %s, server name %s', (url, host, servername) => {
    expect(connectHost(new URL(url))).toBe(host);
    expect(serverNameOf(connectHost(new URL(url)))).toBe(servername);
  });
});

describe('the readiness check of an HTTPS upstream at an IP address', () => {
  it('connects without a server name, so Node prints no DEP0123 warning', async () => {
    const server = createHttpsServer({ key: readFileSync(KEY), cert: readFileSync(CERT) }, (_req, res) => res.end());
    const running = await startServer(server);
    onTestFinished(running.close);
    const { url, bin } = await startListening(['--upstream', `https://127.0.0.1:${running.port}`, '--port', '0', ...LOOPBACK], {
      NODE_EXTRA_CA_CERTS: CERT,
    });
    const ready = await httpRequest(`${url}/readyz`);
    expect(ready.status).toBe(200);
    expect(bin.stderr()).toBe('');
  });
});
