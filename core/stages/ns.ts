// The namespace stage: the process `nsrun` became by execve. It must create the user namespace
// while it still has one thread, so this module imports only what that needs (early.ts binds five
// libc symbols); everything else loads after the unshare.
import { readFileSync } from "node:fs";
import { type EarlyFailure, earlyUnshare, earlyWriteFile } from "../../ffi/early";
import { flagNames, CLONE_FLAGS } from "../../ffi/flags";
import { unshareFlags } from "../namespaces";
import type { BoxPlan } from "../plan";
import { idMapWrites } from "../userns";

export async function namespaceStage(planFd: number): Promise<never> {
  const plan = JSON.parse(readFileSync(planFd, "utf8")) as BoxPlan;
  // Every kind but mount is created here. The mount namespace is the init stage's own: pivot_root
  // moves the root of every process in the namespace, and this process must keep the host's view
  // (its /proc is where it watches the box's PID 1).
  const flags = unshareFlags(plan.namespaces.filter((k) => k !== "mount"));
  const shown = flagNames(flags, CLONE_FLAGS);
  const done: string[] = [];
  let failure: EarlyFailure | null = flags ? earlyUnshare(flags, shown) : null;
  if (!failure) done.push(`unshare(${shown}) = 0`);
  if (!failure && plan.idMap) {
    for (const [path, text] of idMapWrites(plan.idMap)) {
      failure = earlyWriteFile(path, text);
      if (failure) break;
      done.push(`write(${JSON.stringify(path)}, ${JSON.stringify(text.trimEnd())}) = ${text.length}`);
    }
  }
  const { supervise } = await import("./supervise");
  return supervise(plan, failure, done);
}
