// `nsrun exec`: a new process in a running container. The host opens the container's namespaces
// (/proc/PID/ns/*) and cgroup; the tape (compileBox's "exec" profile) joins them with setns(2) in
// the canonical order (user first), forks once so the new process is inside the joined PID
// namespace (the parent reports its PID and exits), then becomes the process as create's tape does:
// cwd, terminal, rlimits, capabilities, user, no_new_privs, seccomp, and the command's execve. It is
// launched sealed (core/launch/): from before it joins anything until its command runs, the process
// is the non-dumpable stub, never a copy of nsrun that the container could open.
import { closeSync, constants, openSync, readFileSync } from "node:fs";
import { loadExecutor, sealedStub } from "../../ffi/executor/load";
import * as F from "../../ffi/flags";
import { close, connectUnix, keepAcrossExec, pipe, receiveFd, socketPair } from "../../ffi/io";
import { clearNonblock } from "../../ffi/libc";
import { waitExit } from "../../ffi/wait";
import { emitKeepCapabilities } from "../stages/capabilities";
import { closeCgroupJoin, openCgroupJoin } from "../stages/cgroup";
import { compileBox } from "../stages/compile";
import { ConfigError, EXIT_NSRUN_FAILED } from "../errors";
import { userTextProblem } from "../stages/ids";
import { lastCapability } from "../host/start";
import { handOver } from "../host/supervise";
import { launch } from "../launch/launch";
import { NAMESPACE_ORDER, nsFileName } from "../stages/namespaces";
import { FORWARDED_SIGNALS, SIGNAL_NUMBERS } from "../stages/signals";
import { isFrozen } from "./freeze";
import { OciError } from "./lifecycle";
import { NS_KIND, planOci } from "./spec-plan";
import { parseSpec, type Spec } from "./spec";
import { Container, lockContainer } from "./state";
import { ociCaller, writePidFile } from "./create";
import { becomeSubreaper } from "../../ffi/proc";
import { emitGroups, emitPreserveFds } from "./emit";

export interface ExecOptions {
  root: string;
  id: string;
  /** runtime-spec's process object (--process FILE), or built from the command line. */
  process: NonNullable<Spec["process"]> | null;
  args: string[];
  env: string[];
  cwd?: string;
  user?: string;
  tty: boolean;
  detach: boolean;
  consoleSocket?: string;
  pidFile?: string;
  preserveFds: number;
  noNewPrivs?: boolean;
  caps: string[];
  additionalGids: number[];
}

/** The process to start: --process as given, else the container's own process with the command line's changes (as runc does). */
function processSpec(base: NonNullable<Spec["process"]>, o: ExecOptions): NonNullable<Spec["process"]> {
  if (o.process) return o.process;
  if (!o.args.length) throw new OciError("exec: no command: nsrun exec [OPTIONS] ID CMD [ARG...] (or --process FILE)", EXIT_NSRUN_FAILED);
  const p = structuredClone(base);
  p.args = o.args;
  p.terminal = o.tty;
  p.env = [...(p.env ?? []), ...o.env];
  if (o.cwd) p.cwd = o.cwd;
  if (o.user) {
    const [uid, gid] = o.user.split(":").map(Number);
    const problem = userTextProblem(o.user);
    if (problem) throw new OciError(`exec: --user: ${problem}`, EXIT_NSRUN_FAILED);
    p.user = { uid, gid: gid ?? 0 };
  }
  if (o.additionalGids.length) p.user.additionalGids = o.additionalGids;
  if (o.noNewPrivs) p.noNewPrivileges = true;
  if (o.caps.length) {
    const c = p.capabilities ?? {};
    for (const set of ["bounding", "effective", "permitted"] as const) c[set] = [...new Set([...(c[set] ?? []), ...o.caps])];
    p.capabilities = c;
  }
  return p;
}

