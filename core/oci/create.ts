// `nsrun create`: the container is set up by the same compiled tape as a box, up to the point just
// before its command: there it reports "ready" at a sync point and blocks in read(2) on exec.fifo
// until `nsrun start` writes a byte (runc's exec.fifo, turned around so that `start` never blocks).
// `create` then exits without cleaning up: the container's process, no longer anyone's child,
// is reparented to the nearest subreaper (conmon, the containerd shim) or to init.
//
// The report channel is a FIFO in the state folder (report.fifo), opened read-write by the
// container: `create` reads setup failures from it, and `start` reads it until end of file to learn
// whether the command could be started (the stub writes an EXEC_FAILED record there if not).
import { constants, openSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { sealedStub } from "../../ffi/executor/load";
import { REPORT } from "../../ffi/executor/protocol";
import { close, connectUnix, pipe } from "../../ffi/io";
import { clearNonblock } from "../../ffi/libc";
import * as F from "../../ffi/flags";
import { applyCgroup, closeCgroupJoin, inspectCgroups, openCgroupJoin, removeCgroup } from "../stages/cgroup";
import { emitKeepCapabilities } from "../stages/capabilities";
import { compileBox, joinShape } from "../stages/compile";
import { EXIT_NSRUN_FAILED, type ErrorReport } from "../errors";
import { lastCapability } from "../host/start";
import { writeIdMaps } from "../host/idmaps";
import { launch } from "../launch/launch";
import { SYNC } from "../launch/sync";
import { syncWithHost } from "../tape/calls";
import { fillHookStdin, HookError, pidInContainer, runHooks } from "./hooks";
import { idmapBinds } from "./idmap";
import { openToJoin } from "./joinns";
import { OciPlanError } from "./resources";
import { type OciCaller, planOci } from "./spec-plan";
import { loadSpec } from "./spec";
import { claimContainer, type Container, isHostRoot, OCI_VERSION, processStartTime, publicState, type SavedState } from "./state";
import { mkfifo } from "../../ffi/fs";
import { kill, pidfdOpen } from "../../ffi/proc";
import { waitExit } from "../../ffi/wait";
import { describeHookReport, emitGroups, emitHook, emitPreserveFds, emitProcWrites, emitWaitForStart, TAPE_HOOKS, type TapeHook } from "./emit";
import { NsrunError } from "../../ffi/error";

export interface CreateOptions {
  root: string;
  id: string;
  bundle: string;
  pidFile?: string;
  consoleSocket?: string;
  /** Fds 3 .. 3+N-1 of nsrun pass into the container's process. */
  preserveFds: number;
  /** `run` without -d: the container dies with nsrun (parent-death signal). */
  attached: boolean;
}

export interface Created {
  container: Container;
  state: SavedState;
  pid: number;
  pidfd: number;
  lock: number;
}

/** A failure that has already undone everything `create` made; `report` is what to print. */
export class CreateFailed extends NsrunError {
  constructor(readonly report: ErrorReport) {
    super(report.message);
  }
}

export function ociCaller(): OciCaller {
  const uid = process.getuid?.() ?? 0;
  return { uid, gid: process.getgid?.() ?? 0, hostRoot: isHostRoot(uid) };
}

export async function createContainer(opts: CreateOptions): Promise<Created> {
  const bundle = resolve(opts.bundle);
  // The ID first (two creates of one ID: the second is told so), then everything that can be
  // refused is refused before anything but the empty, locked folder exists.
  const { container, lock } = claimContainer(opts.root, opts.id);
  let planned;
  try {
    const { spec, file } = loadSpec(bundle);
    const caller = ociCaller();
    // The host's cgroups: for the container's own, and for what a `cgroup` mount shows on cgroup v1.
    const cgroupMount = (spec.mounts ?? []).some((m) => m.type === "cgroup" || m.type === "cgroup2");
    const plan = planOci(spec, file, bundle, opts.id, caller, caller.hostRoot || spec.linux?.resources || cgroupMount ? inspectCgroups() : null);
    const terminal = plan.box.process.terminal !== null;
    if (terminal && !opts.consoleSocket) throw new CreateFailed({ message: `${file}: process.terminal: true needs --console-socket SOCK (nsrun create does not relay a terminal itself); or set it to false`, exitCode: EXIT_NSRUN_FAILED });
    if (!terminal && opts.consoleSocket) throw new CreateFailed({ message: "--console-socket is for process.terminal: true; this config has no terminal", exitCode: EXIT_NSRUN_FAILED });
    planned = { spec, file, plan };
  } catch (e) {
    container.remove();
    throw e;
  }
  const { spec, file, plan } = planned;
  const state: SavedState = {
    ociVersion: spec.ociVersion || OCI_VERSION,
    id: opts.id,
    pid: 0,
    bundle,
    rootfs: plan.box.rootfs.hostPath,
    created: new Date().toISOString(),
    owner: "",
    annotations: plan.annotations,
    startTime: "",
    cgroup: plan.box.cgroup,
    hooks: { poststart: plan.hooks.poststart, poststop: plan.hooks.poststop },
    namespaces: [...plan.box.namespaces, ...plan.join.map((j) => j.kind)],
  };
  const opened: number[] = [];
  let pid = -1;
  // With a PID namespace (made or joined) the tape forks: the process clone3 made reports its child's
  // PID and exits, and that child is the container's process.
  let forked: number | null = null;
  let cgroupMade = false;
  const undo = async (report: ErrorReport): Promise<never> => {
    if (pid > 0) kill(pid, F.SIGKILL);
    if (forked !== null) kill(forked, F.SIGKILL);
    for (const fd of opened) close(fd);
    if (cgroupMade && plan.box.cgroup) await removeCgroup(plan.box.cgroup);
    container.remove();
    throw new CreateFailed(report);
  };
  try {
    container.write(state);
    writeFileSync(container.path("config.json"), readFileSync(file), { mode: 0o600, flag: "wx" }); // private: process.env
    mkfifo(container.path("exec.fifo"));
    mkfifo(container.path("report.fifo"));
    const open = (path: string, flags: number) => {
      const fd = openSync(path, flags | F.O_CLOEXEC);
      opened.push(fd);
      return fd;
    };
    const execFifo = open(container.path("exec.fifo"), constants.O_RDWR);
    // The container's end first (a writer that is also a reader: never EPIPE), then ours, which then opens at once.
    const reportWrite = open(container.path("report.fifo"), constants.O_RDWR);
    const reportRead = open(container.path("report.fifo"), constants.O_RDONLY | constants.O_NONBLOCK);
    clearNonblock(reportRead);
    const [syncRead, syncWrite] = pipe(true);
    opened.push(syncRead, syncWrite);
    const console = opts.consoleSocket ? connectUnix(opts.consoleSocket) : undefined;
    if (console !== undefined) opened.push(console);
    // Opened again, not reused from planning: the fd checked here is the one setns(2) gets.
    const join = plan.join.map((j) => {
      try {
        const fd = openToJoin(j);
        opened.push(fd);
        return { kind: j.kind, fd };
      } catch (e) {
        throw e instanceof OciPlanError ? new Error(`${e.key}: ${e.message}`) : e;
      }
    });
    const preserved = Array.from({ length: opts.preserveFds }, (_, i) => 3 + i);
    // The container's cgroups, one per hierarchy (core/oci/resources.ts): one that cannot be made
    // or opened to join is an error naming it; nothing is left of the others.
    const cgroupError = (e: unknown) => new Error(`linux.cgroupsPath: the container's cgroup: ${(e as Error).message}`);
    if (plan.box.cgroup) {
      try {
        applyCgroup(plan.box.cgroup);
      } catch (e) {
        throw cgroupError(e);
      }
      cgroupMade = true;
    }
    let cgroupJoin = null;
    try {
      cgroupJoin = plan.box.cgroup ? openCgroupJoin(plan.box.cgroup) : null;
    } catch (e) {
      throw cgroupError(e);
    }
    const stub = sealedStub();
    opened.push(stub);
    // Id-mapped binds are copied and mapped here, by root in nsrun's own namespaces (core/oci/idmap.ts).
    const idmapped = await idmapBinds(plan.box.mounts);
    opened.push(...idmapped.fds);
    plan.box.mounts = idmapped.ops;

    // createContainer and startContainer hooks run inside: each gets a pipe for its stdin, whose
    // write end nsrun fills with the state once it knows the PID (at the sync points below).
    const inside: Array<TapeHook & { write: number }> = TAPE_HOOKS.flatMap((list) =>
      plan.hooks[list].map((h, position) => {
        const [read, write] = pipe(true);
        opened.push(read, write);
        return { list, position, path: h.path, args: h.args?.length ? h.args : [h.path], env: h.env ?? [], timeout: h.timeout ?? null, stdin: read, write };
      }),
    );
    const fill = (list: (typeof TAPE_HOOKS)[number], status: "creating" | "created", p: number) => {
      const now = publicState({ ...state, pid: pidInContainer(p) }, status);
      for (const h of inside.filter((x) => x.list === list)) {
        opened.splice(opened.indexOf(h.write), 1);
        fillHookStdin(h.write, now);
      }
    };
    const hasCreateHooks = plan.hooks.prestart.length + plan.hooks.createRuntime.length + plan.hooks.createContainer.length > 0;
    const tape = compileBox(plan.box, {
      profile: "create",
      fds: { report: reportWrite, sync: syncRead, stub, cgroupDir: cgroupJoin?.dir ?? null, cgroupProcs: cgroupJoin?.procs ?? [], join, terminal: console, keep: [execFifo, ...preserved, ...inside.map((h) => h.stdin), ...idmapped.fds] },
      lastCap: lastCapability(),
      parentDeath: opts.attached,
      beforePivot: (t) => {
        emitProcWrites(t, plan.oomScoreAdj, plan.sysctl);
        if (hasCreateHooks) syncWithHost(t, reportWrite, syncRead, SYNC.CREATE_HOOKS, "run the prestart and createRuntime hooks");
        // After createRuntime, in the container's namespaces, before pivot_root (runtime-spec config.md).
        for (const h of inside) if (h.list === "createContainer") emitHook(t, h, reportWrite);
      },
      beforeUser: (t) => {
        if (plan.groups !== null) emitGroups(t, plan.groups);
        if (plan.box.process.uid !== 0) emitKeepCapabilities(t);
      },
      beforeSeccomp: (t) => {
        emitPreserveFds(t, preserved);
        emitWaitForStart(t, reportWrite, syncRead, execFifo);
        // Part of `start`, in the container, before its command (runtime-spec config.md).
        for (const h of inside) if (h.list === "startContainer") emitHook(t, h, reportWrite);
      },
    });

    // Launched sealed (core/launch/): the container's process is the non-dumpable stub from before
    // it enters any namespace until its command runs, so nothing in the container (a process
    // `nsrun exec` started there, say) can open its memory, fds or exe while it waits for `start`.
    // The umask is inherited at clone time (the tape has no umask op).
    const oldMask = plan.umask !== null ? process.umask(plan.umask) : null;
    let forked: number | null = null;
    const run = await launch(tape, {
      report: [reportRead, reportWrite],
      syncWrite,
      sealedStub: stub,
      describeHook: (r) => describeHookReport(r, plan.hooks),
      onSpawn: (p) => {
        pid = p;
        if (oldMask !== null) process.umask(oldMask);
      },
      sync: {
        [SYNC.ID_MAPS]: async (p: number) => {
          forked = p === pid ? null : p;
          if (plan.box.idMap) await writeIdMaps(plan.box.idMap, p);
        },
        [SYNC.CREATE_HOOKS]: async (p: number) => {
          const now = { ...state, pid: p };
          await runHooks("prestart", plan.hooks.prestart, publicState(now, "creating"));
          await runHooks("createRuntime", plan.hooks.createRuntime, publicState(now, "creating"));
          fill("createContainer", "creating", p);
        },
        [SYNC.READY]: (p: number) => fill("startContainer", "created", p),
      },
      until: SYNC.READY,
    });
    opened.splice(opened.indexOf(reportWrite), 1); // launch closed it
    opened.splice(opened.indexOf(reportRead), 1);
    if (cgroupJoin) closeCgroupJoin(cgroupJoin);
    forked = run.forked;
    if (run.pid < 0) return await undo(run.failure as ErrorReport);
    pid = run.pid;
    let pidfd = run.pidfd;
    if (forked !== null) {
      await waitExit(run.pidfd); // the parent, which exits once it has reported its child
      close(run.pidfd);
      pid = forked;
      pidfd = pidfdOpen(pid);
    }
    if (run.failure) {
      if (run.failure.kind === "host" && !(run.failure.cause instanceof HookError)) run.failure.message = `setup: ${run.failure.message}`;
      return await undo(run.failure);
    }
    if (forked === null && joinShape(plan.box, plan.join, true).fork) return await undo({ message: "namespaces: fork into the PID namespace: the container's process did not start", exitCode: EXIT_NSRUN_FAILED });
    if (!run.reports.some((r) => r.kind === REPORT.SYNC && r.value === SYNC.READY)) return await undo({ message: "setup: the container's process died before it was ready", exitCode: EXIT_NSRUN_FAILED });

    state.pid = pid;
    state.startTime = processStartTime(pid) ?? "";
    container.write(state);
    if (opts.pidFile) writePidFile(opts.pidFile, pid);
    for (const fd of opened) if (fd !== stub) close(fd);
    return { container, state, pid, pidfd, lock };
  } catch (e) {
    if (e instanceof CreateFailed) throw e;
    const err = e as Error & { hint?: string };
    return await undo({ message: err.message, hint: err.hint, exitCode: EXIT_NSRUN_FAILED });
  }
}

/** Written whole, then renamed: conmon and containerd read it as soon as `create` exits. */
export function writePidFile(path: string, pid: number): void {
  const tmp = `${path}.nsrun-tmp`;
  writeFileSync(tmp, String(pid));
  renameSync(tmp, path);
}

