/**
 * The published package and the container image, without a Docker engine:
 * the Dockerfile's contract is parsed and checked, and the production tree it
 * builds (the `npm pack` tarball, unpacked, plus `npm ci --omit=dev` as the
 * Dockerfile runs it) is built in a temp dir and its ENTRYPOINT started against
 * a real upstream. The same tarball is installed into an empty project to prove
 * `npx metrics-proxy` works without our source tree or TypeScript.
 * Needs dist/ (`npm test` builds it first) and the npm registry (or its cache).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { copyFile, lstat, mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULTS } from '../src/config/config.js';
import { HEALTH_PATH } from '../src/admin/health.js';
import { ROOT, childEnv, run } from './bin.js';
import { type Stage, argsOf, dockerignoreAllows, execForm, parseDockerfile, runCommands } from './dockerfile.js';
import { type Upstream, echoHandler, sampleValue, startUpstream } from './helpers.js';

interface PackageJson {
  readonly version: string;
  readonly bin: Readonly<Record<string, string>>;
  readonly engines: { readonly node: string };
  readonly dependencies: Readonly<Record<string, string>>;
}
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as PackageJson;
const dockerText = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
const dockerfile = parseDockerfile(dockerText);
const ignoreText = readFileSync(join(ROOT, '.dockerignore'), 'utf8');
const buildStage = dockerfile.stages[0] as Stage;
const runtime = dockerfile.stages[dockerfile.stages.length - 1] as Stage;
const runtimeCommands = argsOf(runtime, 'RUN').flatMap(runCommands);
const IMAGE_BUDGET_BYTES = 200e6;
// node:22-alpine on amd64 (an estimate, not measured here: there is no Docker engine): the node
// binary ~115 MB, npm ~19 MB, yarn ~5 MB, Alpine and libstdc++ ~10 MB, so ~150-160 MB as
// `docker images` counts it. Take 160 MB, and let our layers use at most half of what is left,
// keeping the other half for that estimate's error and for base images growing.
const BASE_IMAGE_BYTES = 160e6;
const TREE_BUDGET_BYTES = (IMAGE_BUDGET_BYTES - BASE_IMAGE_BYTES) / 2;

/** The context paths a stage COPYs (not those taken --from another stage). */
function copySources(stage: Stage): string[] {
  return argsOf(stage, 'COPY')
    .filter((a) => !a.includes('--from='))
    .flatMap((a) => a.split(/\s+/).filter((w) => !w.startsWith('--')).slice(0, -1));
}

const healthcheck = (() => {
  const args = argsOf(runtime, 'HEALTHCHECK')[0] ?? '';
  const cmd = /(?:^|\s)CMD\s+(\[.*\])$/.exec(args);
  return cmd === null ? [] : execForm(cmd[1] as string);
})();

