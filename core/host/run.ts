// `nsrun run`: the process the user started. It loads the config and plans (any error there exits
// 125 before anything exists), makes the box's cgroup, starts the box (start.ts), and once the
// box's command runs, becomes the supervisor (supervise.ts), keeping its PID.
import { statSync } from "node:fs";
import { loadExecutor } from "../../ffi/executor/load";
import { isTerminal, keepAcrossExec, pipe, windowSize } from "../../ffi/io";
import { clearNonblock } from "../../ffi/libc";
import { kill, processExists } from "../../ffi/proc";
import * as F from "../../ffi/flags";
import { waitExit, shellStatus } from "../../ffi/wait";
import { applyCgroup, closeCgroupJoin, oomKilled, openCgroupJoin, removeCgroup, sweepStaleCgroups } from "../stages/cgroup";
import type { Assembled } from "../stages/boxconfig";
import { EXIT_NSRUN_FAILED, type ErrorReport, formatReport, toReport, writeStderr } from "../errors";
import { stageLine, tracerFor } from "../pipeline";
import { inspectHost, planBoxCgroup } from "../stages/hostfacts";
import type { BoxPlan } from "../stages/plan";
import { FORWARDED_SIGNALS, SIGNAL_NUMBERS } from "../stages/signals";
import { type Started, startBox } from "./start";
import { boxCache } from "./tapecache";
import { handOver, outOfMemoryMessage, supervisorArgs } from "./supervise";
import { endHelper } from "./nat";
import { unmappedRootfsHint } from "../stages/userns";
import { type ReportTarget, reportSetupFailure, verdictArgs } from "./report";
import { monotonicNs } from "../../ffi/verdict";

export interface RunOptions {
  /** The config: box.toml or the default box, with the command line's flags (core/stages/boxconfig.ts). */
  assembled: Assembled;
  trace: boolean;
  /** Use the tape cache (core/host/tapecache.ts); false with --no-cache. */
  cache: boolean;
  /** -t / --no-tty: a pseudo-terminal for the box, or none; undefined: as the config says, or when nsrun has one. */
  terminal?: boolean;
  log: { debug(...a: unknown[]): void; info(...a: unknown[]): void; warn(...a: unknown[]): void };
  /** --report: where the verdict goes (opened by cmd/run.ts before anything else). */
  report?: ReportTarget | null;
}