export async function execInContainer(o: ExecOptions): Promise<number> {
  const c = new Container(o.root, o.id);
  const lock = lockContainer(c);
  const saved = c.read();
  const status = c.status(saved);
  if ((status !== "running" && status !== "created") || isFrozen(saved.cgroup)) {
    closeSync(lock);
    throw new OciError(`cannot exec in container ${JSON.stringify(o.id)}: it is ${isFrozen(saved.cgroup) ? "paused" : status}`);
  }
  const configFile = c.path("config.json");
  const spec = parseSpec(JSON.parse(readFileSync(configFile, "utf8")), configFile);
  const proc = processSpec(spec.process ?? ({} as NonNullable<Spec["process"]>), o);
  const execFile = o.process ? "--process" : configFile;
  // The process is planned as its container was, with its own process section; the container's
  // mounts and namespaces are joined, not made, so only the process-related parts are used. (A
  // namespace the container joined by path is planned as joined, by a path that always exists.)
  const asSpec: Spec = { ...spec, process: proc, hooks: {}, mounts: [], hostname: undefined, domainname: undefined, root: spec.root && { ...spec.root, readonly: false }, linux: { ...spec.linux, namespaces: (spec.linux?.namespaces ?? []).map((n) => (n.path ? { type: n.type, path: `/proc/self/ns/${nsFileName(NS_KIND[n.type])}` } : { type: n.type })), resources: undefined, devices: [], sysctl: {}, maskedPaths: [], readonlyPaths: [], rootfsPropagation: undefined, uidMappings: spec.linux?.uidMappings, gidMappings: spec.linux?.gidMappings } };
  const caller = ociCaller();
  let plan;
  try {
    plan = planOci(asSpec, execFile, saved.bundle, o.id, caller, null);
  } catch (e) {
    closeSync(lock);
    throw e instanceof ConfigError ? new OciError(e.message.replace(`${execFile}: `, `exec: ${o.process ? "--process: " : ""}`), EXIT_NSRUN_FAILED) : e;
  }
  const box = plan.box;
  if (box.process.terminal && !o.consoleSocket && o.detach) {
    closeSync(lock);
    throw new OciError("exec: --tty with --detach needs --console-socket SOCK", EXIT_NSRUN_FAILED);
  }

  const opened: number[] = [];
  const openFd = (path: string, flags: number) => {
    const fd = openSync(path, flags | F.O_CLOEXEC);
    opened.push(fd);
    return fd;
  };
  const kinds = NAMESPACE_ORDER.map(([k]) => k).filter((k) => saved.namespaces.includes(k));
  const join = kinds.map((kind) => ({ kind, fd: openFd(`/proc/${saved.pid}/ns/${nsFileName(kind)}`, constants.O_RDONLY) }));
  const report = pipe(true);
  const stub = sealedStub();
  opened.push(stub);
  // A terminal goes to the console socket, or (attached, without one) to nsrun's supervisor to relay.
  const relay = box.process.terminal && !o.consoleSocket ? socketPair() : null;
  const terminal = o.consoleSocket ? connectUnix(o.consoleSocket) : relay?.[1];
  if (terminal !== undefined) opened.push(terminal);
  const cgroupJoin = saved.cgroup ? openCgroupJoin(saved.cgroup) : null;
  const preserved = Array.from({ length: o.preserveFds }, (_, i) => 3 + i);

  // The compile outline's "exec" profile, launched sealed: the process that joins the container
  // runs in the stub, never as a copy of nsrun (docs/security.md).
  const tape = compileBox(box, {
    profile: "exec",
    fds: { report: report[1], sync: null, stub, cgroupDir: cgroupJoin?.dir ?? null, cgroupProcs: cgroupJoin?.procs ?? [], join, terminal, keep: preserved },
    lastCap: lastCapability(),
    parentDeath: false,
    beforeUser: (t) => {
      if (plan.groups !== null) emitGroups(t, plan.groups);
      if (box.process.uid !== 0) emitKeepCapabilities(t);
    },
    beforeSeccomp: (t) => emitPreserveFds(t, preserved),
  });

  // Attached: the forked process becomes ours when its parent exits, so we can wait for it.
  if (!o.detach) becomeSubreaper();
  const oldMask = plan.umask !== null ? process.umask(plan.umask) : null;
  const run = await launch(tape, { report, sealedStub: stub, onSpawn: () => oldMask !== null && process.umask(oldMask) });
  for (const fd of opened) if (fd !== stub) close(fd);
  if (cgroupJoin) closeCgroupJoin(cgroupJoin);
  closeSync(lock);
  if (run.pid < 0) {
    close(stub);
    throw new OciError(`exec: ${run.failure?.message}`);
  }
  // With a PID namespace the first process forks into it, reports its child and exits.
  if (run.forked !== null) await waitExit(run.pidfd);
  if (run.failure) {
    close(stub);
    const f = run.failure;
    throw new OciError(f.message.replace(/^exec: (".*"): command not found in the box$/, "exec: $1: executable file not found in $PATH: no such file or directory"), f.exitCode);
  }
  const pid = run.forked ?? run.pid;
  if (o.pidFile) writePidFile(o.pidFile, pid);
  if (o.detach) return 0;

  // Attached: nsrun becomes the stub's supervisor for this process (signals passed on, its status returned).
  const master = relay ? receiveFd(relay[0]) : null;
  if (relay) for (const fd of relay) close(fd);
  for (const fd of [0, 1, 2]) clearNonblock(fd);
  loadExecutor().holdSignals(FORWARDED_SIGNALS.map((s) => SIGNAL_NUMBERS[s]));
  const argv = ["nsrun", "supervise", String(pid)];
  if (master !== null) {
    keepAcrossExec(master);
    argv.push("-T", String(master));
  }
  for (const s of FORWARDED_SIGNALS) if (master === null || s !== "SIGWINCH") argv.push("-f", String(SIGNAL_NUMBERS[s]));
  const failedHandOver = handOver(stub, argv);
  throw new OciError(failedHandOver.message);
}
