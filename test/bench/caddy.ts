/**
 * Caddy (Debian package `caddy`), when installed: a Go reverse proxy with per-request metrics,
 * i.e. the closest off-the-shelf thing to what metrics-proxy does. Each instance gets a
 * Caddyfile in its own temp directory (also its XDG data and config home, so nothing is written
 * elsewhere) and runs in the foreground, owned by pid:
 * - `servers { metrics }`: per-request HTTP metrics on, served on the admin endpoint's /metrics;
 * - GOMAXPROCS=1, to match one Node process on its one core;
 * - reverse_proxy with upstream keep-alive as nginx and the Node proxies have it (256 idle, 4 s);
 *   WebSocket upgrades are proxied by reverse_proxy without configuration;
 * - for the HTTP/2 scenarios, `protocols h1 h2c` (cleartext HTTP/2 with prior knowledge on the
 *   listener) and, for gRPC, `reverse_proxy h2c://…` (HTTP/2 to the upstream too).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { get } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Spawned, freePort, registerTempDir, spawnProcess } from './processes.js';
import type { Protocol } from './targets.js';
import { type ToolBinary, findTool } from './tools.js';

const CANDIDATES = ['/usr/bin/caddy', '/usr/local/bin/caddy'];

export type CaddyBinary = ToolBinary;

export function findCaddy(): CaddyBinary | undefined {
  return findTool('caddy', CANDIDATES, ['version'], (out) => {
    const version = out.split(/\s+/)[0] ?? '';
    return version === '' ? '' : `caddy ${version}`;
  });
}

export function caddyfile(port: number, adminPort: number, upstream: URL, protocol?: Protocol): string {
  const protocols = protocol === undefined ? '' : '\t\tprotocols h1 h2c\n';
  const to = protocol === 'grpc' ? `h2c://${upstream.host}` : upstream.host;
  return `{
	admin 127.0.0.1:${adminPort}
	auto_https off
	servers {
${protocols}		metrics
	}
}
http://:${port} {
	bind 127.0.0.1
	reverse_proxy ${to} {
		transport http {
			keepalive 4s
			keepalive_idle_conns 256
			keepalive_idle_conns_per_host 256
		}
	}
}
`;
}

export interface CaddyProcess extends Spawned {
  readonly url: string;
  /** Undefined when /metrics on the admin endpoint has request-duration series; else what is wrong. */
  readonly verifyMetrics: () => Promise<string | undefined>;
}

function fetchText(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = get(url, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        body += chunk;
      });
      res.on('end', () => resolve(body));
      res.on('error', reject);
    });
    req.setTimeout(5_000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

export async function startCaddy(binary: CaddyBinary, upstream: URL, prefix: readonly string[], protocol?: Protocol): Promise<CaddyProcess> {
  const dir = await mkdtemp(join(tmpdir(), 'mp-bench-caddy-'));
  const forget = registerTempDir(dir);
  const port = await freePort();
  const adminPort = await freePort();
  const config = join(dir, 'Caddyfile');
  await writeFile(config, caddyfile(port, adminPort, upstream, protocol));
  let spawned: Spawned;
  try {
    spawned = await spawnProcess(binary.path, ['run', '--config', config, '--adapter', 'caddyfile'], {
      cwd: dir,
      listeningLines: 0,
      readyPort: port,
      prefix,
      env: { GOMAXPROCS: '1', XDG_DATA_HOME: dir, XDG_CONFIG_HOME: dir },
    });
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    forget();
    throw err;
  }
  return {
    ...spawned,
    url: `http://127.0.0.1:${port}`,
    async verifyMetrics() {
      try {
        const text = await fetchText(`http://127.0.0.1:${adminPort}/metrics`);
        const count = /^caddy_http_request_duration_seconds_count\{[^}]*\} (\d+)/m.exec(text)?.[1];
        return count !== undefined && Number(count) > 0 ? undefined : 'Caddy served no per-request metrics (servers { metrics } not in effect?)';
      } catch (err) {
        return `Caddy's /metrics: ${(err as Error).message}`;
      }
    },
    async stop() {
      await spawned.stop();
      await rm(dir, { recursive: true, force: true });
      forget();
    },
  };
}
