// The namespace stage: a short-lived process that creates the box's namespaces and starts the init
// stage inside them. It must create the user namespace while it still has one thread, so this
// module imports only what that needs (early.ts binds five libc symbols); the rest loads after.
//
// It exits as soon as the init stage has started. After unshare(CLONE_NEWPID) a process can no
// longer create threads (clone(CLONE_THREAD) fails with EINVAL while pid_for_children differs from
// its own PID namespace), and a Bun process that lives on will want new threads sooner or later:
// under load it aborted. So the long-lived supervisor is the host process, a child subreaper,
// which adopts the init stage when this stage exits.
import { readFileSync } from "node:fs";
import { type EarlyFailure, earlyUnshare, earlyWriteFile } from "../../ffi/early";
import { CLONE_FLAGS, flagNames } from "../../ffi/flags";
import { unshareFlags } from "../namespaces";
import { stageLine } from "../pipeline";
import type { BoxPlan } from "../plan";
import { idMapWrites } from "../userns";
import { FD } from "./fds";

/** A failed early call, and the stage (as errors name it) it belongs to. */
export type StageFailure = EarlyFailure & { stage: string };

export async function namespaceStage(): Promise<never> {
  const text = readFileSync(FD.plan, "utf8");
  // No plan: the host failed before handing one over (it reports that itself, see launch.ts).
  if (!text) process.exit(0);
  const plan = JSON.parse(text) as BoxPlan;
  // Every kind but mount is created here. The mount namespace is the init stage's own: pivot_root
  // moves the root of every process in a mount namespace, and nsrun's other processes keep the host's.
  const flags = unshareFlags(plan.namespaces.filter((k) => k !== "mount"));
  const shown = flagNames(flags, CLONE_FLAGS);
  const done: string[] = [`start  +${performance.now().toFixed(1)}ms since exec`, stageLine("namespaces")];
  /** One early call: its trace line (held until tracing can load), or its failure with the stage it belongs to. */
  const attempt = (stage: string, shown: string, call: () => EarlyFailure | null): StageFailure | null => {
    const t0 = performance.now();
    const failed = call();
    if (failed) return { ...failed, stage };
    done.push(`${shown}  ${(performance.now() - t0).toFixed(3)}ms`);
    return null;
  };
  let failure: StageFailure | null = null;
  // Into the box's cgroup first: the init stage and the command inherit it, and the cgroup
  // namespace made next takes it as its root, so the box sees itself at "/".
  for (const procs of plan.cgroup?.procs ?? []) {
    failure = attempt("cgroup", `write(${JSON.stringify(procs)}, "${process.pid}")`, () => earlyWriteFile(procs, `${process.pid}\n`));
    if (failure) break;
  }
  if (!failure && flags) failure = attempt("namespaces", `unshare(${shown}) = 0`, () => earlyUnshare(flags, shown));
  done.push(stageLine("user namespace"));
  for (const [path, text] of plan.idMap && !failure ? idMapWrites(plan.idMap) : []) {
    failure = attempt("userns", `write(${JSON.stringify(path)}, ${JSON.stringify(text.trimEnd())}) = ${text.length}`, () => earlyWriteFile(path, text));
    if (failure) break;
  }
  const { startInit } = await import("./ns-start");
  return startInit(plan, failure, done);
}
