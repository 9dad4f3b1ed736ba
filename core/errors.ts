import { NsrunError } from "../ffi/error";
import { writeAll } from "../ffi/io";

// Errors meant for users. Each one already says everything the user needs: what, where, and what to do.
// They are printed once, by the process the user started, in at most two lines. All extend
// NsrunError (ffi/error.ts), which carries the step, errno and hint.

/** Exit statuses, the same as podman's and docker's. */
export const EXIT_NSRUN_FAILED = 125;
export const EXIT_CANNOT_EXECUTE = 126;
export const EXIT_NOT_FOUND = 127;

export class ConfigError extends NsrunError {
  readonly exitCode = EXIT_NSRUN_FAILED;
  constructor(
    readonly file: string,
    readonly key: string | null,
    readonly problem: string,
  ) {
    super(`${file}: ${key ? `${key}: ` : ""}${problem}`);
    this.name = "ConfigError";
  }
}

/** A setup step failed. `stage` names the algorithm's stage ("mounts", "pivot_root", ...). */
export class StageError extends NsrunError {
  constructor(
    readonly stage: string,
    message: string,
    readonly hint?: string,
    readonly exitCode = EXIT_NSRUN_FAILED,
  ) {
    super(message, { step: stage });
    this.name = "StageError";
  }
}

/** An error as nsrun prints it: the message, a hint, and the exit status. */
export interface ErrorReport {
  message: string;
  hint?: string;
  exitCode: number;
}

/** An error as a report; `stage` is what was going on, unless the error names its own step. */
export function toReport(e: unknown, stage: string): ErrorReport {
  if (e instanceof NsrunError) return { message: `${e.step ?? stage}: ${e.message}`, hint: e.hint, exitCode: e.exitCode };
  const err = e as { message?: string; hint?: string; stack?: string };
  const hint = typeof err.hint === "string" ? err.hint : undefined;
  return { message: `${stage}: ${err.message ?? String(e)}`, hint, exitCode: EXIT_NSRUN_FAILED };
}

export function formatReport(r: ErrorReport): string {
  return `nsrun: ${r.message}${r.hint ? `\n  hint: ${r.hint}` : ""}\n`;
}

/** Write to stderr. A closed stderr (EPIPE) is not nsrun's failure: the text is dropped, never a stack trace. */
export function writeStderr(text: string): void {
  try {
    writeAll(2, new TextEncoder().encode(text));
  } catch {
    // nobody is reading
  }
}

/** Report and exit (125 unless said otherwise): the one way nsrun's command line fails. */
export function fail(message: string, hint?: string, exitCode = EXIT_NSRUN_FAILED): never {
  writeStderr(formatReport({ message, hint, exitCode }));
  process.exit(exitCode);
}
