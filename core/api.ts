// nsrun as a library, for a long-lived Bun process that starts many boxes (a test runner, a
// code-execution service): the executor is loaded once, and each box costs its plan, its tape
// and its clone3(2), without a new Bun process.
//
//   import { runBox } from "nsrun/core/api";
//   const { exitCode } = await runBox({ rootfs: "/srv/rootfs" }, { args: ["/bin/true"] });
//
// Signals are the caller's business here: nothing is forwarded. `signal` (an AbortSignal) kills a
// running box. Call it from the main thread: the box's parent-death signal follows the thread that
// started it.
import { applyCgroup, closeCgroupJoin, openCgroupJoin, removeCgroup, sweepStaleCgroups } from "./stages/cgroup";
import { type LoadedConfig, loadConfig, parseConfig } from "./stages/config";
import { StageError } from "./errors";
import { inspectHost, planBox, planBoxCgroup } from "./stages/plan";
import { boxCache } from "./host/tapecache";
import { startBox } from "./host/start";
import { endHelper } from "./host/nat";
import { processExists } from "../ffi/proc";
import { tracerFor } from "./pipeline";
import { watchBox } from "./host/watch";
import { monotonicNs, waitExitWithUsage } from "../ffi/verdict";
import { setupFailedVerdict, type Verdict } from "./verdict";

export interface BoxOptions {
  /** Replaces [process].args. */
  args?: string[];
  /** Print every setup syscall to stderr, as `nsrun --trace` does. */
  trace?: boolean;
  /** Where a config given as an object resolves its relative paths. Default: the current directory. */
  dir?: string;
  /** false: plan and compile anew, as `nsrun run --no-cache` (default: reuse what this process planned before). */
  cache?: boolean;
  /** Aborting kills the box. */
  signal?: AbortSignal;
}

export interface BoxResult {
  /** The command's exit status, or 128 + the signal that ended it (the shell's convention). */
  exitCode: number;
  /** The signal that ended the command, or null. */
  signal: number | null;
  /**
   * How the box ended: the same object `nsrun run --report` writes (core/verdict.ts, docs/config.md),
   * with [limits] cpu_time and wall_time enforced. A setup failure throws instead, its error
   * carrying `verdict` (reason "setup-failed").
   */
  verdict: Verdict;
}

let boxes = 0;

/**
 * Run one box to its end. `config` is a box.toml path, or the same keys as an object. A config or
 * setup error throws a StageError/ConfigError with nsrun's message and hint (and exitCode 125, 126
 * or 127), and leaves nothing behind.
 */
export async function runBox(config: string | Record<string, unknown>, opts: BoxOptions = {}): Promise<BoxResult> {
  const loaded: LoadedConfig =
    typeof config === "string" ? loadConfig(config) : { config: parseConfig(config, "(runBox config)"), file: "(runBox config)", dir: opts.dir ?? process.cwd() };
  const caller = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, pid: process.pid };
  // Several boxes of one process need cgroups of their own: nsrun-PID-N.
  // No terminal here: nothing would relay it (a box's stdio are this process's own).
  const facts = inspectHost(loaded);
  const options = { args: opts.args, cgroupName: `nsrun-${process.pid}-${++boxes}`, terminal: { size: null, asked: false } };
  const trace = opts.trace ? { host: tracerFor("host", true), executor: tracerFor("executor", true) } : undefined;
  // Boxes planned before in this process start from their plan and tape (core/host/tapecache.ts).
  const cache = boxCache({ loaded, facts, caller, options, trace: opts.trace === true }, opts.cache !== false, trace?.host ?? null);
  const make = () => planBox(loaded, facts, caller, options);
  const plan = cache ? cache.plan(make, (p) => ({ ...p, cgroup: planBoxCgroup(loaded, facts, caller, options) })) : make();
  if (plan.cgroup) {
    sweepStaleCgroups(plan.cgroup, processExists);
    applyCgroup(plan.cgroup);
  }
  const join = plan.cgroup ? openCgroupJoin(plan.cgroup) : undefined;
  let pid = 0;
  const abort = () => pid && process.kill(pid, "SIGKILL");
  opts.signal?.addEventListener("abort", abort);
  try {
    const started = await startBox(plan, {
      cgroup: join,
      tape: cache?.tape,
      trace,
      onSpawn: (p) => {
        pid = p;
        if (opts.signal?.aborted) abort();
      },
    });
    const startNs = monotonicNs();
    if (join) closeCgroupJoin(join);
    const child = started.ok ? started : started.started;
    // A started box is watched to its end (its limits, its verdict); one whose setup failed is only reaped.
    const watched = started.ok ? await watchBox(plan, started.pid, started.pidfd, startNs) : null;
    const exit = watched ? watched.exit : child ? await waitExitWithUsage(child.pidfd) : null;
    if (child) {
      (await import("node:fs")).closeSync(child.pidfd);
      (await import("node:fs")).closeSync(child.stub);
      for (const helper of child.helpers) await endHelper(helper);
    }
    // Killed by our own abort, during setup or after: that is the result, not a setup failure.
    const aborted = opts.signal?.aborted && exit?.signal !== null && exit !== null;
    const limits = { cpuMs: plan.timeLimits?.cpuMs ?? null, wallMs: plan.timeLimits?.wallMs ?? null };
    if (!started.ok && !aborted) {
      const error = new StageError("setup", started.failure.message, started.failure.hint, started.failure.exitCode);
      Object.assign(error, { verdict: setupFailedVerdict(started.failure.message, started.failure.exitCode, 0n, limits) });
      throw error;
    }
    const e = exit ?? { code: null, signal: null };
    const verdict = watched?.verdict ?? setupFailedVerdict("setup: aborted", 128 + (e.signal ?? 9), 0n, limits);
    return { exitCode: e.signal !== null ? 128 + e.signal : (e.code ?? 0), signal: e.signal, verdict };
  } finally {
    opts.signal?.removeEventListener("abort", abort);
    if (plan.cgroup) await removeCgroup(plan.cgroup);
  }
}
