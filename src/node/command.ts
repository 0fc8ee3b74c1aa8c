/**
 * What every CLI command is and how it talks: the Command shape the
 * dispatcher in cli.ts runs, the output it writes through, and the usage
 * exit code. Commands import this module, never cli.ts or one another.
 */
import type { ParseArgsConfig } from 'node:util';
import { ConfigError } from '../core/errors.ts';

export interface CliIo {
  out(text: string): void;
  err(text: string): void;
}

export interface ParsedArgs {
  positionals: string[];
  values: Record<string, string | boolean | (string | boolean)[] | undefined>;
}

export type Options = NonNullable<ParseArgsConfig['options']>;

/**
 * What a flag's value names on disk: a folder or a file that must exist
 * (read), or a folder or a file that will be written (it may not exist yet,
 * but what does exist on the way must be a writable folder).
 */
export type PathRole = 'folder' | 'file' | 'out-folder' | 'out-file';

export interface Command {
  /** One line after the command name in the usage text, e.g. '<dir>... [--json]'. */
  usage: string;
  options: Options;
  /** Whether the command's operands are bare arguments (inspect's folders); the others refuse any. */
  positionals?: boolean;
  /**
   * The flags (and, as '', the bare arguments) that name paths: cli.ts
   * checks each before the command runs, so a mistyped path is one line
   * naming it and the problem, exit 2, before any work is done.
   */
  paths?: Record<string, PathRole>;
  /** Returns the exit code: 0 done, 1 failed, 2 bad usage. */
  run(args: ParsedArgs, io: CliIo): Promise<number>;
}

export const EXIT_USAGE = 2;

/** A `multiple` flag's values, none when it was not given. */
export const listOf = (v: unknown): string[] => (v === undefined ? [] : (v as string[]));

/** A flag's whole number from 1, or `fallback` when it is absent; a ConfigError naming the flag otherwise. */
export function positiveFlag(value: unknown, flag: string, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new ConfigError(flag, `must be a whole number from 1, got '${String(value)}'`);
  return n;
}
