// Stage: become the box's process. Enter the working directory, drop to the configured user,
// hand over only fds 0-2, and execve(2) the command with exactly the configured environment.
import { accessSync, constants, statSync } from "node:fs";
import { SyscallError } from "../ffi/libc";
import type { Sys } from "../ffi/sys";
import { DEFAULT_PATH } from "./config";
import { during, EXIT_CANNOT_EXECUTE, EXIT_NOT_FOUND, StageError } from "./errors";

export interface ProcessPlan {
  args: string[];
  cwd: string;
  /** The default box uses the caller's cwd "when it exists inside"; otherwise "/". */
  cwdFallback: boolean;
  /** "NAME=value" strings: the whole environment, nothing inherited. */
  env: string[];
  uid: number;
  gid: number;
  /** setgroups(2) is allowed (no user namespace, or one whose setgroups is not "deny"). */
  setgroups: boolean;
  /** A small init is PID 1 and the command its child. */
  init: boolean;
}

const ENOENT = 2;

export function enterCwd(sys: Sys, plan: ProcessPlan): void {
  during("process", `chdir to ${JSON.stringify(plan.cwd)}`, () => {
    try {
      sys.chdir(plan.cwd);
    } catch (e) {
      if (!plan.cwdFallback || !(e instanceof SyscallError && e.errno === ENOENT)) throw e;
      sys.chdir("/");
    }
    // runc's CVE-2024-21626: a leaked fd could leave the cwd outside the root; getcwd then says "(unreachable)".
    const cwd = sys.getcwd();
    if (!cwd.startsWith("/")) throw new StageError("process", `the working directory is outside the box (${cwd})`);
  });
}

/** A session of its own, so the box cannot reach the caller's terminal (TIOCSTI and the like). */
export function newSession(sys: Sys): void {
  during("process", "start a new session", () => sys.setsid());
}

export function dropPrivileges(sys: Sys, plan: ProcessPlan): void {
  during("process", `switch to user ${plan.uid}:${plan.gid}`, () => {
    // Group first: after setresuid to a non-root uid we could no longer change groups.
    if (plan.setgroups) sys.setgroups([]);
    sys.setresgid(plan.gid);
    sys.setresuid(plan.uid);
  });
}

/** The box's PATH, the way execvp(3) would search it, but from the box's env, not ours. */
export function searchPath(plan: ProcessPlan): string[] {
  const cmd = plan.args[0];
  if (cmd.includes("/")) return [cmd];
  const path = plan.env.find((e) => e.startsWith("PATH="))?.slice(5) ?? DEFAULT_PATH;
  return path.split(":").map((dir) => `${dir || "."}/${cmd}`);
}

/** execve the command; returns never. A failure is a StageError with 126 or 127, as podman exits. */
export function execCommand(sys: Sys, plan: ProcessPlan): never {
  // Bun ignores SIGPIPE and SIGXFSZ, and ignored signals survive execve: the command must start
  // with default dispositions, or `yes | head -1` complains and a file-size limit never kills.
  sys.resetIgnoredSignals();
  let denied: SyscallError | null = null;
  for (const candidate of searchPath(plan)) {
    try {
      sys.execve(candidate, plan.args, plan.env);
    } catch (e) {
      if (!(e instanceof SyscallError)) throw e;
      if (e.errnoName === "ENOENT" || e.errnoName === "ENOTDIR") continue;
      if (e.errnoName === "EACCES") {
        denied ??= e;
        continue;
      }
      throw new StageError("exec", `${JSON.stringify(plan.args[0])}: ${e.message}`, undefined, EXIT_CANNOT_EXECUTE);
    }
  }
  if (denied) throw new StageError("exec", `${JSON.stringify(plan.args[0])}: permission denied`, undefined, EXIT_CANNOT_EXECUTE);
  throw new StageError("exec", `${JSON.stringify(plan.args[0])}: command not found in the box`, undefined, EXIT_NOT_FOUND);
}

/** For the init stage, which starts the command with Bun.spawn: the path execve would have run. */
export function resolveCommand(plan: ProcessPlan): string {
  let sawDenied = false;
  for (const candidate of searchPath(plan)) {
    try {
      if (!statSync(candidate).isFile()) continue;
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "EACCES") sawDenied = true;
    }
  }
  if (sawDenied) throw new StageError("exec", `${JSON.stringify(plan.args[0])}: permission denied`, undefined, EXIT_CANNOT_EXECUTE);
  throw new StageError("exec", `${JSON.stringify(plan.args[0])}: command not found in the box`, undefined, EXIT_NOT_FOUND);
}

/** Only 0, 1 and 2 reach the command: everything above, Bun's own fds included, closes at execve. */
export function sealFds(sys: Sys): void {
  for (const fd of [0, 1, 2]) sys.clearNonblock(fd);
  sys.closeRangeCloexec(3);
}

