// Running a planned box: its cgroup, the watch for signals during setup, the start (start.ts), and
// the hand-over to the supervisor (supervise.ts), which keeps nsrun's PID. The plan comes from
// planning (core/host/run.ts) or from a start record (core/host/startrecord.ts); this file and what
// it loads for a box without a cgroup, a network helper or a report read no file through node:fs,
// which alone costs about a millisecond of a cached box's start (test/layout.test.ts checks).
import { loadExecutor } from "../../ffi/executor/load";
import { keepAcrossExec, pipe } from "../../ffi/io";
import { clearNonblock } from "../../ffi/libc";
import { exitNow, kill, processExists } from "../../ffi/proc";
import * as F from "../../ffi/flags";
import { exited, shellStatus, waitExit } from "../../ffi/wait";
import { monotonicNs } from "../../ffi/verdict";
import { EXIT_NSRUN_FAILED, type ErrorReport, formatReport, toReport, writeStderr } from "../errors";
import { stageLine, tracerFor } from "../pipeline";
import type { BoxPlan } from "../stages/plan";
import { FORWARDED_SIGNALS, SIGNAL_NUMBERS } from "../stages/signals";
import type { ReportTarget } from "./report";
import { type StartOptions, type Started, startBox } from "./start";
import { handOver, outOfMemoryMessage, supervisorArgs } from "./supervise";

export interface RunPlanOptions {
  /** --trace */
  trace: boolean;
  log: { debug(...a: unknown[]): void };
  /** --report: where the verdict goes (opened by cmd/run.ts before anything else). */
  report: ReportTarget | null;
  /** Where the tape comes from (the tape cache), else compiled from the plan. */
  tape?: StartOptions["tape"];
}