describe('Dockerfile contract', () => {
  it('every stage is the official Node image pinned to one LTS major that engines allows', () => {
    expect(dockerfile.stages.length).toBeGreaterThanOrEqual(2);
    const minimum = Number(/^>=\s*(\d+)/.exec(pkg.engines.node)?.[1]);
    const majors = dockerfile.stages.map(({ image }) => {
      const match = /^node:(\d+)(?:\.\d+){0,2}-(alpine|slim)[\w.]*$/.exec(image);
      expect(match, `FROM ${image} is not node:<major>-alpine|slim`).not.toBeNull();
      return Number(match?.[1]);
    });
    expect(new Set(majors).size).toBe(1);
    expect(majors[0]).toBeGreaterThanOrEqual(minimum);
    expect((majors[0] as number) % 2, 'odd Node majors never become LTS').toBe(0);
  });

  it('the final stage runs as a numeric non-root user, exposes the default port and enters at the bin', () => {
    const user = argsOf(runtime, 'USER').at(-1);
    // Numeric, so that Kubernetes' runAsNonRoot can verify it without a passwd lookup.
    expect(user).toMatch(/^\d+(:\d+)?$/);
    expect(Number(user?.split(':')[0])).toBeGreaterThan(0);
    expect(argsOf(runtime, 'EXPOSE').flatMap((a) => a.split(/\s+/))).toContain(String(DEFAULTS.port));
    expect(execForm(argsOf(runtime, 'ENTRYPOINT')[0] ?? '')).toEqual(Object.keys(pkg.bin));
    // The bin reaches PATH as a link to the package's own bin file under WORKDIR.
    const workdir = argsOf(runtime, 'WORKDIR').at(-1);
    const binFile = (Object.values(pkg.bin)[0] as string).replace(/^\.\//, '');
    expect(runtimeCommands).toContainEqual(['ln', '-s', `${workdir}/${binFile}`, `/usr/local/bin/${Object.keys(pkg.bin)[0]}`]);
  });

  it('HEALTHCHECK asks /healthz with node (no curl), on the default port unless the env moves it', () => {
    expect(healthcheck[0]).toBe('node');
    const script = healthcheck[2] ?? '';
    expect(healthcheck[1]).toBe('-e');
    expect(script).toContain(`'${HEALTH_PATH}'`);
    expect(script).toContain(`||${DEFAULTS.port}`);
    expect(script).toContain('process.env.METRICS_PROXY_PORT');
  });

  it('the build stage compiles with dev dependencies and packs; the runtime stage installs production dependencies only', () => {
    const buildCommands = argsOf(buildStage, 'RUN').flatMap(runCommands);
    expect(buildCommands.some((c) => c[0] === 'npm' && c[1] === 'ci' && !c.includes('--omit=dev'))).toBe(true);
    expect(buildCommands.some((c) => c.join(' ') === 'npm run build')).toBe(true);
    expect(buildCommands.some((c) => c[0] === 'npm' && c[1] === 'pack')).toBe(true);

    const installs = runtimeCommands.filter((c) => c[0] === 'npm' && ['ci', 'install', 'i'].includes(c[1] ?? ''));
    expect(installs.length).toBe(1);
    for (const command of installs) {
      expect(command).toContain('--omit=dev');
      expect(command).toContain('--ignore-scripts');
      expect(command.filter((w) => /^--(include=dev|production=false|dev)$/.test(w))).toEqual([]);
    }
    expect(runtimeCommands.filter((c) => c.includes('build') || c.includes('tsc'))).toEqual([]);
    // Nothing from the build stage's node_modules (dev dependencies) is copied in.
    expect(argsOf(runtime, 'COPY').filter((a) => a.includes('node_modules'))).toEqual([]);
  });

  it('.dockerignore lets in only what the build copies: no node_modules, dist, .git or tests', () => {
    for (const path of ['node_modules/pino/package.json', 'dist/cli/main.js', '.git/HEAD', 'test/cli.test.ts', 'x.tgz', '.env']) {
      expect(dockerignoreAllows(ignoreText, path), path).toBe(false);
    }
    const sources = copySources(buildStage);
    for (const source of sources) expect(dockerignoreAllows(ignoreText, source), source).toBe(true);
  });
});

const spawned: ChildProcess[] = [];
let upstream: Upstream;
let work: string;
let packedFiles: string[];
/** The runtime image's filesystem, as far as we build it: <imageRoot>/opt/metrics-proxy, <imageRoot>/usr/local/bin. */
let imageRoot: string;
let appDir: string;
let consumerDir: string;
const npmOptions = { env: childEnv(), maxBuffer: 16 * 1024 * 1024, timeout: 100_000 };

async function buildImageTree(tarball: string): Promise<void> {
  appDir = join(imageRoot, argsOf(runtime, 'WORKDIR').at(-1) as string);
  await mkdir(appDir, { recursive: true });
  // The build stage's last RUN: the tarball unpacked, the lockfile beside it.
  await run('tar', ['-xzf', tarball, '-C', appDir, '--strip-components=1']);
  await copyFile(join(ROOT, 'package-lock.json'), join(appDir, 'package-lock.json'));
  for (const command of runtimeCommands) {
    if (command[0] === 'npm') {
      await run('npm', [...command.slice(1), '--prefer-offline'], { ...npmOptions, cwd: appDir });
    } else if (command[0] === 'ln') {
      const [, , target, link] = command as [string, string, string, string];
      await mkdir(join(imageRoot, dirname(link)), { recursive: true });
      await symlink(join(imageRoot, target), join(imageRoot, link));
    } else {
      throw new Error(`runtime RUN command this test does not emulate: ${command.join(' ')}`);
    }
  }
}

async function installConsumer(tarball: string): Promise<void> {
  await mkdir(consumerDir);
  await writeFile(join(consumerDir, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true }));
  await run('npm', ['install', '--omit=dev', '--no-audit', '--no-fund', '--prefer-offline', tarball], { ...npmOptions, cwd: consumerDir });
}

beforeAll(async () => {
  if (!existsSync(join(ROOT, 'dist', 'cli', 'main.js'))) throw new Error('dist/cli/main.js is missing: run `npm run build` first');
  upstream = await startUpstream(echoHandler);
  work = await mkdtemp(join(tmpdir(), 'metrics-proxy-package-'));
  imageRoot = join(work, 'image');
  consumerDir = join(work, 'consumer');
  // --ignore-scripts: pack the dist/ that `npm test` just built instead of rebuilding it under other tests' feet.
  const packed = await run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', work], { ...npmOptions, cwd: ROOT });
  const [manifest] = JSON.parse(packed.stdout) as Array<{ filename: string; files: Array<{ path: string }> }>;
  if (manifest === undefined) throw new Error(`npm pack printed no manifest: ${packed.stdout}`);
  packedFiles = manifest.files.map((f) => f.path);
  const tarball = join(work, manifest.filename);
  await Promise.all([buildImageTree(tarball), installConsumer(tarball)]);
}, 120_000);

