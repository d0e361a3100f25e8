/**
 * Reading a V8 .cpuprofile (what `node --cpu-prof` writes): self time per function, per file or
 * npm package, and per layer (Node core, our dist/, npm packages, GC, V8/native), over a time
 * window. Sample timestamps are microseconds on CLOCK_MONOTONIC, the clock of
 * `process.hrtime.bigint()`, so the bench can cut the window to the measured run and leave
 * start-up, warm-up and shutdown out.
 */
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';

interface CallFrame {
  readonly functionName: string;
  readonly url: string;
  /** 0-based. */
  readonly lineNumber: number;
}

interface ProfileNode {
  readonly id: number;
  readonly callFrame: CallFrame;
}

export interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly startTime: number;
  readonly endTime: number;
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

export interface Entry {
  readonly name: string;
  /** File (or package) and line, for functions. */
  readonly where: string;
  readonly selfUs: number;
}

export interface Breakdown {
  /** Sampled time in the window, idle excluded. */
  readonly busyUs: number;
  readonly idleUs: number;
  readonly samples: number;
  readonly byLayer: readonly Entry[];
  readonly byFile: readonly Entry[];
  readonly byFunction: readonly Entry[];
}

const SPECIAL: Record<string, string> = {
  '(garbage collector)': 'GC',
  '(program)': 'V8 and native, unattributed (program)',
  '(idle)': 'idle',
  '(root)': 'root',
};

/** Where a frame's code lives: the file under the project, the npm package, the node: module, or a special bucket. */
export function fileOf(frame: CallFrame, root: string): { file: string; layer: string } {
  const special = SPECIAL[frame.functionName];
  if (frame.url === '' && special !== undefined) return { file: special, layer: special };
  // writev, writeUtf8String, parse...: C++ called from JavaScript. A sample taken while the
  // thread is in the kernel (a write to the socket) lands here too.
  if (frame.url === '') return { file: '(native functions)', layer: 'native calls from JS (syscalls, encoding)' };
  if (frame.url.startsWith('node:')) return { file: frame.url, layer: 'Node core (node:*)' };
  const path = frame.url.startsWith('file://') ? fileURLToPath(frame.url) : frame.url;
  const nm = path.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const parts = path.slice(nm + '/node_modules/'.length).split('/');
    const pkg = parts[0]?.startsWith('@') === true ? `${parts[0]}/${parts[1] ?? ''}` : (parts[0] ?? '?');
    return { file: `npm: ${pkg}`, layer: 'npm packages' };
  }
  const rel = relative(root, path);
  if (!rel.startsWith('..')) return { file: rel, layer: rel.startsWith('dist/') ? 'metrics-proxy (dist/)' : `project (${rel.split('/')[0] ?? ''})` };
  return { file: path, layer: 'other' };
}

function sorted(map: Map<string, Entry>): Entry[] {
  return [...map.values()].sort((a, b) => b.selfUs - a.selfUs);
}

function add(map: Map<string, Entry>, key: string, name: string, where: string, us: number): void {
  const entry = map.get(key);
  map.set(key, { name, where, selfUs: (entry?.selfUs ?? 0) + us });
}

/**
 * Self time of every sample whose timestamp falls in [fromUs, toUs]; a sample lasts until the
 * next one (the last one: the median interval).
 */
export function breakdown(profile: CpuProfile, root: string, fromUs = -Infinity, toUs = Infinity): Breakdown {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const times: number[] = [];
  let t = profile.startTime;
  for (const delta of profile.timeDeltas) times.push((t += delta));
  const intervals = times.slice(1).map((x, i) => x - (times[i] ?? x));
  const typical = intervals.length === 0 ? 0 : ([...intervals].sort((a, b) => a - b)[intervals.length >> 1] ?? 0);
  const layers = new Map<string, Entry>();
  const files = new Map<string, Entry>();
  const functions = new Map<string, Entry>();
  let busyUs = 0;
  let idleUs = 0;
  let samples = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const at = times[i] ?? 0;
    if (at < fromUs || at > toUs) continue;
    const node = byId.get(profile.samples[i] ?? -1);
    if (node === undefined) continue;
    const us = Math.max(0, (times[i + 1] ?? at + typical) - at);
    samples += 1;
    const frame = node.callFrame;
    if (frame.functionName === '(idle)') {
      idleUs += us;
      continue;
    }
    busyUs += us;
    const { file, layer } = fileOf(frame, root);
    add(layers, layer, layer, '', us);
    add(files, file, file, layer, us);
    const name = frame.functionName === '' ? '(anonymous)' : frame.functionName;
    const where = frame.url === '' ? file : `${file}:${frame.lineNumber + 1}`;
    add(functions, `${name}\u0000${where}`, name, where, us);
  }
  return { busyUs, idleUs, samples, byLayer: sorted(layers), byFile: sorted(files), byFunction: sorted(functions) };
}
