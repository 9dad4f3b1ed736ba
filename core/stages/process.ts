// Stages: become the box's process. Enter the working directory, start a new session, and, last,
// hand over to the stub, which execve(2)s the command with exactly the configured environment.
import { ERRNO } from "../../ffi/errno";
import * as F from "../../ffi/flags";
import { DEFAULT_PATH } from "./config";
import { chdir, closeRange, execveat, fcntl, getcwd, setsid } from "../tape/calls";
import type { Tape } from "../tape/tape";

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
  /** A pseudo-terminal of its own, with this initial size; null: the caller's stdio as they are. */
  terminal: { rows: number; cols: number } | null;
}

/** The box's PATH, the way execvp(3) would search it, but from the box's env, not ours. */
export function searchPath(plan: ProcessPlan): string[] {
  const cmd = plan.args[0];
  if (cmd.includes("/")) return [cmd];
  const path = plan.env.find((e) => e.startsWith("PATH="))?.slice(5) ?? DEFAULT_PATH;
  return path.split(":").map((dir) => `${dir || "."}/${cmd}`);
}

/** Tape: the working directory, checked to be inside the box, then a session of its own. */
export function emitProcess(t: Tape, plan: ProcessPlan): void {
  t.doing(`chdir to ${JSON.stringify(plan.cwd)}`);
  if (plan.cwdFallback) {
    const entered = t.reg("cwd");
    const ok = t.label("cwd_entered");
    chdir(t, plan.cwd, { dst: entered, ok: [ERRNO.ENOENT] });
    t.jumpIf(entered, "GE", 0, ok);
    chdir(t, "/");
    t.place(ok);
  } else {
    chdir(t, plan.cwd);
  }
  // runc's CVE-2024-21626: a cwd reached through a leaked fd lies outside the root, and getcwd then
  // starts with "(unreachable)". Nothing is leaked here, and this makes sure of it.
  const buf = t.slot(4096, "cwd");
  const first = t.reg("first");
  const inside = t.label("cwd_inside");
  getcwd(t, buf, 4096);
  t.load(buf, 1, first);
  t.jumpIf(first, "EQ", "/".charCodeAt(0), inside);
  t.fail(ERRNO.ENOENT, "the working directory is outside the box");
  t.place(inside);
  // A session of its own, so the box cannot reach the caller's terminal (TIOCSTI and the like).
  t.doing("start a new session");
  setsid(t);
}

export interface StubHandOver {
  /** The sealed memfd holding the stub (ffi/executor/load.ts). */
  stubFd: number;
  /** The report pipe, through which the stub says why a command could not start. */
  reportFd: number;
}

/**
 * Tape: only fds 0-2 reach the command. Every other fd is marked close-on-exec, except the report
 * pipe, which the stub needs and closes itself.
 */
export function emitSealFds(t: Tape, reportFd: number | null): void {
  t.doing("mark every fd above 2 close-on-exec");
  closeRange(t, 3, 0xffffffff, F.CLOSE_RANGE_CLOEXEC);
  if (reportFd !== null) fcntl(t, reportFd, F.F_SETFD, 0, "F_SETFD, 0");
}

/**
 * Tape: the last op, execveat(2) of the stub, which execs the command (or, with init = true, stays
 * PID 1 and runs it). The box's command never starts from a process whose /proc/self/exe is the
 * nsrun file (see stub.c).
 */
export function emitExec(t: Tape, plan: ProcessPlan, fds: StubHandOver): void {
  t.doing(`start ${JSON.stringify(plan.args[0])}`);
  const paths = searchPath(plan);
  const argv = ["nsrun", plan.init ? "init" : "exec", String(fds.reportFd), String(paths.length), ...paths, "--", ...plan.args];
  t.expects.execFailed = true;
  t.command = { args: plan.args, paths };
  execveat(t, fds.stubFd, argv, plan.env);
}

/**
 * Tape, sealed (core/launch/): the process already runs in the stub, so the tape execs the command
 * itself, trying the paths as execvp(3) would (NSRUN_OP_EXEC). Nothing but execve(2) runs between
 * the seccomp filter and the command. init = true is for nsrun's own boxes (the stub as PID 1).
 */
export function emitExecSealed(t: Tape, plan: ProcessPlan, reportFd: number): void {
  if (plan.init) throw new Error("compile: init = true needs the stub as PID 1: a box, not a sealed launch");
  t.doing(`start ${JSON.stringify(plan.args[0])}`);
  t.execCandidates(reportFd, searchPath(plan), plan.args, plan.env);
}
