// Starting a box: compile its plan into a tape and launch it (core/launch/): clone3(2) its first
// process through the executor, and follow the report pipe until the box's command has started or
// setup has failed. The event loop stays free the whole time (the pipe is read asynchronously), so a
// signal to nsrun is handled at every moment, also while setup hangs.
import { sealedStub } from "../../ffi/executor/load";
import { close as closeFd, pipe, readText, receiveFd, socketPair } from "../../ffi/io";
import { exited } from "../../ffi/wait";
import * as F from "../../ffi/flags";
import type { ChildFds } from "../stages/compile";
import { EXIT_NSRUN_FAILED, type ErrorReport } from "../errors";
import { launch, type LaunchFailure, type LaunchOptions } from "../launch/launch";
import { SYNC } from "../launch/sync";
import { stageLine, type Tracer } from "../pipeline";
import type { BoxPlan } from "../stages/plan";
import type { RunnableTape } from "../tape/frozen";
import type { Tape } from "../tape/tape";
import { writeIdMaps } from "./idmaps";
import type { Helper } from "./nat";

export type { Tracer } from "../pipeline";

export interface StartOptions {
  /** Where the box's cgroup is joined: a v2 directory fd, or v1 cgroup.procs fds. */
  cgroup?: { dir: number | null; procs: number[] };
  trace?: { host: Tracer; executor: Tracer };
  /**
   * Called once the first process exists, with its PID and a test of whether setup is over (the
   * command has started, or setup has failed): a signal handler needs both.
   */
  onSpawn?: (pid: number, setupOver: () => boolean) => void;
  /** Wait for the box's setup with the thread blocked (see LaunchOptions.block): nsrun run's. */
  block?: LaunchOptions["block"];
  /** Where the tape comes from: the tape cache (core/host/tapecache.ts), which compiles on a miss. */
  tape?: (fds: ChildFds, compile: () => Promise<Tape>) => Promise<RunnableTape>;
}

export interface Started {
  pid: number;
  pidfd: number;
  /** The sealed stub, kept for the supervisor hand-over (close-on-exec). */
  stub: number;
  /** The master of the box's pseudo-terminal, when it has one. */
  terminal: number | null;
  /** Helpers started for the box that end with it (pasta or slirp4netns), nsrun's children. */
  helpers: Helper[];
}

export type StartResult = ({ ok: true } & Started) | { ok: false; failure: ErrorReport; started: Started | null };

let lastCap: number | null = null;

/** The highest capability this kernel knows. */
export function lastCapability(): number {
  if (lastCap === null) {
    try {
      lastCap = Number(readText("/proc/sys/kernel/cap_last_cap"));
    } catch {
      // Loaded only here: capabilities.ts brings the tape's call builders, which a box started from
      // a cached tape never loads.
      lastCap = (require("../stages/capabilities") as typeof import("../stages/capabilities")).CAPABILITIES.length - 1;
    }
  }
  return lastCap;
}

