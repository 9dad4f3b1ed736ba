// The process the user started. It plans in full (any error here exits 125 before anything exists),
// then starts the box and stays as its supervisor (supervise.ts): the PID the user sees, whose
// signals reach the box and whose exit status is the box's.
import { loadConfig } from "../config";
import { defaultBoxConfig, inspectHost, planBox } from "../plan";
import { stageLine } from "../pipeline";
import { tracerFor } from "./self";
import { supervise } from "./supervise";

export interface RunOptions {
  configFile?: string;
  /** Replaces [process].args when non-empty. */
  args: string[];
  trace: boolean;
  log: { debug(...a: unknown[]): void; info(...a: unknown[]): void };
}

/** Stages 1 and 2, load and plan, then start the box and supervise it until it exits. */
export async function runBox(opts: RunOptions): Promise<never> {
  const trace = tracerFor("host", opts.trace);
  trace?.(`start  +${performance.now().toFixed(1)}ms since exec`);
  trace?.(stageLine("load config"));
  const loaded = opts.configFile ? loadConfig(opts.configFile) : defaultBoxConfig(process.cwd());
  trace?.(`load config ${JSON.stringify(loaded.file)}  +${performance.now().toFixed(1)}ms`);
  trace?.(stageLine("plan"));
  const facts = inspectHost(loaded);
  const caller = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, pid: process.pid };
  const plan = planBox(loaded, facts, caller, { args: opts.args, cwdFallback: !opts.configFile, trace: opts.trace });
  trace?.(`plan: ${plan.namespaces.join(",")} namespaces, ${plan.mounts.length} mount steps, seccomp ${plan.security.seccomp ? `${plan.security.seccomp.length} instructions` : "off"}  +${performance.now().toFixed(1)}ms`);
  opts.log.debug("plan", plan);
  return supervise(plan);
}

