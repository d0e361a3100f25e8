/**
 * What every process of ours starts with, read from outside the process:
 * - the V8 heap sizing flags (bin/metrics-proxy.js says why) on the command line of the bin
 *   started through its #! line, of the container's bin (the Dockerfile's #! rewrite), and of
 *   every cluster worker, however the primary was started; glibc's trim threshold in the
 *   environment of the first and the last (cli/process-tuning.ts);
 * - the packages the bin's bundle holds not loaded again from node_modules, and the packages meant
 *   to load on first use (src/lazy-modules.ts, logger.ts) not loaded by a default start. A preload reports the CommonJS module cache and Node's built-in module list
 *   at a signal: RSS itself is too noisy to assert on, but a lazy import that turns eager again
 *   shows up here at once.
 * Linux only (/proc, pgrep); needs dist/ (`npm run build`).
 */
import { execFileSync, spawn } from 'node:child_process';
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { ALLOCATOR_TRIM_BYTES, ALLOCATOR_TRIM_VARIABLE, HEAP_SIZING_FLAG, YOUNG_GENERATION_FLAG, allocatorTuning, withHeapSizing } from '../src/cli/process-tuning.js';
import { BIN, DEAD_UPSTREAM, LOOPBACK, ROOT, childEnv, killByPid, spawnBin } from './bin.js';

const linux = existsSync('/proc/self/cmdline');

function cmdline(pid: number): string[] {
  return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((a) => a !== '');
}

/** The process's environment as NAME=value entries. */
function environ(pid: number): string[] {
  return readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').filter((a) => a !== '');
}

const ALLOCATOR_SETTING = `${ALLOCATOR_TRIM_VARIABLE}=${ALLOCATOR_TRIM_BYTES}`;