afterAll(async () => {
  for (const child of spawned) {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
  }
  await upstream?.close();
  if (work !== undefined) await rm(work, { recursive: true, force: true });
});

interface Started {
  readonly child: ChildProcess;
  readonly url: string;
  readonly adminUrl: string | undefined;
  readonly exit: Promise<number | null>;
}

/** Spawns a long-running proxy and waits for its `listening` line; afterAll kills it by pid if it is still up. */
async function startProxyProcess(command: string, args: readonly string[], env: NodeJS.ProcessEnv, cwd: string): Promise<Started> {
  const child = spawn(command, [...args, '--host', '127.0.0.1', '--port', '0', '--upstream', upstream.url], {
    cwd,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  spawned.push(child);
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const lines = createInterface({ input: child.stdout });
  const first = await new Promise<string>((resolve, reject) => {
    lines.once('line', resolve);
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`${command} exited ${String(code)} before listening: ${stderr}`)));
  });
  lines.on('line', () => {}); // keep reading: a full pipe would block the proxy's logging
  const log = JSON.parse(first) as { msg?: string; port?: number; metricsPort?: number };
  expect(log.msg).toBe('listening');
  const adminUrl = log.metricsPort === undefined ? undefined : `http://127.0.0.1:${log.metricsPort}`;
  return { child, url: `http://127.0.0.1:${String(log.port)}`, adminUrl, exit };
}

/** Runs the Dockerfile's HEALTHCHECK command with these env vars; resolves with its exit code. */
async function runHealthcheck(env: Record<string, string>): Promise<number> {
  const [command, ...args] = healthcheck as [string, ...string[]];
  const path = `${dirname(process.execPath)}:${process.env.PATH ?? ''}`;
  return run(command, args, { env: { ...childEnv(env), PATH: path }, timeout: 10_000 }).then(
    () => 0,
    (err: { code?: unknown }) => (typeof err.code === 'number' ? err.code : -1),
  );
}

async function proxiedRequestIsCounted(url: string, metricsUrl: string): Promise<void> {
  const res = await fetch(`${url}/api/packaged?x=1`, { method: 'POST', body: 'hello' });
  expect(res.status).toBe(200);
  expect(res.headers.get('x-echo-url')).toBe('/api/packaged?x=1');
  expect(await res.text()).toBe('hello');
  const metrics = await (await fetch(`${metricsUrl}/metrics`)).text();
  expect(sampleValue(metrics, 'apiCount', { method: 'POST' })).toBe(1);
  expect(sampleValue(metrics, 'apiDuration_count', { method: 'POST' })).toBe(1);
}

async function treeBytes(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    // 512 bytes per entry for its tar header in the layer.
    total += 512 + (entry.isDirectory() ? await treeBytes(path) : (await lstat(path)).size);
  }
  return total;
}

describe('the production tree the Dockerfile builds', () => {
  it('npm pack ships bin, dist and package.json only, and every packed file reaches the build stage', () => {
    expect(packedFiles).toEqual(expect.arrayContaining(['bin/metrics-proxy.js', 'dist/cli/main.js', 'package.json']));
    expect(packedFiles.filter((p) => p.startsWith('src/') || p.startsWith('test/') || p.endsWith('.map'))).toEqual([]);
    const sources = copySources(buildStage);
    // dist/ is built in the stage; everything else must be copied into it from the context.
    for (const file of packedFiles.filter((p) => !p.startsWith('dist/'))) {
      expect(sources.some((s) => file === s || file.startsWith(`${s}/`)), `${file} is packed but not copied`).toBe(true);
      expect(dockerignoreAllows(ignoreText, file), `${file} is packed but .dockerignored`).toBe(true);
    }
  });

  it(`holds no dev dependency and stays under ${TREE_BUDGET_BYTES / 1e6} MB (image budget 200 MB - base image ~160 MB, halved)`, async () => {
    const lock = JSON.parse(readFileSync(join(appDir, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean }> };
    const devOnly = Object.entries(lock.packages).filter(([path, meta]) => path !== '' && meta.dev === true);
    expect(devOnly.length).toBeGreaterThan(0);
    expect(devOnly.map(([path]) => path).filter((path) => existsSync(join(appDir, path)))).toEqual([]);
    for (const name of Object.keys(pkg.dependencies)) expect(existsSync(join(appDir, 'node_modules', name)), name).toBe(true);
    const bytes = await treeBytes(appDir);
    expect(bytes).toBeLessThan(TREE_BUDGET_BYTES);
  });

  it('its ENTRYPOINT proxies a real request, counts it in /metrics, answers /healthz, passes HEALTHCHECK and drains on SIGTERM', async () => {
    const entrypoint = execForm(argsOf(runtime, 'ENTRYPOINT')[0] ?? '');
    // PATH as in the image: the linked bin, and node for its #! line.
    const env = { ...childEnv(), PATH: `${join(imageRoot, 'usr', 'local', 'bin')}:${dirname(process.execPath)}` };
    const proxy = await startProxyProcess(entrypoint[0] as string, entrypoint.slice(1), env, appDir);
    await proxiedRequestIsCounted(proxy.url, proxy.url);
    const health = await fetch(`${proxy.url}${HEALTH_PATH}`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ ok: true });
    const port = new URL(proxy.url).port;
    expect(await runHealthcheck({ METRICS_PROXY_PORT: port })).toBe(0);

    process.kill(proxy.child.pid as number, 'SIGTERM');
    expect(await proxy.exit).toBe(0);
    expect(await runHealthcheck({ METRICS_PROXY_PORT: port })).toBe(1);
  });

  it('HEALTHCHECK follows METRICS_PROXY_METRICS_PORT when health moves to the admin port', async () => {
    const env = { ...childEnv(), PATH: `${join(imageRoot, 'usr', 'local', 'bin')}:${dirname(process.execPath)}` };
    const proxy = await startProxyProcess('metrics-proxy', ['--metrics-port', '0'], env, appDir);
    if (proxy.adminUrl === undefined) throw new Error('no metricsPort in the listening line');
    const port = new URL(proxy.url).port;
    // The main port then treats /healthz like any path outside the prefix: 404.
    expect(await runHealthcheck({ METRICS_PROXY_PORT: port })).toBe(1);
    expect(await runHealthcheck({ METRICS_PROXY_PORT: port, METRICS_PROXY_METRICS_PORT: new URL(proxy.adminUrl).port })).toBe(0);
  });
});

