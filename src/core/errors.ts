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
  | 'storage';

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
