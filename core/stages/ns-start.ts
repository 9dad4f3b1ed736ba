// The namespace stage, after its unshare: start the init stage as PID 1 of the new PID namespace,
// tell the host its PID, and exit at once (see ns.ts for why this process must not linger).
import { writeSync } from "node:fs";
import { hintFor } from "../../ffi/hints";
import { pipe, writeAll } from "../../ffi/io";
import { libc, SyscallError } from "../../ffi/libc";
import { EXIT_NSRUN_FAILED, toReport } from "../errors";
import type { BoxPlan } from "../plan";
import { FD } from "./fds";
import type { StageFailure } from "./ns";
import { selfCommand, STAGE_ARG, tracerFor } from "./self";

export function startInit(plan: BoxPlan, failure: StageFailure | null, done: string[]): never {
  const trace = tracerFor("ns", plan.trace);
  for (const line of done) trace?.(line);
  if (failure) {
    const err = new SyscallError(failure.syscall, failure.call, failure.errno, hintFor(failure.syscall, failure.errno));
    trace?.(`${failure.call} = -1 ${err.errnoName}`);
    return exitWith(toReport(err, failure.stage));
  }
  const [planRead, planWrite] = pipe(true);
  let pid: number;
  try {
    // The first process started after unshare(CLONE_NEWPID) is PID 1 of the new namespace.
    pid = Bun.spawn([...selfCommand(), STAGE_ARG, "init"], {
      stdio: ["inherit", "inherit", "inherit", planRead, FD.error, null, FD.go],
      env: {},
    }).pid;
  } catch (e) {
    return exitWith(toReport(e, "spawn init"));
  }
  trace?.(`spawn init stage = pid ${pid}`);
  writeAll(planWrite, Buffer.from(JSON.stringify(plan)));
  writeSync(FD.pid, `${pid}\n`);
  // _exit, not process.exit: no shutdown work that might want a thread.
  libc._exit(0);
  throw new Error("unreachable");
}

function exitWith(report: ReturnType<typeof toReport>): never {
  writeAll(FD.error, Buffer.from(JSON.stringify(report)));
  libc._exit(report.exitCode ?? EXIT_NSRUN_FAILED);
  throw new Error("unreachable");
}
