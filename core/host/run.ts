// `nsrun run`: the process the user started. It loads the config and plans (any error there exits
// 125 before anything exists), keeps a start record for a box that may have one, and runs the
// plan (runplan.ts: the box's cgroup, its start, the hand-over to the supervisor).
import { statSync } from "node:fs";
import type { Assembled } from "../stages/boxconfig";
import { stageLine, tracerFor } from "../pipeline";
import { inspectHost, planBoxCgroup, planningInputs, unlisted } from "../stages/hostfacts";
import { boxCache } from "./tapecache";
import { unmappedRootfsHint } from "../stages/userns";
import type { ReportTarget } from "./report";
import { runPlan } from "./runplan";
import { type Observed, observeAll, terminalSize } from "./inputs";
import type { StartOptions } from "./start";
import { storeStartRecord } from "./startrecord";

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
  /**
   * Keep a start record for this command line (core/host/startrecord.ts) when the box may have one:
   * its arguments, and what assembly read (the config cache's list). null: keep none.
   */
  startRecord?: { args: string[]; cwd: string; assembly: Observed[] } | null;
}

export async function runBoxCommand(opts: RunOptions): Promise<never> {
  const trace = tracerFor("host", opts.trace);
  trace?.(`start  +${performance.now().toFixed(1)}ms since exec`);
  trace?.(stageLine("load config"));
  const { loaded, isDefault } = opts.assembled;
  trace?.(stageLine("plan"));
  // A start record's inputs are observed before planning reads them (see planningInputs).
  const observed = opts.startRecord && opts.cache ? observeAll(planningInputs(loaded)) : null;
  const facts = inspectHost(loaded);
  const caller = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, pid: process.pid };
  // The same call the start record observes its "terminal" input with (core/host/inputs.ts).
  const size = terminalSize();
  const options = { cwdFallback: isDefault, terminal: { size, asked: opts.terminal, term: process.env.TERM } };
  const cache = boxCache({ loaded, facts, caller, options, trace: opts.trace }, opts.cache, trace);
  // plan.ts and the planning stages load only when the cache has no plan for this box.
  const planner = cache?.hit ? null : await import("../stages/plan");
  const make = () => (planner as typeof import("../stages/plan")).planBox(loaded, facts, caller, options);
  const plan = cache ? cache.plan(make, (p) => ({ ...p, cgroup: planBoxCgroup(loaded, facts, caller, options) })) : make();
  trace?.(`plan: ${plan.namespaces.join(",")} namespaces, ${plan.mounts.length} mount steps, seccomp ${plan.security.seccomp ? `${plan.security.seccomp.length} instructions` : "off"}  +${performance.now().toFixed(1)}ms`);
  opts.log.debug("plan", plan);
  const { image, imageOwners } = opts.assembled;
  let warned = false;
  if (image !== null && imageOwners !== null && typeof imageOwners === "object") {
    const { ownersWarning } = await import("../image/store");
    const warning = ownersWarning(image, imageOwners, plan.idMap);
    if (warning) opts.log.warn(warning);
    warned ||= !!warning;
  }
  if (!isDefault && !plan.rootfs.readonly) {
    const owner = ownerOf(plan.rootfs.hostPath);
    const hint = owner && unmappedRootfsHint(plan.rootfs.hostPath, owner, caller, plan.idMap);
    if (hint) opts.log.warn(hint);
    warned ||= !!hint;
  }
  const helper = plan.network.helper;
  if (helper) {
    trace?.(`plan: network "nat" through ${helper.name}: ${helper.why}`);
    opts.log.info(`network "nat" through ${helper.name}: ${helper.why}`);
  }

  // The tape from the tape cache; once its entry is on disk, the start record that names it.
  const record = opts.startRecord;
  const whyNot = warned ? "nsrun printed a warning for it" : helper ? "it has a network helper" : plan.cgroup ? "it has a cgroup" : null;
  const keepRecord = () => {
    if (!cache || !record || !observed) return;
    const disk = cache.onDisk();
    const why = whyNot ?? (disk ? unlisted(loaded, facts, cache.reads()) : "the tape cache has no file for it");
    if (why || !disk) return void trace?.(`cache: start: not stored: ${why}`);
    // What planning read in the rootfs, with what it gave then (the tape cache's lazy reads).
    const lazy = cache.reads().flatMap(([fn, path, result]): Observed[] => (fn === "rootfsFile" ? [[{ kind: "rootfs-file", root: facts.rootfs, path }, result as string | null]] : []));
    storeStartRecord({ args: record.args, cwd: record.cwd, trace: opts.trace, inputs: [...record.assembly, ...observed, ...lazy], tape: disk }, trace);
  };
  const tape: StartOptions["tape"] = cache
    ? async (fds, compile) => {
        const runnable = await cache.tape(fds, compile);
        keepRecord();
        return runnable;
      }
    : undefined;
  return runPlan(plan, { trace: opts.trace, log: opts.log, report: opts.report ?? null, tape });
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

