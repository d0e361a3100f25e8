/**
 * Just enough Dockerfile and .dockerignore parsing for test/package.test.ts to
 * check the image's contract without a Docker engine: instructions with their
 * continuation lines joined, stages split on FROM, global ARG defaults
 * substituted into FROM, exec-form arrays and RUN command lists.
 */

export interface Instruction {
  /** Upper case: FROM, RUN, COPY… */
  readonly keyword: string;
  readonly args: string;
  /** 1-based line where the instruction starts. */
  readonly line: number;
}

export interface Stage {
  /** The image with global ARG defaults substituted, e.g. `node:22-alpine`. */
  readonly image: string;
  readonly name: string | undefined;
  readonly instructions: readonly Instruction[];
}

export interface Dockerfile {
  /** ARGs declared before the first FROM, with their defaults. */
  readonly globalArgs: Readonly<Record<string, string>>;
  readonly stages: readonly Stage[];
}

function instructionsOf(text: string): Instruction[] {
  const instructions: Instruction[] = [];
  let pending = '';
  let start = 0;
  text.split('\n').forEach((raw, index) => {
    const line = raw.trim();
    // Comments are dropped, inside a continuation too, as Docker does.
    if (line.startsWith('#') || (pending === '' && line === '')) return;
    if (pending === '') start = index + 1;
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1).trim()} `;
      return;
    }
    const full = `${pending}${line}`.trim();
    pending = '';
    const match = /^(\S+)\s*([\s\S]*)$/.exec(full);
    if (match === null) throw new Error(`Dockerfile line ${start}: cannot parse ${JSON.stringify(full)}`);
    instructions.push({ keyword: (match[1] as string).toUpperCase(), args: match[2] as string, line: start });
  });
  if (pending !== '') throw new Error('Dockerfile ends inside a continuation line');
  return instructions;
}

export function parseDockerfile(text: string): Dockerfile {
  const globalArgs: Record<string, string> = {};
  const stages: Array<{ image: string; name: string | undefined; instructions: Instruction[] }> = [];
  for (const instruction of instructionsOf(text)) {
    if (instruction.keyword === 'FROM') {
      const words = instruction.args.split(/\s+/).filter((w) => !w.startsWith('--'));
      const image = (words[0] ?? '').replace(/\$\{(\w+)\}|\$(\w+)/g, (_m, a?: string, b?: string) => globalArgs[(a ?? b) as string] ?? '');
      const name = words[1]?.toUpperCase() === 'AS' ? words[2] : undefined;
      stages.push({ image, name, instructions: [] });
    } else if (stages.length === 0) {
      if (instruction.keyword !== 'ARG') throw new Error(`Dockerfile line ${instruction.line}: ${instruction.keyword} before FROM`);
      const [name, value] = instruction.args.split('=', 2);
      globalArgs[(name as string).trim()] = value?.trim() ?? '';
    } else {
      stages[stages.length - 1]?.instructions.push(instruction);
    }
  }
  return { globalArgs, stages };
}

export function argsOf(stage: Stage, keyword: string): string[] {
  return stage.instructions.filter((i) => i.keyword === keyword).map((i) => i.args);
}

/** `["a", "b"]` → ['a', 'b']; throws on the shell form. */
export function execForm(args: string): string[] {
  const parsed: unknown = JSON.parse(args);
  if (!Array.isArray(parsed) || !parsed.every((a): a is string => typeof a === 'string')) throw new Error(`not an exec-form array: ${args}`);
  return parsed;
}

/** The shell commands of a RUN, split on `&&`, each as words (RUN flags such as --mount removed). */
export function runCommands(args: string): string[][] {
  const words = args.split(/\s+/).filter((w) => w !== '');
  while (words[0]?.startsWith('--') === true) words.shift();
  return words
    .join(' ')
    .split('&&')
    .map((command) => command.trim().split(/\s+/).filter((w) => w !== ''));
}

/**
 * Whether a context path survives .dockerignore. Supports exactly what our
 * file uses: `*` (everything) and top-level names, each optionally negated
 * with `!`; the last matching rule wins.
 */
export function dockerignoreAllows(ignoreText: string, path: string): boolean {
  let allowed = true;
  for (const raw of ignoreText.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const negated = line.startsWith('!');
    const pattern = negated ? line.slice(1) : line;
    if (!/^(\*|[\w.-]+)$/.test(pattern)) throw new Error(`.dockerignore pattern this check does not understand: ${line}`);
    if (pattern === '*' || path === pattern || path.startsWith(`${pattern}/`)) allowed = negated;
  }
  return allowed;
}
