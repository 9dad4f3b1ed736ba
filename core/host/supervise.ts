// Stage 16, supervise: once the box's command has started, nsrun has nothing left to decide. The
// process the user started execve(2)s into the stub (ffi/executor/stub.c), which keeps its PID and
// its place as the box's parent, passes signals on, cleans up and exits with the box's status, in a
// few hundred kilobytes instead of a JavaScript runtime's tens of megabytes. Everything the stub does
// is decided here, as its command line.
import { errnoName } from "../../ffi/errno";
import { execveFd } from "../../ffi/executor/load";
import { strerror } from "../../ffi/libc";
import type { ErrorReport } from "../errors";
import { EXIT_NSRUN_FAILED } from "../errors";
import type { BoxPlan } from "../stages/plan";
import type { Helper } from "./nat";
import { FORWARDED_SIGNALS, SIGNAL_NUMBERS } from "../stages/signals";

/** The stub's command line for this box (see the option list at the top of stub.c). */
export function supervisorArgs(plan: BoxPlan, pid: number, pending: number[], trace: boolean, terminal: number | null = null, helpers: Helper[] = []): string[] {
  const argv = ["nsrun", "supervise", String(pid)];
  if (terminal !== null) argv.push("-T", String(terminal));
  // Only PID 1 of a PID namespace has signals dropped by the kernel; nsrun's own init handles them all.
  if (!plan.process.init && plan.namespaces.includes("pid")) argv.push("-k");
  // With a terminal, a window size change is the supervisor's to pass on (to the pseudo-terminal).
  for (const sig of FORWARDED_SIGNALS) if (terminal === null || sig !== "SIGWINCH") argv.push("-f", String(SIGNAL_NUMBERS[sig]));
  for (const sig of pending) argv.push("-p", String(sig));
  if (plan.cgroup) {
    // The clean-up, as data: kill what is left in the box's cgroups (innermost first), undo, remove.
    for (const dir of [...plan.cgroup.boxDirs].reverse()) argv.push("-K", dir);
    for (const [file, value] of plan.cgroup.undo) argv.push("-w", file, value);
    for (const dir of [...plan.cgroup.dirs].reverse()) argv.push("-r", dir);
    if (plan.cgroup.oomFile) argv.push("-o", plan.cgroup.oomFile, outOfMemoryMessage(plan.cgroup.memoryText));
  }
  for (const helper of helpers) argv.push("-x", String(helper.pid));
  if (trace) argv.push("-t");
  return argv;
}

export function outOfMemoryMessage(limit: string | null): string {
  return `the box ran out of memory: the kernel's OOM killer ended it at its limit of ${limit}`;
}

/** Become the supervisor. Returns only if execveat(2) failed, with the reason. */
export function handOver(stubFd: number, argv: string[]): ErrorReport {
  const code = execveFd(stubFd, argv, []);
  return { message: `supervise: execveat(nsrun's stub): ${errnoName(code)} (${strerror(code)})`, exitCode: EXIT_NSRUN_FAILED };
}
