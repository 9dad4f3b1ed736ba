// The numbers of the syscalls a tape makes, for this machine's architecture. x86-64 takes them from
// the full table (which the seccomp compiler also uses); arm64 uses the generic table
// (<asm-generic/unistd.h>), where a few old calls are missing and ppoll stands in for poll.
import { SYSCALLS_X86_64 } from "./syscalls-x86_64";

const TAPE_SYSCALLS = [
  "read", "write", "close", "ppoll", "ioctl", "socket", "clone", "fcntl", "getcwd", "chdir", "fchdir", "setsid",
  "setgroups", "setresuid", "setresgid", "capset", "prctl", "pivot_root", "mount", "umount2", "sethostname",
  "exit_group", "openat", "mkdirat", "symlinkat", "unshare", "dup3", "prlimit64", "setns", "seccomp", "execveat",
  "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "close_range", "openat2", "mount_setattr", "sendmsg",
  "fchownat", "fchmodat", "setxattr", "rt_sigprocmask", "waitid", "pidfd_send_signal", "mknodat",
] as const;

export type TapeSyscall = (typeof TAPE_SYSCALLS)[number];

const ARM64: Record<TapeSyscall, number> = {
  read: 63, write: 64, close: 57, ppoll: 73, ioctl: 29, socket: 198, clone: 220, fcntl: 25, getcwd: 17, chdir: 49,
  fchdir: 50, setsid: 157, setgroups: 159, setresuid: 147, setresgid: 149, capset: 91, prctl: 167, pivot_root: 41,
  mount: 40, umount2: 39, sethostname: 161, exit_group: 94, openat: 56, mkdirat: 34, symlinkat: 36, unshare: 97,
  dup3: 24, prlimit64: 261, setns: 268, seccomp: 277, execveat: 281, open_tree: 428, move_mount: 429, fsopen: 430,
  fsconfig: 431, fsmount: 432, close_range: 436, openat2: 437, mount_setattr: 442, sendmsg: 211,
  fchownat: 54, fchmodat: 53, setxattr: 5, rt_sigprocmask: 135, waitid: 95, pidfd_send_signal: 424, mknodat: 33,
};

/** Syscall numbers for `arch` (process.arch), by name. */
export function syscallNumbers(arch: NodeJS.Architecture = process.arch): Record<TapeSyscall, number> {
  if (arch === "arm64") return ARM64;
  if (arch !== "x64") throw new Error(`nsrun runs on x86-64 and arm64, not ${arch}`);
  return Object.fromEntries(TAPE_SYSCALLS.map((n) => [n, SYSCALLS_X86_64[n]])) as Record<TapeSyscall, number>;
}
