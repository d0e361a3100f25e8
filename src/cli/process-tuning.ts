/**
 * What every process of ours starts with, beyond Node's defaults: two V8 heap flags and one
 * setting of glibc's allocator. All three must be in place when the process starts (V8 sizes its
 * heap at start-up, glibc reads its tunables before main), so the bin's #! line gives them
 * (bin/metrics-proxy.js says why each), and the cluster's primary gives them to every worker
 * whether or not it was started with them itself. A value the user gave wins: on the command
 * line for V8's, and for glibc's through GLIBC_TUNABLES, which takes precedence over the variable.
 */

export const HEAP_SIZING_FLAG = '--initial-old-space-size=64';
export const YOUNG_GENERATION_FLAG = '--max-semi-space-size=4';

/**
 * glibc keeps up to this many bytes of freed memory at the top of its heap instead of handing
 * them back to the kernel (its default is 128 KiB). Request bodies pass through as 64 KiB buffers
 * that V8 frees in batches; with the default, every batch went back to the kernel and was faulted
 * in again: 18-180 page faults per 1 MiB upload, about a quarter of its CPU on the bench machine
 * (docs/performance.md, "The allocator"). Other C libraries ignore the variable.
 */
export const ALLOCATOR_TRIM_VARIABLE = 'MALLOC_TRIM_THRESHOLD_';
export const ALLOCATOR_TRIM_BYTES = '33554432';

/** Whether `execArgv` sets V8's option `name` itself (dashes or underscores, `=value` or a separate value). */
function setsV8Option(execArgv: readonly string[], name: string): boolean {
  const pattern = new RegExp(`^--${name.replace(/-/g, '[-_]')}(=|$)`);
  return execArgv.some((arg) => pattern.test(arg));
}

/** `execArgv` plus each heap flag it does not set itself: a size on the primary's command line wins. */
export function withHeapSizing(execArgv: readonly string[]): string[] {
  const flags = [...execArgv];
  if (!setsV8Option(execArgv, 'initial-old-space-size')) flags.push(HEAP_SIZING_FLAG);
  if (!setsV8Option(execArgv, 'max-semi-space-size')) flags.push(YOUNG_GENERATION_FLAG);
  return flags;
}

/** What a worker's environment needs on top of `env` for the allocator setting: nothing when `env` chooses a trim threshold itself. */
export function allocatorTuning(env: NodeJS.ProcessEnv): Record<string, string> {
  const chosen = env[ALLOCATOR_TRIM_VARIABLE] !== undefined || (env.GLIBC_TUNABLES ?? '').includes('glibc.malloc.trim_threshold');
  return chosen ? {} : { [ALLOCATOR_TRIM_VARIABLE]: ALLOCATOR_TRIM_BYTES };
}
