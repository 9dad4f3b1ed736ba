// Starting the namespace stage. A Bun process takes about 11 ms to start here, so the host starts
// this one speculatively, first thing, and loads and plans while it boots; the stage waits on its
// plan pipe. When the host fails before handing over a plan, it kills the stage and reaps it.
import * as F from "../../ffi/flags";
import { pipe } from "../../ffi/io";
import { libc } from "../../ffi/libc";
import { SINGLE_THREAD_ENV, selfCommand, STAGE_ARG } from "./self";

export interface Launched {
  ns: ReturnType<typeof Bun.spawn>;
  /** We write the plan here (then close it). */
  planWrite: number;
  /** A setup error arrives here, from the namespace or init stage. */
  errRead: number;
  /** The init stage's PID arrives here. */
  pidRead: number;
  /** Closed once the namespace stage is reaped: the init stage waits for that (see init.ts). */
  goWrite: number;
}

let launched: Launched | null = null;

/** Start the namespace stage now (idempotent). */
export function launchNamespaceStage(): Launched {
  if (launched) return launched;
  // Orphans of our children become ours: the init stage, once the namespace stage has exited.
  libc.prctl(F.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
  const [planRead, planWrite] = pipe(true);
  const [errRead, errWrite] = pipe(true);
  const [pidRead, pidWrite] = pipe(true);
  const [goRead, goWrite] = pipe(true);
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env[k] = v;
  for (const kv of SINGLE_THREAD_ENV) env[kv.slice(0, kv.indexOf("="))] = kv.slice(kv.indexOf("=") + 1);
  const ns = Bun.spawn([...selfCommand(), STAGE_ARG, "ns"], {
    stdio: ["inherit", "inherit", "inherit", planRead, errWrite, pidWrite, goRead],
    env,
  });
  for (const fd of [planRead, errWrite, pidWrite, goRead]) libc.close(fd);
  launched = { ns, planWrite, errRead, pidRead, goWrite };
  return launched;
}

/** Take the namespace stage (started now if it was not yet) to hand it a plan; it is ours alone from here. */
export function claimNamespaceStage(): Launched {
  const claimed = launchNamespaceStage();
  launched = null;
  return claimed;
}

/** The host failed before handing over a plan: take the speculative namespace stage down, and wait for it. */
export async function abandonNamespaceStage(): Promise<void> {
  if (!launched) return;
  const { ns, planWrite, errRead, pidRead, goWrite } = launched;
  launched = null;
  ns.kill("SIGKILL");
  await ns.exited;
  for (const fd of [planWrite, errRead, pidRead, goWrite]) libc.close(fd);
}
