/**
 * The real bin prints no Node warning while it does its job: forwarding HTTP requests, a WebSocket
 * session and a scrape, then a SIGTERM. A warning on stderr (`[DEP0060] DeprecationWarning` from a
 * dependency, MaxListenersExceededWarning from listeners piling up on a reused socket,
 * ExperimentalWarning) is noise in every user's logs and often an early sign of a real problem.
 * It runs under whichever Node runs vitest: .ci/run runs the suite on Node 20 and on Node 24.
 */
import { Agent, request } from 'node:http';
import { describe, expect, it, onTestFinished, vi } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { LOOPBACK, startListening, stopWithSigterm } from './bin.js';
import { failOrEchoHandler, startUpstream, wsText } from './helpers.js';

/** More requests on one kept-alive connection than an emitter's default 10 listeners: a listener added per request would warn. */
const REQUESTS = 24;

/** One request on `agent`; resolves with the status and body. */
function send(url: string, agent: Agent, method = 'GET', body?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const headers = body === undefined ? {} : { 'content-length': String(Buffer.byteLength(body)) };
    const req = request(url, { agent, method, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Opens a WebSocket, has `messages` echoed, closes it normally from the client. */
async function echoSession(url: string, messages: number): Promise<void> {
  const ws = new WebSocket(url);
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  for (let i = 0; i < messages; i++) {
    const echoed = new Promise<string>((resolve) => ws.once('message', (data: WebSocket.RawData) => resolve(wsText(data))));
    ws.send(`message ${i}`);
    expect(await echoed).toBe(`message ${i}`);
  }
  const closed = new Promise<number>((resolve) => ws.once('close', resolve));
  ws.close(1000);
  expect(await closed).toBe(1000);
}

describe('Node warnings', () => {
  it(`the bin prints no warning on ${process.version} while forwarding, proxying a WebSocket, being scraped and stopping`, async () => {
    // Nothing from the test runner's environment may add or silence warnings in the child.
    vi.stubEnv('NODE_OPTIONS', undefined);
    vi.stubEnv('NODE_NO_WARNINGS', undefined);
    onTestFinished(() => {
      vi.unstubAllEnvs();
    });
    const upstream = await startUpstream(failOrEchoHandler);
    onTestFinished(upstream.close);
    const wss = new WebSocketServer({ server: upstream.server });
    wss.on('connection', (ws) => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })));
    onTestFinished(() => new Promise<void>((resolve) => wss.close(() => resolve())));

    const { bin, url } = await startListening([...LOOPBACK, '--port', '0', '--upstream', upstream.url]);
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    onTestFinished(() => agent.destroy());

    for (let i = 0; i < REQUESTS; i++) {
      expect((await send(`${url}/api/items/${i}`, agent)).status).toBe(200);
    }
    const posted = await send(`${url}/api/items`, agent, 'POST', 'a body');
    expect(posted).toEqual({ status: 200, body: 'a body' });
    expect((await send(`${url}/api/fail`, agent)).status).toBe(500);
    await echoSession(`${url.replace('http', 'ws')}/api/chat`, 3);
    const scrape = await send(`${url}/metrics`, agent);
    expect(scrape.status).toBe(200);
    expect(scrape.body).toContain('apiCount');
    agent.destroy();

    expect(await stopWithSigterm(bin)).toEqual({ code: 0, signal: null });
    await bin.closed; // stderr fully read
    const warnings = bin.stderr().split('\n').filter((line) => line.includes('Warning'));
    expect(warnings, `stderr of the bin on ${process.version}:\n${bin.stderr()}`).toEqual([]);
  });
});