export async function runBoxCommand(opts: RunOptions): Promise<never> {
  const trace = tracerFor("host", opts.trace);
  trace?.(`start  +${performance.now().toFixed(1)}ms since exec`);
  trace?.(stageLine("load config"));
  const { loaded, isDefault } = opts.assembled;
  trace?.(stageLine("plan"));
  const facts = inspectHost(loaded);
  const caller = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, pid: process.pid };
  const size = isTerminal(0) && isTerminal(1) ? windowSize(0) : null;
  const options = { cwdFallback: isDefault, terminal: { size, asked: opts.terminal, term: process.env.TERM } };
  const cache = boxCache({ loaded, facts, caller, options, trace: opts.trace }, opts.cache, trace);
  // plan.ts and the planning stages load only when the cache has no plan for this box.
  const planner = cache?.hit ? null : await import("../stages/plan");
  const make = () => (planner as typeof import("../stages/plan")).planBox(loaded, facts, caller, options);
  const plan = cache ? cache.plan(make, (p) => ({ ...p, cgroup: planBoxCgroup(loaded, facts, caller, options) })) : make();
  trace?.(`plan: ${plan.namespaces.join(",")} namespaces, ${plan.mounts.length} mount steps, seccomp ${plan.security.seccomp ? `${plan.security.seccomp.length} instructions` : "off"}  +${performance.now().toFixed(1)}ms`);
  opts.log.debug("plan", plan);
  const { image, imageOwners } = opts.assembled;
  if (image !== null && imageOwners !== null && typeof imageOwners === "object") {
    const { ownersWarning } = await import("../image/store");
    const warning = ownersWarning(image, imageOwners, plan.idMap);
    if (warning) opts.log.warn(warning);
  }
  if (!isDefault && !plan.rootfs.readonly) {
    const owner = ownerOf(plan.rootfs.hostPath);
    const hint = owner && unmappedRootfsHint(plan.rootfs.hostPath, owner, caller, plan.idMap);
    if (hint) opts.log.warn(hint);
  }
  const helper = plan.network.helper;
  if (helper) {
    trace?.(`plan: network "nat" through ${helper.name}: ${helper.why}`);
    opts.log.info(`network "nat" through ${helper.name}: ${helper.why}`);
  }

  trace?.(stageLine("cgroup"));
  if (plan.cgroup) {
    sweepStaleCgroups(plan.cgroup, processExists, trace);
    try {
      applyCgroup(plan.cgroup, trace);
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
  const forwarded = FORWARDED_SIGNALS.map((sig) => SIGNAL_NUMBERS[sig]);
  const signals = watchSignals(forwarded, (n) => {
    if (n === SIGNAL_NUMBERS.SIGWINCH || (box && setupOver())) return void pending.push(n);
    abortedBy ??= n;
    if (box) kill(box, F.SIGKILL);
  });
  // The box shares our stdio's open files; Bun may have made them non-blocking, which a command
  // reading stdin would take for EOF.
  for (const fd of [0, 1, 2]) clearNonblock(fd);

  const join = plan.cgroup ? openCgroupJoin(plan.cgroup) : undefined;
  const result = await startBox(plan, {
    cgroup: join,
    tape: cache?.tape,
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
  if (join) closeCgroupJoin(join);

  if (!result.ok || abortedBy !== null) {
    const failure = result.ok ? null : result.failure;
    const child = result.ok ? result : result.started;
    if (child) {
      await waitExit(child.pidfd);
      for (const helper of child.helpers) await endHelper(helper);
    }
    const code = abortedBy !== null ? 128 + abortedBy : (failure?.exitCode ?? EXIT_NSRUN_FAILED);
    if (abortedBy !== null) reportSetupFailure(opts.report, `setup: ended by signal ${abortedBy} before the command started`, code, plan.timeLimits);
    return exit(code, abortedBy !== null ? undefined : (failure ?? undefined));
  }
  return supervise(plan, result, pending, opts.trace);

  /** Every way out before the hand-over goes through here, so the box's cgroup never outlives it. */
  async function exit(code: number, report?: ErrorReport): Promise<never> {
    if (plan.cgroup) await removeCgroup(plan.cgroup, trace);
    if (report) reportSetupFailure(opts.report, report.message, code, plan.timeLimits);
    if (report) writeStderr(formatReport(report));
    process.exit(code);
  }

  async function supervise(p: BoxPlan, s: Started & { ok: true }, signals: number[], traced: boolean): Promise<never> {
    tracerFor("supervisor", traced)?.(stageLine("supervise"));
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
    const verdict = verdictArgs(p, start, opts.report ?? null);
    const failed = handOver(s.stub, [...supervisorArgs(p, s.pid, signals, traced, s.terminal, s.helpers), ...verdict]);
    // The stub could not start (it always can, short of the kernel refusing execveat): supervise here.
    const status = shellStatus(await waitExit(s.pidfd));
    if (p.cgroup && status === 137 && oomKilled(p.cgroup)) writeStderr(`nsrun: ${outOfMemoryMessage(p.cgroup.memoryText)}\n`);
    opts.log.debug(failed.message);
    reportSetupFailure(opts.report, failed.message, status, p.timeLimits);
    return exit(status);
  }
}

/** The owner of the rootfs folder, or null when it cannot be read (planning has checked it exists). */
function ownerOf(path: string): { uid: number; gid: number } | null {
  try {
    const st = statSync(path);
    return { uid: st.uid, gid: st.gid };
  } catch {
    return null;
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
  return { wake: read, handle: () => executor.takeSignals().forEach(handle) };
}

function cgroupHint(version: 1 | 2): string {
  return version === 2
    ? "nsrun needs a cgroup v2 delegated to you in which it is alone (it moves itself to a leaf so its cgroup can hand controllers down): run it as `systemd-run --user --scope -p Delegate=yes nsrun ...`, or delegate with a user@.service drop-in `Delegate=cpu cpuset io memory pids`"
    : "cgroup v1 needs root";
}
