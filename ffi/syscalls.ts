// Syscall numbers: the one table per architecture (syscalls-x86_64.ts, syscalls-arm64.ts), used by
// every raw syscall nsrun makes: ffi/'s wrappers (SYS, for this machine), the tapes (syscallNumbers,
// for the tape's architecture), the seccomp compiler, and the C executor and stub, whose
// out/syscalls.h ffi/executor/build.ts writes from these tables. No number is written anywhere else
// (test/layout.test.ts checks core/ and cmd/).
import { FFI_CALLS_ARM64, otherSyscallsArm64 } from "./syscalls-arm64";
import { FFI_CALLS_X86_64, otherSyscallsX86_64 } from "./syscalls-x86_64";

type Whole<Calls, Others> = Readonly<Record<string, number>> & Calls & Others;
type WholeX86_64 = Whole<typeof FFI_CALLS_X86_64, ReturnType<typeof otherSyscallsX86_64>>;
type WholeArm64 = Whole<typeof FFI_CALLS_ARM64, ReturnType<typeof otherSyscallsArm64>>;

/** A syscall both architectures have. */
export type SyscallName = keyof WholeX86_64 & keyof WholeArm64;

const whole: { x64?: WholeX86_64; arm64?: WholeArm64 } = {};

/**
 * The whole table for `arch` (process.arch), made on first use. By name; a name the table lacks
 * is undefined (seccomp profiles name calls of other kernels).
 */
export function syscallTable(arch: NodeJS.Architecture = process.arch): Readonly<Record<SyscallName, number>> & Readonly<Record<string, number>> {
  if (arch === "arm64") return (whole.arm64 ??= Object.assign({}, FFI_CALLS_ARM64, otherSyscallsArm64()));
  if (arch === "x64") return (whole.x64 ??= Object.assign({}, FFI_CALLS_X86_64, otherSyscallsX86_64()));
  throw new Error(`nsrun runs on x86-64 and arm64, not ${arch}`);
}

/** A call ffi/'s own wrappers make (the same names on both architectures). */
export type FfiSyscall = keyof typeof FFI_CALLS_X86_64 & keyof typeof FFI_CALLS_ARM64;

/** This machine's numbers of the calls ffi/ makes; on another architecture, any use throws. */
export const SYS: Readonly<Record<FfiSyscall, number>> =
  process.arch === "x64"
    ? FFI_CALLS_X86_64
    : process.arch === "arm64"
      ? FFI_CALLS_ARM64
      : (new Proxy({}, { get: () => syscallTable() }) as Record<FfiSyscall, number>);

const TAPE_SYSCALLS = [
  "read", "write", "close", "ppoll", "ioctl", "socket", "clone", "fcntl", "getcwd", "chdir", "fchdir", "setsid",
  "setgroups", "setresuid", "setresgid", "capset", "prctl", "pivot_root", "mount", "umount2", "sethostname",
  "exit_group", "openat", "mkdirat", "symlinkat", "unshare", "dup3", "prlimit64", "setns", "seccomp", "execveat",
  "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "close_range", "openat2", "mount_setattr", "sendmsg",
  "fchownat", "fchmodat", "setxattr", "rt_sigprocmask", "waitid", "pidfd_send_signal", "mknodat",
] as const satisfies readonly SyscallName[];

export type TapeSyscall = (typeof TAPE_SYSCALLS)[number];

/** The numbers of the syscalls a tape makes, for `arch` (process.arch). */
export function syscallNumbers(arch: NodeJS.Architecture = process.arch): Record<TapeSyscall, number> {
  const table = syscallTable(arch);
  return Object.fromEntries(TAPE_SYSCALLS.map((n) => [n, table[n]])) as Record<TapeSyscall, number>;
}
