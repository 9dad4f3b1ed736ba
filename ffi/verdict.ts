// The calls the verdict needs (core/verdict.ts, core/host/report.ts): the monotonic clock the stub
// also reads, and waitid(2) with the rusage the kernel keeps for a child (the raw syscall: glibc's
// waitid has no rusage argument). Both through libc's one bound symbol, syscall(2): nothing more is
// bound on a box's start.
import { ptr as addressOf } from "bun:ffi";
import { libc } from "./libc";
import { CLD_EXITED, P_PIDFD, WEXITED, WNOHANG } from "./flags";
import { SYS } from "./syscalls";
import { whenExited } from "./wait";

export const CLOCK_MONOTONIC = 1;

/** CLOCK_MONOTONIC in nanoseconds: the clock the stub's --start and deadlines use. */
export function monotonicNs(): bigint {
  const t = new BigInt64Array(2);
  libc.syscall(SYS.clock_gettime, CLOCK_MONOTONIC, t);
  return t[0] * 1_000_000_000n + t[1];
}

export interface Usage {
  userNs: bigint;
  systemNs: bigint;
  /** ru_maxrss in bytes: the largest peak resident size among the process and the children it waited for. */
  maxRssBytes: number;
}

export interface ExitWithUsage {
  code: number | null;
  signal: number | null;
  usage: Usage;
}

/** The child's exit and its rusage, reaping it; null while it runs. */
export function exitedWithUsage(pidfd: number): ExitWithUsage | null {
  const info = new Int32Array(32);
  const ru = new BigInt64Array(18);
  const ret = Number(libc.syscall(SYS.waitid, P_PIDFD, pidfd, addressOf(info) as unknown as number, WEXITED | WNOHANG, addressOf(ru) as unknown as number, 0));
  if (ret < 0 || info[4] === 0) return null; // still running (si_pid 0), or not ours to wait for
  const usage = { userNs: ru[0] * 1_000_000_000n + ru[1] * 1000n, systemNs: ru[2] * 1_000_000_000n + ru[3] * 1000n, maxRssBytes: Number(ru[4]) * 1024 };
  return info[2] === CLD_EXITED ? { code: info[6], signal: null, usage } : { code: null, signal: info[6], usage };
}

/** Resolves once the child has exited (reaped), with its rusage; looks at each SIGCHLD, as ffi/wait.ts does. */
export function waitExitWithUsage(pidfd: number): Promise<ExitWithUsage> {
  return whenExited(() => exitedWithUsage(pidfd));
}
