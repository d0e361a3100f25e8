/**
 * Real client programs against the proxy: curl (Debian's, built with nghttp2) with prior knowledge
 * and with the h2c upgrade it offers by default with --http2, and h2load, the nghttp2 project's load
 * generator, for plain requests and gRPC calls. .ci/run installs both when they are missing: nothing
 * here is skipped.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it, onTestFinished } from 'vitest';
import { settle, total } from './helpers.js';
import { proxyTo, upstreamWith } from './h2-peers.js';
import { PATHS, grpcFrame, startGrpcUpstream } from './grpc-peers.js';

const run = promisify(execFile);

/** curl's answer: the protocol version it used, the status, and the body. */
async function curl(args: readonly string[]): Promise<{ version: string; status: number; body: string }> {
  const { stdout } = await run('curl', ['--silent', '--show-error', '--max-time', '10', '--write-out', '\n%{http_version} %{http_code}', ...args]);
  const at = stdout.lastIndexOf('\n');
  const [version = '', code = '0'] = stdout.slice(at + 1).split(' ');
  return { version, status: Number(code), body: stdout.slice(0, at) };
}

function tempFile(name: string, content: Buffer): string {
  const dir = mkdtempSync(join(tmpdir(), 'metrics-proxy-h2-'));
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, name);
  writeFileSync(path, content);
  return path;
}

describe('curl', () => {
  it('speaks HTTP/2 with prior knowledge to the proxy: a forwarded GET, a POST body, and /metrics', async () => {
    const upstream = await upstreamWith();
    const proxy = await proxyTo(upstream.url);
    const get = await curl(['--http2-prior-knowledge', `${proxy.url}/api/curl?q=1`]);
    expect(get).toMatchObject({ version: '2', status: 200 });
    expect(upstream.seen.at(-1)?.url).toBe('/api/curl?q=1');
    const post = await curl(['--http2-prior-knowledge', '--data-binary', 'posted by curl', `${proxy.url}/api/curl`]);
    expect(post).toEqual({ version: '2', status: 200, body: 'posted by curl' });
    const metrics = await curl(['--http2-prior-knowledge', `${proxy.url}/metrics`]);
    expect(metrics.version).toBe('2');
    expect(metrics.body).toContain('apiCount{method="POST"} 1');
  });

  it('gets an HTTP/1.1 answer to the h2c upgrade it offers with --http2, on a forwarded path and on /metrics', async () => {
    const upstream = await upstreamWith();
    const proxy = await proxyTo(upstream.url);
    const get = await curl(['--http2', `${proxy.url}/api/upgrade-offered`]);
    expect(get).toMatchObject({ version: '1.1', status: 200 });
    const seen = upstream.seen.at(-1)?.headers;
    expect(seen?.upgrade).toBeUndefined();
    expect(seen?.['http2-settings']).toBeUndefined();
    const metrics = await curl(['--http2', `${proxy.url}/metrics`]);
    expect(metrics).toMatchObject({ version: '1.1', status: 200 });
    expect(metrics.body).toContain('apiCount{method="GET"} 1');
  });

  it('sends two requests over one connection with --http2 (the second after the declined upgrade)', async () => {
    const upstream = await upstreamWith();
    const proxy = await proxyTo(upstream.url);
    const { stdout, stderr } = await run('curl', [
      '--silent', '--show-error', '--max-time', '10', '--verbose', '--http2',
      `${proxy.url}/api/one`, '--next', '--http2', `${proxy.url}/api/two`,
    ]);
    expect(stdout.length).toBe(0); // echoHandler answers a GET with an empty body
    expect(stderr).toMatch(/Re-using existing connection/i);
    expect(upstream.seen.map((r) => r.url)).toEqual(['/api/one', '/api/two']);
  });
});

describe('h2load', () => {
  it('completes 200 requests on 4 connections, 10 streams each, all 200', { timeout: 60_000 }, async () => {
    const upstream = await upstreamWith();
    const proxy = await proxyTo(upstream.url);
    const { stdout } = await run('h2load', ['-n', '200', '-c', '4', '-m', '10', `${proxy.url}/api/load`], { timeout: 50_000 });
    expect(stdout).toMatch(/200 succeeded, 0 failed, 0 errored/);
    expect(stdout).toMatch(/status codes: 200 2xx, 0 3xx, 0 4xx, 0 5xx/);
    expect(upstream.seen).toHaveLength(200);
    const text = await settle(proxy.metrics, (t) => total(t, 'apiCount', { method: 'GET' }) >= 200);
    expect(total(text, 'apiCount', { method: 'GET' })).toBe(200);
    expect(total(text, 'http_server_request_duration_seconds_count', { network_protocol_version: '2' })).toBe(200);
  });

  it('completes 100 gRPC unary calls (a body from a file, gRPC headers), each counted once', { timeout: 60_000 }, async () => {
    const upstream = await startGrpcUpstream();
    const proxy = await proxyTo(upstream.url);
    const body = tempFile('unary.bin', grpcFrame(Buffer.from([0x0a, 0x05, ...Buffer.from('hello')])));
    const { stdout } = await run(
      'h2load',
      ['-n', '100', '-c', '2', '-m', '5', '-d', body, '-H', 'content-type: application/grpc', '-H', 'te: trailers', `${proxy.url}${PATHS.unary}`],
      { timeout: 50_000 },
    );
    expect(stdout).toMatch(/100 succeeded, 0 failed, 0 errored/);
    const text = await settle(proxy.metrics, (t) => total(t, 'apiCount', { method: 'POST' }) >= 100);
    expect(total(text, 'apiCount', { method: 'POST' })).toBe(100);
    expect(total(text, 'apiErrorCount', { type: 'api' })).toBe(0);
  });
});
