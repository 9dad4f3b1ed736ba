// Waiting for a box's first process through its pidfd (CLONE_PIDFD), without ever blocking the event
// loop: the process is nsrun's child, so each SIGCHLD is a reason to look, with waitid(WNOHANG).
import * as F from "./flags";
import { close } from "./io";
import { libc } from "./libc";
import { pidfdOpen, pidfdWait } from "./proc";


export interface Exit {
  /** The exit status, or null when a signal ended it. */
  code: number | null;
  signal: number | null;
}

/** The process's exit if it has exited (reaping it, unless `peek`), else null. */
export function exited(pidfd: number, peek = false): Exit | null {
  // siginfo_t: si_signo, si_errno, si_code, then (64-bit) si_pid at 16, si_uid at 20, si_status at 24.
  const info = new Int32Array(32);
  if (libc.waitid(F.P_PIDFD, pidfd, info, F.WEXITED | F.WNOHANG | (peek ? F.WNOWAIT : 0)) < 0) return null;
  if (info[4] === 0) return null; // still running
  return info[2] === F.CLD_EXITED ? { code: info[6], signal: null } : { code: null, signal: info[6] };
}

/** Resolves once the process has exited (and is reaped). */
export function waitExit(pidfd: number): Promise<Exit> {
  return whenExited(() => exited(pidfd));
}

/** Resolves with what `check` returns once it is not null, looking again at each SIGCHLD. */
export function whenExited<T>(check: () => T | null): Promise<T> {
  return new Promise((resolve) => {
    const look = () => {
      const e = check();
      if (!e) return;
      process.off("SIGCHLD", look);
      resolve(e);
    };
    // Listen first, then look: a SIGCHLD that came before the listener is covered by the first look.
    process.on("SIGCHLD", look);
    look();
  });
}

/** The shell's convention: the exit status, or 128 + the signal. */
export function shellStatus(e: Exit): number {
  return e.signal !== null ? 128 + e.signal : (e.code ?? 0);
}

/**
 * Whether any process `pid` (not only a child) is gone, waiting up to `ms` for it: poll(2) on a
 * pidfd is readable once the process has exited. For tests that must see a helper end.
 */
export function goneWithin(pid: number, ms: number): boolean {
  const pidfd = pidfdOpen(pid);
  if (pidfd < 0) return true; // ESRCH: no such process any more
  try {
    return pidfdWait(pidfd, ms);
  } finally {
    close(pidfd);
  }
}
