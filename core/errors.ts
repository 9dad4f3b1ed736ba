// Errors meant for users. Each one already says everything the user needs: what, where, and what to do.
// They are printed once, by the process the user started, in at most two lines.

/** Exit statuses, the same as podman's and docker's. */
export const EXIT_NSRUN_FAILED = 125;
export const EXIT_CANNOT_EXECUTE = 126;
export const EXIT_NOT_FOUND = 127;

export class ConfigError extends Error {
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
export class StageError extends Error {
  constructor(
    readonly stage: string,
    message: string,
    readonly hint?: string,
    readonly exitCode = EXIT_NSRUN_FAILED,
  ) {
    super(message);
    this.name = "StageError";
  }
}

/** An error as nsrun prints it: the message, a hint, and the exit status. */
export interface ErrorReport {
  message: string;
  hint?: string;
  exitCode: number;
}

export function toReport(e: unknown, stage: string): ErrorReport {
  if (e instanceof StageError) return { message: `${e.stage}: ${e.message}`, hint: e.hint, exitCode: e.exitCode };
  const err = e as { message?: string; hint?: string; stack?: string };
  const hint = typeof err.hint === "string" ? err.hint : undefined;
  return { message: `${stage}: ${err.message ?? String(e)}`, hint, exitCode: EXIT_NSRUN_FAILED };
}

export function formatReport(r: ErrorReport): string {
  return `nsrun: ${r.message}${r.hint ? `\n  hint: ${r.hint}` : ""}\n`;
}
