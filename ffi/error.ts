// The root of nsrun's errors. Every error nsrun throws on purpose extends it (SyscallError, ConfigError,
// StageError, the OCI and image errors, ...), so a caller tells nsrun's own errors, written for the
// user, from a bug, and finds the step, errno and hint where the error has them. It lives in ffi/,
// the lowest layer, because ffi/'s own errors extend it too.
export class NsrunError extends Error {
  /** The step that failed: a stage of the algorithm ("mounts") or a command's ("image"), when known. */
  readonly step?: string;
  /** The errno of the failed call, when a syscall failed. */
  readonly errno?: number;
  /** What to do about it: one sentence, naming the config key when a key caused it. */
  readonly hint?: string;
  /** The exit status the command line ends with (125: nsrun failed). */
  readonly exitCode: number = 125;

  constructor(message: string, o: { step?: string; errno?: number; hint?: string; exitCode?: number } = {}) {
    super(message);
    this.name = "NsrunError";
    if (o.step !== undefined) this.step = o.step;
    if (o.errno !== undefined) this.errno = o.errno;
    if (o.hint !== undefined) this.hint = o.hint;
    if (o.exitCode !== undefined) this.exitCode = o.exitCode;
  }
}
