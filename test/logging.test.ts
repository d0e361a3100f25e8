/**
 * --log-format: JSON by default when stdout is not a terminal, human-readable
 * with `pretty` (pino-pretty in this thread). Unit tests for the choice and
 * the formatting; end-to-end tests spawn the built bin with piped stdout.
 */
import { spawn, spawnSync } from 'node:child_process';
import { Writable } from 'node:stream';
import { describe, expect, it, onTestFinished } from 'vitest';
import { createLogger, resolveLogFormat } from '../src/logger.js';
import {
  BIN,
  DEAD_UPSTREAM,
  LOOPBACK,
  childEnv,
  expectOneCleanLine,
  isRunning,
  killByPid,
  runToExit,
  spawnBin,
  startListening,
  stopWithSigterm,
} from './bin.js';

function capture(): { stream: Writable; text(): string } {
  let text = '';
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      text += chunk.toString('utf8');
      done();
    },
  });
  return { stream, text: () => text };
}

function isJson(line: string): boolean {
  try {
    JSON.parse(line);
    return true;
  } catch {
    return false;
  }
}

/** What starts an ANSI colour: ESC, then `[`. */
const ANSI = '\u001b[';
/** util-linux `script` runs a command on a pseudo-terminal: the only way to give the bin a real TTY stdout. */
const HAS_SCRIPT = spawnSync('script', ['--version'], { stdio: 'ignore' }).status === 0;

describe('resolveLogFormat', () => {
  it.each([
    ['auto', true, 'pretty'],
    ['auto', false, 'json'],
    ['json', true, 'json'],
    ['json', false, 'json'],
    ['pretty', true, 'pretty'],
    ['pretty', false, 'pretty'],
  ] as const)('%s with a terminal: %s → %s', (setting, tty, expected) => {
    expect(resolveLogFormat(setting, tty)).toBe(expected);
  });
});

describe('createLogger', () => {
  it('writes JSON lines by default', () => {
    const out = capture();
    createLogger('info', { destination: out.stream }).info({ port: 8000 }, 'listening');
    const log = JSON.parse(out.text()) as Record<string, unknown>;
    expect(log).toMatchObject({ level: 30, msg: 'listening', port: 8000, name: 'metrics-proxy' });
  });

  it('still accepts a bare destination stream (JSON)', () => {
    const out = capture();
    createLogger('info', out.stream).info('hello');
    expect(JSON.parse(out.text())).toMatchObject({ msg: 'hello' });
  });

  it('pretty: one human-readable line per entry, with the level, message and fields, no colour unless asked', () => {
    const out = capture();
    const logger = createLogger('info', { format: 'pretty', destination: out.stream });
    logger.info({ port: 8000 }, 'listening');
    logger.debug('not at this level');
    const lines = out.text().split('\n').filter((l) => l !== '');
    expect(lines).toHaveLength(1);
    const [line = ''] = lines;
    expect(isJson(line)).toBe(false);
    expect(line).toMatch(/INFO/);
    expect(line).toContain('listening');
    expect(line).toContain('"port":8000');
    expect(line).not.toContain(ANSI);
  });

  it('pretty with colorize: ANSI colours', () => {
    const out = capture();
    createLogger('info', { format: 'pretty', destination: out.stream, colorize: true }).warn('careful');
    expect(out.text()).toContain(ANSI);
    expect(out.text()).toContain('careful');
  });

  it('pretty: flush reaches the destination', async () => {
    const out = capture();
    const logger = createLogger('info', { format: 'pretty', destination: out.stream });
    logger.info('before flush');
    await new Promise<void>((resolve, reject) => logger.flush((err) => (err ? reject(err) : resolve())));
    expect(out.text()).toContain('before flush');
  });
});

describe('the bin', () => {
  const start = [...LOOPBACK, '--port', '0', '--upstream', DEAD_UPSTREAM];

  it('writes JSON when stdout is a pipe and nothing is set', async () => {
    const { bin, log } = await startListening(start);
    expect(log.msg).toBe('listening');
    expect(await stopWithSigterm(bin)).toEqual({ code: 0, signal: null });
  });

  it.each([
    ['--log-format pretty', ['--log-format', 'pretty'], {}],
    ['METRICS_PROXY_LOG_FORMAT=pretty', [], { METRICS_PROXY_LOG_FORMAT: 'pretty' }],
  ])('writes human-readable lines with %s', async (_name, args, env) => {
    const bin = spawnBin([...start, ...args], env, onTestFinished);
    const line = await bin.nextLine();
    expect(isJson(line)).toBe(false);
    expect(line).toContain('INFO');
    expect(line).toContain('listening');
    expect(line).toContain('"port":');
    expect(line).not.toContain(ANSI); // stdout is a pipe
    expect(await stopWithSigterm(bin)).toEqual({ code: 0, signal: null });
    expect(bin.stdout()).toContain('stopped');
  });

  it('--log-format json beats METRICS_PROXY_LOG_FORMAT=pretty', async () => {
    const { bin } = await startListening([...start, '--log-format', 'json'], { METRICS_PROXY_LOG_FORMAT: 'pretty' });
    expect(await stopWithSigterm(bin)).toEqual({ code: 0, signal: null });
  });

  it('refuses an unknown format with one line', async () => {
    const result = await runToExit([...start, '--log-format', 'xml'], {}, onTestFinished);
    expect(result.code).toBe(2);
    expect(expectOneCleanLine(result.stderr)).toContain('--log-format');
  });

  it.skipIf(!HAS_SCRIPT)('with stdout on a terminal and nothing set: human-readable and coloured', async () => {
    const command = [process.execPath, BIN, ...start].map((arg) => `'${arg.replace(/'/g, `'\\''`)}'`).join(' ');
    const child = spawn('script', ['-qec', command, '/dev/null'], { env: childEnv(), stdio: ['pipe', 'pipe', 'pipe'] });
    const { pid } = child;
    if (pid === undefined) throw new Error('spawn failed');
    const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));
    // Ending `script` hangs up the terminal, which ends the proxy too.
    onTestFinished(async () => {
      if (isRunning(child)) killByPid(pid);
      await closed;
    });
    let out = '';
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (chunk: Buffer) => {
        out += chunk.toString('utf8');
        if (out.includes('\n')) resolve();
      });
      child.once('close', () => reject(new Error(`script ended before a line: ${out}`)));
    });
    const [line = ''] = out.split('\n');
    expect(isJson(line.trim())).toBe(false);
    expect(line).toContain('listening');
    expect(line).toContain(ANSI);
    child.kill('SIGTERM');
    await closed;
  });
});
