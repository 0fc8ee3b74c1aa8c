/**
 * `lesion-studio <command> [options]`: the Node host of the core. Each
 * command lives in its own module under ./commands and is loaded only when
 * run, so `inspect` does not pay for TensorFlow.js. To add one, write the
 * module (default-export a Command, from ./command.ts) and add a line to COMMANDS.
 */
import { parseArgs } from 'node:util';
import { failureCode } from '../core/errors.ts';
import { EXIT_USAGE, type CliIo, type Command, type Options, type ParsedArgs } from './command.ts';
import { describeFsError, pathProblem, storageFull } from './files.ts';

interface CommandEntry {
  summary: string;
  load(): Promise<{ default: Command }>;
}

const COMMANDS: Record<string, CommandEntry> = {
  inspect: {
    summary: 'recognise the data sets in folders and report pairs, splits and strays',
    load: () => import('./commands/inspect.ts'),
  },
  train: {
    summary: 'run the Noisy Student pipeline (teacher, pseudo-labels, student, student*) headless',
    load: () => import('./commands/train.ts'),
  },
  eval: {
    summary: 'score a model (or masks already written) on labeled data sets with every metric, per set and overall',
    load: () => import('./commands/eval.ts'),
  },
  compare: {
    summary: 'compare two or more models (or seeds of one card per arm) on the same labeled images: paired differences, intervals, p-values',
    load: () => import('./commands/compare.ts'),
  },
  predict: {
    summary: 'write <id>_segmentation.png masks at each image\'s original size, as the ISIC scorer expects',
    load: () => import('./commands/predict.ts'),
  },
  'export-job': {
    summary: 'pack a run card, its split and its starting model as a job for PyTorch on a cluster (torchrun)',
    load: () => import('./commands/export-job.ts'),
  },
  rank: {
    summary: 'rank the unlabeled images of folders for labeling by a trained run\'s acquisition score (the Label view\'s queue)',
    load: () => import('./commands/rank.ts'),
  },
  'fine-tune': {
    summary: 'fine-tune a trained run with new labels and, as a control, without them: what the labels bought, with its interval',
    load: () => import('./commands/fine-tune.ts'),
  },
  'simulate-al': {
    summary: 'simulate active learning on labeled folders: lesion IoU per round, ranked picks against random ones',
    load: () => import('./commands/simulate-al.ts'),
  },
};

const consoleIo: CliIo = {
  out: (text) => process.stdout.write(`${text}\n`),
  err: (text) => process.stderr.write(`${text}\n`),
};

export async function main(argv: string[], io: CliIo = consoleIo): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    (name === undefined ? io.err : io.out)(usage());
    return name === undefined ? EXIT_USAGE : 0;
  }
  const entry = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!entry) {
    io.err(`lesion-studio: unknown command '${name}'\n\n${usage()}`);
    return EXIT_USAGE;
  }
  const command = (await entry.load()).default;
  const refuse = (problem: string): number => {
    io.err(`lesion-studio ${name}: ${problem}\nusage: lesion-studio ${name} ${command.usage}`);
    return EXIT_USAGE;
  };
  const { args: expanded, stray } = gatherValues(rest, command.options);
  if (stray && !command.positionals) return refuse(`unexpected argument '${stray.arg}'${stray.after ? `: ${stray.after}` : ''}`);
  let args: ParsedArgs;
  try {
    args = parseArgs({ args: expanded, options: command.options, allowPositionals: Boolean(command.positionals), strict: true });
  } catch (error) {
    return refuse((error as Error).message);
  }
  for (const [flag, role] of Object.entries(command.paths ?? {})) {
    const value = flag === '' ? args.positionals : args.values[flag];
    for (const path of value === undefined ? [] : [value].flat()) {
      if (typeof path !== 'string') continue;
      const problem = await pathProblem(path, role);
      if (problem) {
        io.err(`lesion-studio ${name}: ${flag === '' ? '' : `--${flag} `}${path}: ${problem}`);
        return EXIT_USAGE;
      }
    }
  }
  try {
    return await command.run(args, io);
  } catch (thrown) {
    const fsError = thrown as NodeJS.ErrnoException;
    const isFsError = typeof fsError.code === 'string' && typeof fsError.path === 'string';
    // Any write the disk refused for room, not only the store's and the products', is the studio's 'storage-full'.
    const error = isFsError ? storageFull(fsError, fsError.path!) : thrown;
    // Failures are classified as the studio's run events classify them (failureCode): a known code names the
    // file and the problem, and so does the file system; anything else is a bug, keep its stack.
    const message = failureCode(error) !== 'internal'
      ? (error as Error).message
      : isFsError
        ? `${fsError.path}: ${describeFsError(fsError)}`
        : (error as Error).stack;
    io.err(`lesion-studio ${name}: ${message}`);
    return 1;
  }
}

/**
 * The usage text says `--data <dir>...`, and a shell glob expands to just
 * that, but parseArgs takes one value per flag: the bare arguments after a
 * flag that takes several values are its values, up to the next flag. Any
 * other bare argument is returned as the first stray, with what came before
 * it, so that it is refused rather than dropped.
 */
function gatherValues(args: string[], options: Options): { args: string[]; stray?: { arg: string; after?: string } } {
  const out: string[] = [];
  let stray: { arg: string; after?: string } | undefined;
  /** The flag whose values the next bare arguments are, if it takes several. */
  let gathering: string | undefined;
  /** What the last flag said about the bare argument after its value. */
  let after: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === '--') {
      // Bare by the user's choice: parseArgs refuses them where the command takes none.
      out.push(...args.slice(i));
      break;
    }
    if (arg.startsWith('-') && arg !== '-') {
      out.push(arg);
      const [flag, inline] = arg.startsWith('--') ? [arg.slice(2).split('=')[0], arg.includes('=')] : [arg.slice(1), false];
      const option = Object.hasOwn(options, flag) ? options[flag] : undefined;
      gathering = option?.type === 'string' && option.multiple ? flag : undefined;
      after = option?.type === 'string' && !option.multiple ? `--${flag} takes one value` : option?.type === 'boolean' ? `--${flag} takes no value` : undefined;
      // Its value, whatever it looks like: parseArgs judges it.
      if (option?.type === 'string' && !inline && i + 1 < args.length) out.push(args[++i]);
      continue;
    }
    if (gathering !== undefined) out.push(`--${gathering}`, arg);
    else {
      out.push(arg);
      stray ??= { arg, ...(after && { after }) };
    }
  }
  return stray ? { args: out, stray } : { args: out };
}

function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((name) => name.length));
  const lines = Object.entries(COMMANDS).map(([name, entry]) => `  ${name.padEnd(width)}  ${entry.summary}`);
  return [
    'usage: lesion-studio <command> [options]',
    '',
    'commands:',
    ...lines,
    '',
    'A flag shown as <dir>... takes several folders, after one flag (--data a b) or repeated (--data a --data b).',
  ].join('\n');
}
