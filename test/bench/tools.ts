/** Finding an installed tool the bench drives (wrk, Caddy, nginx) and the version it reports. */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

export interface ToolBinary {
  readonly path: string;
  readonly version: string;
}

/**
 * The first of `candidates` that exists, with the version `describe` reads from the output of
 * `path ...versionArgs` (stdout and stderr together: tools disagree on where they print it).
 */
export function findTool(
  name: string,
  candidates: readonly string[],
  versionArgs: readonly string[],
  describe: (output: string) => string,
): ToolBinary | undefined {
  const path = candidates.find((p) => existsSync(p));
  if (path === undefined) return undefined;
  const result = spawnSync(path, versionArgs, { encoding: 'utf8' });
  const version = describe(`${result.stdout ?? ''}${result.stderr ?? ''}`.trim());
  return { path, version: version === '' ? `${name} (version unknown)` : version };
}
