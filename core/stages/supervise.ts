// The namespace stage, after the unshare: start the init stage as the first process of the new
// PID namespace, relay its setup error (if any) to the user, pass signals on, and exit with the
// box's status. This is the one nsrun process that stays while the box runs.
import { readFileSync } from "node:fs";
import { constants } from "node:os";
import { readAll, pipe, writeAll } from "../../ffi/io";
import { type EarlyFailure } from "../../ffi/early";
import { hintFor } from "../../ffi/hints";
import { libc, SyscallError } from "../../ffi/libc";
import { EXIT_NSRUN_FAILED, type ErrorReport, formatReport, toReport } from "../errors";
import type { BoxPlan } from "../plan";
import { deliveryFor, FORWARDED_SIGNALS, type ForwardedSignal, SIGNAL_NUMBERS } from "../signals";
import { selfCommand, STAGE_ARG, tracerFor } from "./self";

/** The fds the init stage finds its plan on, and writes a setup error to. */
export const INIT_PLAN_FD = 3;
export const INIT_ERROR_FD = 4;

export async function supervise(plan: BoxPlan, failure: EarlyFailure | null, done: string[]): Promise<never> {
  const trace = tracerFor("ns", plan.trace);
  for (const line of done) trace?.(line);
  if (failure) {
    const err = new SyscallError(failure.syscall, failure.call, failure.errno, hintFor(failure.syscall, failure.errno));
    trace?.(`${failure.call} = -1 ${err.errnoName}`);
    return fail(toReport(err, failure.syscall === "unshare" ? "namespaces" : "userns"));
  }

  const [planRead, planWrite] = pipe(true);
  const [errRead, errWrite] = pipe(true);
  let pid1: ReturnType<typeof Bun.spawn> | null = null;
  let killedBy: number | null = null;
  const early: ForwardedSignal[] = [];
  const deliver = (sig: ForwardedSignal) => {
    if (!pid1) return void early.push(sig);
    let status: string | null = null;
    if (!plan.process.init) {
      try {
        status = readFileSync(`/proc/${pid1.pid}/status`, "utf8");
      } catch {
        return; // already gone
      }
    }
    if (deliveryFor(sig, status) === "kill") {
      killedBy ??= SIGNAL_NUMBERS[sig];
      pid1.kill("SIGKILL");
    } else {
      pid1.kill(sig);
    }
  };
  for (const sig of FORWARDED_SIGNALS) process.on(sig, () => deliver(sig));

  try {
    // Started from this (the main) thread: the init stage's PR_SET_PDEATHSIG fires when it exits.
    pid1 = Bun.spawn([...selfCommand(), STAGE_ARG, "init"], {
      stdio: ["inherit", "inherit", "inherit", planRead, errWrite],
      env: {},
    });
  } catch (e) {
    return fail(toReport(e, "spawn init"));
  } finally {
    libc.close(planRead);
    libc.close(errWrite);
  }
  trace?.(`spawn init stage = pid ${pid1.pid}`);
  writeAll(planWrite, Buffer.from(JSON.stringify(plan)));
  libc.close(planWrite);

  // Blocks until the init stage execs the command (the pipe closes on exec) or reports a failure.
  const reportBytes = readAll(errRead);
  libc.close(errRead);
  if (reportBytes.length) {
    const report = JSON.parse(reportBytes.toString()) as ErrorReport;
    await pid1.exited;
    return fail(report);
  }
  for (const sig of early.splice(0)) deliver(sig);

  const code = await pid1.exited;
  if (killedBy !== null) process.exit(128 + killedBy);
  if (pid1.signalCode) process.exit(128 + (constants.signals[pid1.signalCode as keyof typeof constants.signals] ?? 0));
  process.exit(code);
}

function fail(report: ErrorReport): never {
  process.stderr.write(formatReport(report));
  process.exit(report.exitCode ?? EXIT_NSRUN_FAILED);
}
