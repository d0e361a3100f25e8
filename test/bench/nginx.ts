/**
 * nginx, when the Debian package is installed (nginx-light is enough): as the native
 * reverse-proxy yardstick, and as the fast fixed-response upstream. Each instance gets a config
 * written into its own temp directory and runs in the foreground (`daemon off`), so the bench
 * owns it by pid.
 * One worker process, to compare with one Node process; upstream keep-alive as a production
 * config would have it; request bodies streamed (`proxy_request_buffering off`) like ours.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Spawned, freePort, registerTempDir, spawnProcess } from './processes.js';
import type { Protocol } from './targets.js';
import { type ToolBinary, findTool } from './tools.js';

const CANDIDATES = ['/usr/sbin/nginx', '/usr/bin/nginx', '/usr/local/sbin/nginx', '/usr/local/bin/nginx'];

export type NginxBinary = ToolBinary;

export function findNginx(): NginxBinary | undefined {
  // `nginx -v` writes "nginx version: nginx/1.22.1" on stderr.
  return findTool('nginx', CANDIDATES, ['-v'], (out) => out.replace(/^nginx version: /, ''));
}

function mainContext(dir: string, port: number, locations: string, upstreams = '', listen = ''): string {
  // As root, nginx would switch its worker to `nobody`, which cannot read the 0700 temp directory.
  const user = process.getuid?.() === 0 ? 'user root;\n' : '';
  return `${user}daemon off;
master_process on;
worker_processes 1;
pid ${join(dir, 'nginx.pid')};
error_log ${join(dir, 'error.log')} warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${join(dir, 'client_body')};
  proxy_temp_path ${join(dir, 'proxy')};
  fastcgi_temp_path ${join(dir, 'fastcgi')};
  uwsgi_temp_path ${join(dir, 'uwsgi')};
  scgi_temp_path ${join(dir, 'scgi')};
  keepalive_timeout 65s;
  keepalive_requests 1000000;
  client_max_body_size 0;
${upstreams}  server {
    listen 127.0.0.1:${port}${listen} backlog=4096;
${locations}
  }
}
`;
}

/** nginx as a reverse proxy: /api/ws to `wsUpstream` with the Upgrade handshake, the rest to `httpUpstream`. */
export function proxyConfig(dir: string, port: number, httpUpstream: URL, wsUpstream: URL): string {
  const locations = `    location /api/ws {
      proxy_pass http://wsbackend;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection "upgrade";
      proxy_read_timeout 3600s;
    }
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_request_buffering off;
      proxy_max_temp_file_size 0;
    }`;
  const upstreams = `  upstream backend { server ${httpUpstream.host}; keepalive 256; keepalive_requests 1000000; keepalive_timeout 4s; }
  upstream wsbackend { server ${wsUpstream.host}; }
`;
  return mainContext(dir, port, locations, upstreams);
}

/**
 * nginx as a reverse proxy for HTTP/2 clients: an `http2` listener (h2c with prior knowledge;
 * nginx 1.22 has the `listen … http2` parameter, `http2 on;` came in 1.25.1). For `h2`, the rest
 * as proxyConfig (HTTP/1.1 upstream with keep-alive); for `grpc`, `grpc_pass` over h2c to the
 * upstream, whose connections are kept alive the same way.
 */
export function h2ProxyConfig(dir: string, port: number, upstream: URL, protocol: Protocol): string {
  const locations =
    protocol === 'grpc'
      ? `    location / {
      grpc_pass grpc://grpcbackend;
    }`
      : `    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_request_buffering off;
      proxy_max_temp_file_size 0;
    }`;
  const upstreams = `  upstream ${protocol === 'grpc' ? 'grpcbackend' : 'backend'} { server ${upstream.host}; keepalive 256; keepalive_requests 1000000; keepalive_timeout 4s; }
`;
  return mainContext(dir, port, locations, upstreams, ' http2');
}

/** nginx as the fixed-response upstream (same paths and bodies as upstream.mjs, HTTP only). */
export function upstreamConfig(dir: string, port: number): string {
  const locations = `    location = /api/small { default_type application/json; return 200 '{"message":"hello world"}'; }
    location = /api/16k { default_type application/octet-stream; alias ${join(dir, '16k.bin')}; }
    location = /api/sink { default_type application/json; return 200 '{"ok":true}'; }
    location / { return 404; }`;
  return mainContext(dir, port, locations);
}

export interface NginxProcess extends Spawned {
  readonly url: string;
}

/**
 * Writes the config made by `config(dir, port)` into a fresh temp dir and starts nginx on a free
 * port, behind `prefix` (`taskset -c N`: master and worker inherit the core).
 */
export async function startNginx(
  binary: NginxBinary,
  config: (dir: string, port: number) => string,
  prefix: readonly string[],
  files: Record<string, Buffer> = {},
): Promise<NginxProcess> {
  const dir = await mkdtemp(join(tmpdir(), 'mp-bench-nginx-'));
  const forget = registerTempDir(dir);
  const port = await freePort();
  await writeFile(join(dir, 'nginx.conf'), config(dir, port));
  for (const [name, content] of Object.entries(files)) await writeFile(join(dir, name), content);
  let spawned: Spawned;
  try {
    spawned = await spawnProcess(binary.path, ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log')], {
      cwd: dir,
      listeningLines: 0,
      readyPort: port,
      prefix,
    });
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    forget();
    throw err;
  }
  return {
    ...spawned,
    url: `http://127.0.0.1:${port}`,
    async stop() {
      await spawned.stop();
      await rm(dir, { recursive: true, force: true });
      forget();
    },
  };
}