describe('npx from the tarball, in an empty project', () => {
  it('`npx metrics-proxy --version` runs the installed package, with no TypeScript anywhere', async () => {
    const installed = join(consumerDir, 'node_modules', 'metrics-proxy');
    expect(existsSync(join(installed, 'src'))).toBe(false);
    for (const tool of ['typescript', 'tsx', 'vitest']) expect(existsSync(join(consumerDir, 'node_modules', tool)), tool).toBe(false);
    // --yes=false: never fetch some other package of that name from the registry. (Not `--no`,
    // which takes the next word as its value and leaves `--version` to npx itself.)
    const { stdout, stderr } = await run('npx', ['--yes=false', 'metrics-proxy', '--version'], { ...npmOptions, cwd: consumerDir, timeout: 30_000 });
    expect(stdout).toBe(`${pkg.version}\n`);
    expect(stderr).toBe('');
    const help = await run('npx', ['--yes=false', 'metrics-proxy', '--help'], { ...npmOptions, cwd: consumerDir, timeout: 30_000 });
    expect(help.stdout).toContain('--upstream');
    expect(help.stderr).toBe('');
  });

  it('the installed bin proxies a real request and counts it', async () => {
    const bin = join(consumerDir, 'node_modules', '.bin', 'metrics-proxy');
    const proxy = await startProxyProcess(bin, [], childEnv(), consumerDir);
    await proxiedRequestIsCounted(proxy.url, proxy.url);
  });
});

/** `docker info` succeeds only with a reachable engine; this machine has the client alone. */
const engine = await run('docker', ['info', '--format', '{{.ServerVersion}}'], { timeout: 15_000 }).then(
  () => ({ ok: true as const, reason: '' }),
  (err: { stderr?: string; message: string }) => ({ ok: false as const, reason: (err.stderr || err.message).trim().split('\n')[0] ?? '' }),
);

describe('docker build', () => {
  const name = engine.ok
    ? 'builds the image: under 200 MB, non-root, the entrypoint runs'
    : `skipped, no Docker engine (docker info: ${engine.reason})`;
  it.skipIf(!engine.ok)(name, { timeout: 600_000 }, async () => {
    const tag = `metrics-proxy:test-${process.pid}`;
    try {
      await run('docker', ['build', '-t', tag, ROOT], { maxBuffer: 64 * 1024 * 1024, timeout: 580_000 });
      const inspected = await run('docker', ['image', 'inspect', '--format', '{{.Size}} {{.Config.User}}', tag]);
      const [size, user] = inspected.stdout.trim().split(' ');
      expect(Number(size)).toBeLessThan(IMAGE_BUDGET_BYTES);
      expect(user).toBe(argsOf(runtime, 'USER').at(-1));
      const version = await run('docker', ['run', '--rm', tag, '--version'], { timeout: 60_000 });
      expect(version.stdout).toBe(`${pkg.version}\n`);
    } finally {
      await run('docker', ['image', 'rm', '-f', tag]).catch(() => {});
    }
  });
});
