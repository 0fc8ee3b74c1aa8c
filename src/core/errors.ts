/**
 * Typed errors: every failure that concerns a user's file names that file and
 * the problem, so a run can skip it, report it and go on.
 */
export type LesionErrorCode =
  | 'decode'
  | 'empty-file'
  | 'unsupported-format'
  | 'read'
  | 'config'
  | 'model'
  | 'dataset'
  | 'diverged'
  | 'storage'
  /** The host's storage refused a write for lack of space: freeing space and resuming helps. */
  | 'storage-full';

/**
 * Why a run failed, as its `run` event says (src/core/events.ts): a
 * LesionError's code; 'device-lost' when the GPU went away too often or the
 * run could not start again after it; 'internal' for anything else (a bug).
 */
export type FailureCode = LesionErrorCode | 'device-lost' | 'internal';

export function failureCode(error: unknown): FailureCode {
  return error instanceof LesionError ? error.code : 'internal';
}

export class LesionError extends Error {
  constructor(
    readonly code: LesionErrorCode,
    message: string,
    readonly file?: string,
  ) {
    super(file ? `${file}: ${message}` : message);
    this.name = 'LesionError';
  }
}

export class DecodeError extends LesionError {
  constructor(file: string, problem: string, code: LesionErrorCode = 'decode') {
    super(code, problem, file);
    this.name = 'DecodeError';
  }
}

export class ConfigError extends LesionError {
  constructor(
    readonly field: string,
    problem: string,
  ) {
    super('config', `${field}: ${problem}`);
    this.name = 'ConfigError';
  }
}