/** Start the planned box and become its supervisor. Never returns: nsrun exits with the box's status. */
export async function runPlan(plan: BoxPlan, opts: RunPlanOptions): Promise<never> {
  const trace = tracerFor("host", opts.trace);
  // The cgroup stage's code, and the report's, load only for a box that has them.
  const cgroups = plan.cgroup ? await import("../stages/cgroup") : null;
  const reports = opts.report || plan.timeLimits ? await import("./report") : null;
  trace?.(stageLine("cgroup"));
  if (plan.cgroup && cgroups) {
    cgroups.sweepStaleCgroups(plan.cgroup, processExists, trace);
    try {
      cgroups.applyCgroup(plan.cgroup, trace);
    } catch (e) {
      return exit(EXIT_NSRUN_FAILED, { message: `cgroup: ${(e as Error).message}`, hint: cgroupHint(plan.cgroup.version), exitCode: EXIT_NSRUN_FAILED });
    }
  }

  // A signal during setup ends the box before its command runs (as it would end nsrun); one that
  // comes once the command has started goes to the supervisor, which delivers it first.
  let box = 0;
  let setupOver = () => false;
  let abortedBy: number | null = null;
  const pending: number[] = [];
  // The executor catches them (not Bun), so that the hand-over can take the ones not yet handled
  // without a turn of the event loop (watchSignals in ffi/executor/load.ts).
  // Loops here, not map and forEach: the start path calls no built-in array method (core/pipeline.ts).
  const forwarded: number[] = [];
  for (let i = 0; i < FORWARDED_SIGNALS.length; i++) forwarded.push(SIGNAL_NUMBERS[FORWARDED_SIGNALS[i]]);
  const signals = watchSignals(forwarded, (n) => {
    if (n === SIGNAL_NUMBERS.SIGWINCH || (box && setupOver())) return void pending.push(n);
    abortedBy ??= n;
    if (box) kill(box, F.SIGKILL);
  });
  // The box shares our stdio's open files; Bun may have made them non-blocking, which a command
  // reading stdin would take for EOF.
  for (const fd of [0, 1, 2]) clearNonblock(fd);

  const join = plan.cgroup && cgroups ? cgroups.openCgroupJoin(plan.cgroup) : undefined;
  const result = await startBox(plan, {
    cgroup: join,
    tape: opts.tape,
    block: signals,
    trace: { host: trace, executor: tracerFor("executor", opts.trace) },
    onSpawn: (pid, over) => {
      box = pid;
      setupOver = over;
      if (abortedBy !== null) kill(pid, F.SIGKILL);
    },
  }).catch((e) => exit(EXIT_NSRUN_FAILED, toReport(e, "setup")));
  const start = monotonicNs();
  signals.handle(); // any that came as the setup ended
  if (join) cgroups?.closeCgroupJoin(join);

  if (!result.ok || abortedBy !== null) {
    const failure = result.ok ? null : result.failure;
    const child = result.ok ? result : result.started;
    if (child) {
      await waitExit(child.pidfd);
      if (child.helpers.length) {
        const { endHelper } = await import("./nat");
        for (const helper of child.helpers) await endHelper(helper);
      }
    }
    const code = abortedBy !== null ? 128 + abortedBy : (failure?.exitCode ?? EXIT_NSRUN_FAILED);
    if (abortedBy !== null) reports?.reportSetupFailure(opts.report, `setup: ended by signal ${abortedBy} before the command started`, code, plan.timeLimits);
    return exit(code, abortedBy !== null ? undefined : (failure ?? undefined));
  }
  return supervise(plan, result, pending, opts.trace);

  /** Every way out before the hand-over goes through here, so the box's cgroup never outlives it. */
  async function exit(code: number, report?: ErrorReport): Promise<never> {
    if (plan.cgroup) await cgroups?.removeCgroup(plan.cgroup, trace);
    if (report) reports?.reportSetupFailure(opts.report, report.message, code, plan.timeLimits);
    if (report) writeStderr(formatReport(report));
    process.exit(code);
  }

  async function supervise(p: BoxPlan, s: Started & { ok: true }, signals: number[], traced: boolean): Promise<never> {
    tracerFor("supervisor", traced)?.(stageLine("supervise"));
    // A command that has ended already (a short one) leaves nothing to supervise when its PID
    // namespace ended with it and there is no cgroup, helper, terminal or verdict to see to: its
    // status is nsrun's, here. The stub would say the same after an exec(2) (Bun's teardown and
    // the stub's start, about a millisecond); signals that came meanwhile have no box to reach.
    if (!traced && p.namespaces.includes("pid") && !p.cgroup && !s.helpers.length && s.terminal === null && !opts.report && !p.timeLimits) {
      const ended = exited(s.pidfd);
      if (ended) exitNow(shellStatus(ended));
    }
    // From here until the stub takes them with sigtimedwait(2), signals wait, pending, instead of
    // reaching a JavaScript handler that the execve(2) is about to discard.
    const executor = loadExecutor();
    executor.holdSignals(forwarded);
    // One the executor caught before and JavaScript has not handled yet: it came after setup.
    signals.push(...executor.takeSignals());
    if (s.terminal !== null) keepAcrossExec(s.terminal);
    // The supervisor holds what ends a helper when it closes (slirp4netns's --exit-fd).
    for (const helper of s.helpers) if (helper.hold !== null) keepAcrossExec(helper.hold);
    // The command has started: the wall-time limit and wall_ms count from here.
    const verdict = reports?.verdictArgs(p, start, opts.report) ?? [];
    const failed = handOver(s.stub, [...supervisorArgs(p, s.pid, signals, traced, s.terminal, s.helpers), ...verdict]);
    // The stub could not start (it always can, short of the kernel refusing execveat): supervise here.
    const status = shellStatus(await waitExit(s.pidfd));
    if (p.cgroup && status === 137 && cgroups?.oomKilled(p.cgroup)) writeStderr(`nsrun: ${outOfMemoryMessage(p.cgroup.memoryText)}\n`);
    opts.log.debug(failed.message);
    reports?.reportSetupFailure(opts.report, failed.message, status, p.timeLimits);
    return exit(status);
  }
}

/**
 * Catch `signals` in the executor; the launcher, waiting for the box's setup, watches `wake` and
 * calls `handle`, which passes on each signal caught since (core/launch/launch.ts, `block`).
 */
function watchSignals(signals: number[], handle: (n: number) => void): { wake: number; handle: () => void } {
  const executor = loadExecutor();
  const [read, write] = pipe(true, true);
  executor.watchSignals(signals, write);
  return {
    wake: read,
    handle: () => {
      const caught = executor.takeSignals();
      for (let i = 0; i < caught.length; i++) handle(caught[i]);
    },
  };
}

function cgroupHint(version: 1 | 2): string {
  return version === 2
    ? "nsrun needs a cgroup v2 delegated to you in which it is alone (it moves itself to a leaf so its cgroup can hand controllers down): run it as `systemd-run --user --scope -p Delegate=yes nsrun ...`, or delegate with a user@.service drop-in `Delegate=cpu cpuset io memory pids`"
    : "cgroup v1 needs root";
}