export async function startBox(plan: BoxPlan, opts: StartOptions = {}): Promise<StartResult> {
  const trace = opts.trace ?? { host: null, executor: null };
  const report = pipe(true);
  // A sync pipe only when nsrun has work to do while the process waits: id maps written from
  // outside, pasta or slirp4netns for its network.
  const sync = (plan.idMap && plan.idMap.writer !== "self") || plan.network.mode === "nat" ? pipe(true) : null;
  const files = writeFiles(plan.files);
  const stub = sealedStub();
  // The box's pseudo-terminal master comes back over this socket pair.
  const terminal = plan.process.terminal ? socketPair() : null;
  const fds: ChildFds = {
    report: report[1],
    sync: sync?.[0] ?? null,
    stub,
    cgroupDir: opts.cgroup?.dir ?? null,
    cgroupProcs: opts.cgroup?.procs ?? [],
    terminal: terminal?.[1],
    files: files?.paths,
  };

  trace.host?.(stageLine("compile"));
  // compile.ts and the assembler are loaded only when a tape is compiled (not for a cached one).
  const compile = async () => (await import("../stages/compile")).compileBox(plan, { fds, lastCap: lastCapability() });
  const tape = opts.tape ? await opts.tape(fds, compile) : await compile();
  trace.host?.(`compile: ${tape.ops.length} ops  +${performance.now().toFixed(1)}ms`);

  const idMap = plan.idMap;
  const helpers: Helper[] = [];
  // When clone3 makes the user namespace (no process forked in between), the id maps are written
  // from the moment the first process exists: newuidmap and newgidmap start while it runs up to its
  // sync point, where it waits for them as before (about 0.3 ms of a rootless start).
  const early = idMap && idMap.writer !== "self" && tape.cloneFlags & F.CLONE_NEWUSER && !tape.expects.pid;
  let written: Promise<void> | null = null;
  const run = await launch(tape, {
    report,
    syncWrite: sync?.[1],
    trace: trace.executor,
    onSpawn: (pid, over) => {
      if (early) (written = writeIdMaps(idMap, pid, trace.host)).catch(() => {}); // awaited at the sync point
      opts.onSpawn?.(pid, over);
    },
    block: opts.block,
    sync: {
      [SYNC.ID_MAPS]: async (pid: number) => {
        if (written) await written;
        else if (idMap) await writeIdMaps(idMap, pid, trace.host);
      },
      [SYNC.NETWORK]: async (pid: number) => {
        const { startNetwork } = await import("./nat");
        helpers.push(await startNetwork(plan.network, pid, plan.idMap !== null, trace.host));
      },
    },
  });
  // Helpers started early end before this does, also when the box never reached its sync point.
  if (written) await (written as Promise<void>).catch(() => {});
  files?.remove(); // the box has them bound (or has failed)
  if (sync) for (const fd of sync) closeFd(fd);
  const master = terminal ? receiveFd(terminal[0]) : null;
  if (terminal) for (const fd of terminal) closeFd(fd);
  if (run.pid < 0) {
    closeFd(stub);
    return { ok: false, started: null, failure: run.failure as LaunchFailure };
  }
  const started: Started = { pid: run.pid, pidfd: run.pidfd, stub, terminal: master, helpers };
  if (run.failure) return { ok: false, started, failure: run.failure };
  const died = exited(started.pidfd, true);
  if (died && died.signal !== null && run.progress < tape.ops.length - 1) {
    const step = tape.ops[Math.max(run.progress, 0)].step;
    const hint = plan.cgroup?.memoryText ? `the box's memory limit (${plan.cgroup.memoryText}) may be too small for nsrun to set the box up: raise limits.memory` : undefined;
    return { ok: false, started, failure: { message: `${step.stage}: ${step.what}: killed by signal ${died.signal} during setup`, hint, exitCode: EXIT_NSRUN_FAILED } };
  }
  return { ok: true, ...started };
}

/** plan.files into a private folder of nsrun's (a box binds them read-only), or null when there are none. */
function writeFiles(list: BoxPlan["files"]): { paths: Map<string, string>; remove(): void } | null {
  if (!list.length) return null;
  // node:fs and node:os load only for a box with generated files (a "nat" box): about a millisecond.
  const { chmodSync, mkdtempSync, rmSync, writeFileSync } = require("node:fs") as typeof import("node:fs");
  const dir = mkdtempSync(`${(require("node:os") as typeof import("node:os")).tmpdir()}/nsrun-files-`);
  // A root box with a user namespace binds these as its own root, a host uid with no rights on
  // root's files: it may search the folder (whose random name it is told) and read the files.
  chmodSync(dir, 0o711);
  const paths = new Map<string, string>();
  list.forEach((f, i) => {
    const path = `${dir}/${i}-${f.target.split("/").pop()}`;
    writeFileSync(path, f.content, { mode: 0o644 });
    paths.set(f.target, path);
  });
  return { paths, remove: () => rmSync(dir, { recursive: true, force: true }) };
}
