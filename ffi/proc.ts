// Processes, from the host side: signals by PID and by pidfd, the subreaper bit, and an exit that
// runs no atexit handler.
import * as F from "./flags";
import { ERRNO } from "./errno";
import { check, errno, libc } from "./libc";
import { SYS } from "./syscalls";

/** kill(2): true when the signal was sent (false: no such process, or not ours to signal). */
export function kill(pid: number, sig: number): boolean {
  return libc.kill(pid, sig) === 0;
}

/** Whether a process `pid` exists (kill(pid, 0); EPERM means it exists but is not ours). */
export function processExists(pid: number): boolean {
  return libc.kill(pid, 0) === 0 || errno() !== ERRNO.ESRCH;
}

/** pidfd_open(2), or -1 when the process is gone. */
export function pidfdOpen(pid: number): number {
  return Number(libc.syscall(SYS.pidfd_open, pid, 0, 0, 0, 0, 0));
}

/** pidfd_send_signal(2): 0, or -errno. */
export function pidfdSignal(pidfd: number, sig: number): number {
  return Number(libc.syscall(SYS.pidfd_send_signal, pidfd, sig, 0, 0, 0, 0)) === 0 ? 0 : -errno();
}

/** Wait until the process behind a pidfd has exited (the pidfd is readable), at most `ms`. */
export function pidfdWait(pidfd: number, ms: number): boolean {
  const pfd = new Int32Array([pidfd, F.POLLIN]);
  return libc.poll(pfd, 1, ms) > 0;
}

/** Become a child subreaper: orphans below us (the process `exec` forks) are reparented to us. */
export function becomeSubreaper(): void {
  check("prctl", libc.prctl(F.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "prctl(PR_SET_CHILD_SUBREAPER)");
}

/** exit_group(2) without atexit handlers: a created container still runs on memory it shares with this process. */
export function exitNow(code: number): never {
  libc.syscall(SYS.exit_group, code, 0, 0, 0, 0, 0);
  throw new Error("exit_group returned");
}
