/**
 * `lesion-studio <command> [options]`: the Node host of the core. Each
 * command lives in its own module under ./commands and is loaded only when
 * run, so `inspect` does not pay for TensorFlow.js. To add one, write the
 * module (default-export a Command) and add a line to COMMANDS.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { LesionError } from '../core/errors.ts';

export interface CliIo {
  out(text: string): void;
  err(text: string): void;
}

export interface ParsedArgs {
  positionals: string[];
  values: Record<string, string | boolean | (string | boolean)[] | undefined>;
}

export interface Command {
  /** One line after the command name in the usage text, e.g. '<dir>... [--json]'. */
  usage: string;
  options: NonNullable<ParseArgsConfig['options']>;
  /** Returns the exit code: 0 done, 1 failed, 2 bad usage. */
  run(args: ParsedArgs, io: CliIo): Promise<number>;
}

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
  predict: {
    summary: 'write <id>_segmentation.png masks at each image\'s original size, as the ISIC scorer expects',
    load: () => import('./commands/predict.ts'),
  },
};

export const EXIT_USAGE = 2;

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
  let args: ParsedArgs;
  try {
    args = parseArgs({ args: rest, options: command.options, allowPositionals: true, strict: true });
  } catch (error) {
    io.err(`lesion-studio ${name}: ${(error as Error).message}\nusage: lesion-studio ${name} ${command.usage}`);
    return EXIT_USAGE;
  }
  try {
    return await command.run(args, io);
  } catch (error) {
    // LesionErrors name the file and the problem; anything else is a bug, keep its stack.
    io.err(`lesion-studio ${name}: ${error instanceof LesionError ? error.message : (error as Error).stack}`);
    return 1;
  }
}

function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((name) => name.length));
  const lines = Object.entries(COMMANDS).map(([name, entry]) => `  ${name.padEnd(width)}  ${entry.summary}`);
  return ['usage: lesion-studio <command> [options]', '', 'commands:', ...lines].join('\n');
}