function children(pid: number): number[] {
  try {
    return execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' }).trim().split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

async function until(check: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** Writes, at SIGUSR2, the CommonJS modules loaded so far and the built-in modules, to FOOTPRINT_OUT. */
const PRELOAD = `
import { createRequire } from 'node:module';
import { writeFileSync } from 'node:fs';
const Module = createRequire(import.meta.url)('node:module');
process.on('SIGUSR2', () => {
  const builtins = process.moduleLoadList.filter((m) => m.startsWith('NativeModule ')).map((m) => m.slice('NativeModule '.length));
  writeFileSync(process.env.FOOTPRINT_OUT, JSON.stringify({ cjs: Object.keys(Module._cache), builtins }));
});
`;

interface Loaded {
  /** npm package names with at least one file in the module cache. */
  readonly packages: ReadonlySet<string>;
  readonly builtins: ReadonlySet<string>;
}

async function loadedAfterStart(args: readonly string[]): Promise<Loaded> {
  const dir = await mkdtemp(join(tmpdir(), 'mp-footprint-'));
  onTestFinished(() => rm(dir, { recursive: true, force: true }));
  const preload = join(dir, 'preload.mjs');
  const out = join(dir, 'loaded.json');
  await writeFile(preload, PRELOAD);
  const bin = spawnBin(args, { FOOTPRINT_OUT: out }, onTestFinished, ['--import', preload]);
  await until(() => bin.stdout().includes('listening'), 'the listening line');
  process.kill(bin.pid, 'SIGUSR2');
  await until(() => existsSync(out), 'the module list');
  await new Promise((resolve) => setTimeout(resolve, 50));
  const { cjs, builtins } = JSON.parse(await readFile(out, 'utf8')) as { cjs: string[]; builtins: string[] };
  const packages = new Set(cjs.flatMap((file) => /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(file)?.[1] ?? []));
  return { packages, builtins: new Set(builtins) };
}

describe.runIf(linux)('heap sizing flags and the allocator setting', () => {
  it('the bin started through its #! line runs node with them', async () => {
    const child = spawn(BIN, [...LOOPBACK, '--port', '0', '--upstream', DEAD_UPSTREAM], { cwd: ROOT, env: childEnv(), stdio: ['ignore', 'pipe', 'inherit'] });
    const pid = child.pid as number;
    onTestFinished(() => killByPid(pid));
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    await until(() => out.includes('"msg":"listening"'), 'the listening line');
    // env(1) execs node in place: same pid.
    const argv = cmdline(pid);
    expect(argv.slice(1, 4)).toEqual([HEAP_SIZING_FLAG, YOUNG_GENERATION_FLAG, BIN]);
    expect(environ(pid)).toContain(ALLOCATOR_SETTING);
  });

  it("the container's #! line (the Dockerfile's rewrite of the bin) runs node with it, without env -S", async () => {
    const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
    const sed = /sed -i '([^']+)' \S*bin\/metrics-proxy\.js/.exec(dockerfile);
    expect(sed, 'a sed rewrite of the bin in the Dockerfile').not.toBeNull();
    const dir = await mkdtemp(join(tmpdir(), 'mp-shebang-'));
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
    const copy = join(dir, 'metrics-proxy.js');
    await copyFile(BIN, copy);
    execFileSync('sed', ['-i', sed?.[1] as string, copy]);
    const first = (await readFile(copy, 'utf8')).split('\n', 1)[0];
    // node:<major>-alpine installs node at /usr/local/bin; the kernel passes the rest as one argument.
    expect(first).toBe(`#!/usr/local/bin/node ${HEAP_SIZING_FLAG}`);
    // The second flag, which the kernel could not hand over beside the first: NODE_OPTIONS takes it.
    expect(dockerfile).toMatch(new RegExp(`^ENV NODE_OPTIONS=${YOUNG_GENERATION_FLAG}$`, 'm'));
    expect(execFileSync(process.execPath, ['-p', "require('node:v8').getHeapSpaceStatistics().length"], { env: { ...process.env, NODE_OPTIONS: YOUNG_GENERATION_FLAG }, encoding: 'utf8' }).trim()).toMatch(/^\d+$/);
  });

  it('every cluster worker runs with them, even under a primary started without them', async () => {
    const bin = spawnBin([...LOOPBACK, '--port', '0', '--upstream', DEAD_UPSTREAM, '--workers', '2'], {}, onTestFinished);
    onTestFinished(() => {
      for (const pid of children(bin.pid)) killByPid(pid);
    });
    await until(() => (bin.stdout().match(/"msg":"listening"/g) ?? []).length === 2, 'both workers to listen');
    expect(cmdline(bin.pid)).not.toContain(HEAP_SIZING_FLAG);
    expect(environ(bin.pid).some((entry) => entry.startsWith(`${ALLOCATOR_TRIM_VARIABLE}=`))).toBe(false);
    const workers = children(bin.pid);
    expect(workers).toHaveLength(2);
    for (const pid of workers) {
      expect(cmdline(pid)).toEqual(expect.arrayContaining([HEAP_SIZING_FLAG, YOUNG_GENERATION_FLAG]));
      expect(environ(pid)).toContain(ALLOCATOR_SETTING);
    }
  });

  it("a worker keeps the user's own trim threshold", async () => {
    const bin = spawnBin([...LOOPBACK, '--port', '0', '--upstream', DEAD_UPSTREAM, '--workers', '2'], { [ALLOCATOR_TRIM_VARIABLE]: '1048576' }, onTestFinished);
    onTestFinished(() => {
      for (const pid of children(bin.pid)) killByPid(pid);
    });
    await until(() => (bin.stdout().match(/"msg":"listening"/g) ?? []).length === 2, 'both workers to listen');
    const workers = children(bin.pid);
    expect(workers).toHaveLength(2);
    for (const pid of workers) expect(environ(pid)).toContain(`${ALLOCATOR_TRIM_VARIABLE}=1048576`);
  });

  it('the allocator setting is added only where the environment does not choose a trim threshold', () => {
    expect(allocatorTuning({})).toEqual({ [ALLOCATOR_TRIM_VARIABLE]: ALLOCATOR_TRIM_BYTES });
    expect(allocatorTuning({ [ALLOCATOR_TRIM_VARIABLE]: '0' })).toEqual({});
    expect(allocatorTuning({ GLIBC_TUNABLES: 'glibc.malloc.trim_threshold=65536' })).toEqual({});
    expect(allocatorTuning({ GLIBC_TUNABLES: 'glibc.malloc.arena_max=2' })).toEqual({ [ALLOCATOR_TRIM_VARIABLE]: ALLOCATOR_TRIM_BYTES });
  });

  it("the #! line's value is the one the workers get", () => {
    const first = readFileSync(BIN, 'utf8').split('\n', 1)[0] ?? '';
    expect(first.split(/\s+/)).toContain(ALLOCATOR_SETTING);
    // Linux before 5.1 reads at most 127 bytes of a #! line.
    expect(first.length).toBeLessThan(128);
  });

  it('is added once: a size given on the command line wins', () => {
    expect(withHeapSizing(['--trace-gc'])).toEqual(['--trace-gc', HEAP_SIZING_FLAG, YOUNG_GENERATION_FLAG]);
    expect(withHeapSizing(['--initial-old-space-size=128'])).toEqual(['--initial-old-space-size=128', YOUNG_GENERATION_FLAG]);
    expect(withHeapSizing(['--initial_old_space_size', '16', '--max_semi_space_size=8'])).toEqual(['--initial_old_space_size', '16', '--max_semi_space_size=8']);
  });
});

describe.runIf(linux)('packages the bin loads', () => {
  it('the engine comes from the bundle: no package it bundles is loaded from node_modules', async () => {
    const { packages } = await loadedAfterStart([...LOOPBACK, '--port', '0', '--upstream', DEAD_UPSTREAM]);
    for (const name of ['undici', 'prom-client', 'pino', 'commander', 'http-proxy-3']) expect(packages.has(name), name).toBe(false);
  });

  it('no yaml without --config, no pino-pretty without --log-format pretty; each loads from node_modules when asked for', async () => {
    const plain = await loadedAfterStart([...LOOPBACK, '--port', '0', '--upstream', DEAD_UPSTREAM]);
    for (const name of ['yaml', 'pino-pretty']) expect(plain.packages.has(name), name).toBe(false);
    const dir = await mkdtemp(join(tmpdir(), 'mp-footprint-config-'));
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
    const config = join(dir, 'metrics-proxy.yaml');
    await writeFile(config, `upstream: ${DEAD_UPSTREAM}\nport: 0\nhost: 127.0.0.1\n`);
    const asked = await loadedAfterStart(['--config', config, '--log-format', 'pretty']);
    for (const name of ['yaml', 'pino-pretty']) expect(asked.packages.has(name), name).toBe(true);
  });
});
