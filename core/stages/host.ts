// The process the user started. It plans in full (any error here exits 125 before anything exists)
// and then *becomes* the namespace stage with execve(2): the plan crosses in a pipe, and
// BUN_JSC_useConcurrentJIT=0 makes the new image start single-threaded, as unshare(CLONE_NEWUSER)
// requires. No extra process stays behind: the PID the user sees is the box's supervisor.
import { pipe, writeAll } from "../../ffi/io";
import { libc } from "../../ffi/libc";
import { LinuxSys } from "../../ffi/sys";
import { loadConfig } from "../config";
import { StageError } from "../errors";
import { type BoxPlan, defaultBoxConfig, inspectHost, planBox } from "../plan";
import { SINGLE_THREAD_ENV, selfCommand, STAGE_ARG, tracerFor } from "./self";

export interface RunOptions {
  configFile?: string;
  /** Replaces [process].args when non-empty. */
  args: string[];
  trace: boolean;
  log: { debug(...a: unknown[]): void; info(...a: unknown[]): void };
}

/** Stages 1 and 2, load and plan, then hand over to the namespace stage. Returns only by throwing. */
export function runBox(opts: RunOptions): never {
  const loaded = opts.configFile ? loadConfig(opts.configFile) : defaultBoxConfig(process.cwd());
  const facts = inspectHost(loaded);
  const caller = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
  const plan = planBox(loaded, facts, caller, { args: opts.args, cwdFallback: !opts.configFile, trace: opts.trace });
  opts.log.debug("plan", plan);
  return becomeNamespaceStage(plan);
}

/** A pipe holds 64 KiB without a reader; a plan is a few KiB. */
const PIPE_CAPACITY = 65536;

export function becomeNamespaceStage(plan: BoxPlan): never {
  const json = Buffer.from(JSON.stringify(plan));
  if (json.length >= PIPE_CAPACITY) throw new StageError("plan", `the plan is ${json.length} bytes; at most ${PIPE_CAPACITY - 1} fit`);
  const [readEnd, writeEnd] = pipe(false);
  writeAll(writeEnd, json);
  libc.close(writeEnd);
  const self = selfCommand();
  const env = Object.entries(process.env)
    .filter(([k, v]) => v !== undefined && !SINGLE_THREAD_ENV.some((e) => e.startsWith(`${k}=`)))
    .map(([k, v]) => `${k}=${v}`);
  env.push(...SINGLE_THREAD_ENV);
  const sys = new LinuxSys(tracerFor("host", plan.trace));
  try {
    return sys.execve(self[0], [...self, STAGE_ARG, "ns", String(readEnd)], env);
  } catch (e) {
    throw new StageError("host", `start the namespace stage: ${(e as Error).message}`);
  }
}
