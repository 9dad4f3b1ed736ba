// Stage 4, compile: a BoxPlan becomes a tape, the list of syscalls the box's first process makes
// between clone3(2) and execve(2) (ffi/executor/executor.c runs it; no JavaScript can run there).
// This function is the algorithm's outline: each stage below emits its ops, in this order, and the
// comments say why the order matters.
import { ERRNO } from "../../ffi/errno";
import * as F from "../../ffi/flags";
import { emitBoundingSet, emitCapabilitySets, emitUser } from "./capabilities";
import { emitHostname } from "./hostname";
import { emitEarlyBinds, emitMounts, emitPropagation, emitSlaveRoot, type MountOp } from "./mounts";
import { cloneFlags, emitForkIntoPidNamespace, emitTimeOffsets, NAMESPACE_ORDER, type NamespaceKind, unshareFlags } from "./namespaces";
import { emitNetwork } from "./network";
import { emitPivot } from "./pivot";
import type { BoxPlan } from "./plan";
import { emitExec, emitExecSealed, emitProcess, emitSealFds } from "./process";
import { emitRlimits } from "./rlimits";
import { emitPrivateRoot, emitRootfs } from "./rootfs";
import { emitSeccomp } from "./seccomp";
import { emitTerminal } from "./terminal";
import { close, closeFd, closeRange, dup3, execvePath, exitGroup, pollNow, prctl, setns, syncWithHost, unblockSignals, unshare, writeText } from "../tape/calls";
import { SYNC } from "../launch/sync";
import { Tape } from "../tape/tape";
import { emitIdMaps, type IdMapPlan } from "./userns";

const NAMESPACE_KINDS: NamespaceKind[] = NAMESPACE_ORDER.map(([kind]) => kind);

/** The fds the host hands the box's first process, as numbered in the host (the child inherits them). */
export interface ChildFds {
  /** The report pipe's write end: failures, sync requests. */
  report: number;
  /** The sync pipe's read end, where the host answers sync points; null when the tape has none. */
  sync: number | null;
  /** The sealed memfd holding the stub. */
  stub: number;
  /** cgroup v2: the box's cgroup directory, for CLONE_INTO_CGROUP (used by clone3, closed in the child). */
  cgroupDir: number | null;
  /** cgroup v1: each controller's cgroup.procs, opened by the host; the child writes itself into them. */
  cgroupProcs: number[];
  /** Existing namespaces to join (setns(2)), each an fd the host opened on /proc/PID/ns/KIND. */
  join?: Array<{ kind: NamespaceKind; fd: number }>;
  /** With a terminal: the Unix socket the box's pseudo-terminal master goes back over. */
  terminal?: number;
  /** OCI (core/oci/): further fds the first process keeps open (exec.fifo, --preserve-fds). */
  keep?: number[];
  /** The host files (plan.files, written by nsrun) to bind, by target. */
  files?: Map<string, string>;
}

export interface CompileOptions {
  fds: ChildFds;
  /** The highest capability this kernel knows (/proc/sys/kernel/cap_last_cap). */
  lastCap: number;
  /** process.arch, for the syscall numbers. */
  arch?: NodeJS.Architecture;
  /**
   * Arm the parent-death signal (the default): the box dies with the nsrun that started it. Off for
   * a box that must outlive it (an OCI container after `create`).
   */
  parentDeath?: boolean;
  /** The outline's variant (see Profile); "box" when not given. */
  profile?: Profile;
  /** Ops right before the stub's execveat: an OCI container waits there until `start`. */
  beforeExec?: (t: Tape) => void;
  // OCI (core/oci/create.ts) inserts ops at three more points:
  /** Before pivot_root, host paths still reachable: sysctls, oom_score_adj, the createRuntime hooks' sync point. */
  beforePivot?: (t: Tape) => void;
  /** Before the switch of user, CAP_SETGID still held: additional groups (the plan's setgroups is then false). */
  beforeUser?: (t: Tape) => void;
  /** After no_new_privs and before a no_new_privs seccomp filter: waiting for `start`, exact capability sets. */
  beforeSeccomp?: (t: Tape) => void;
}

/**
 * Which outline a tape follows. The stages and their order are the same for all; a profile only
 * leaves stages out or runs the tape sealed (core/launch/launch.ts):
 *   box      nsrun's own boxes: new namespaces from clone3, the tape runs in place, the stub execs
 *            the command (or stays PID 1 with init = true).
 *   create   OCI create: sealed; namespaces made by unshare(2) (or joined) after the stub has started,
 *            the container's process forked into its PID namespace; the seccomp filter last.
 *   exec     OCI exec: sealed; the container's namespaces joined, none made; no root, mounts,
 *            hostname or network of its own; the seccomp filter last.
 */
export type Profile = "box" | "create" | "exec";

export function compileBox(plan: BoxPlan, opts: CompileOptions): Tape {
  const { fds } = opts;
  const profile = opts.profile ?? "box";
  const sealed = profile !== "box";
  const makesNamespaces = profile !== "exec";
  const t = new Tape(opts.arch);
  const joinCgroupInside = fds.cgroupProcs.length > 0;
  t.reportFd = fds.report;
  t.cgroupFd = fds.cgroupDir ?? -1;
  const join = [...(fds.join ?? [])].sort((a, b) => NAMESPACE_KINDS.indexOf(a.kind) - NAMESPACE_KINDS.indexOf(b.kind));
  const shape = joinShape(makesNamespaces ? plan : { namespaces: [] }, join, sealed);
  t.cloneFlags = shape.newAfterJoin ? 0 : cloneFlags(plan.namespaces, joinCgroupInside);
  const armDeath = opts.parentDeath ?? true;

  t.stage("namespaces", profile === "exec" ? "join the container's namespaces" : "start the box's first process");
  const handed = [fds.sync, fds.terminal].filter((fd): fd is number => fd !== null && fd !== undefined);
  keepOnlyFds(t, [fds.report, fds.stub, ...handed, ...fds.cgroupProcs, ...join.map((j) => j.fd), ...(fds.keep ?? [])]);
  if (armDeath) parentDeath(t, fds.report);
  if (joinCgroupInside && profile === "exec") joinCgroup(t, fds.cgroupProcs);
  // Joined namespaces in the canonical order: a user namespace first, which gives the rights to join
  // the others it owns. A joined PID namespace takes effect for children only (pid_namespaces(7)).
  for (const j of join) {
    t.doing(`join the ${j.kind} namespace`);
    setns(t, j.fd, unshareFlags([j.kind]));
    closeFd(t, j.fd);
  }
  if (joinCgroupInside && profile !== "exec") {
    // cgroup v1 has no CLONE_INTO_CGROUP: the process writes itself in ("0" is the writer), and only
    // then makes its cgroup namespace, whose root is the cgroup it is in at that moment.
    joinCgroup(t, fds.cgroupProcs);
    if (plan.namespaces.includes("cgroup") && !shape.newAfterJoin) unshare(t, F.CLONE_NEWCGROUP);
  }
  if (shape.newAfterJoin && makesNamespaces && plan.namespaces.length) {
    // With a joined user namespace the new ones must belong to it, not to nsrun's: unshare(2) them
    // now. Sealed, the stub makes them here too: it was exec'd in nsrun's namespaces, so its memory
    // belongs to the host's user namespace. A new PID namespace, like a joined one, is for children
    // (the fork below).
    t.doing(join.some((j) => j.kind === "user") ? "make the new namespaces, owned by the joined user namespace" : "make the box's namespaces");
    unshare(t, unshareFlags(plan.namespaces));
  }
  // Sealed, the stub is not dumpable, and a process that is not has /proc files owned by the host's
  // root: neither it (its time offsets, its own id maps) nor nsrun or newuidmap (which checks the
  // owner) could write them. In a user namespace of its own, which nothing else has entered yet, it
  // is dumpable until those are written (runc does the same), and never again.
  const ownUserNamespace = sealed && makesNamespaces && plan.namespaces.includes("user") && !join.some((j) => j.kind === "user");
  if (ownUserNamespace) setDumpable(t, 1, "let its time offsets and id maps be written");
  // Before anything could enter the new time namespace (a fork, the execve): then its offsets are fixed.
  if (makesNamespaces && plan.timeOffsets) emitTimeOffsets(t, plan.timeOffsets);
  // The box's process is then a child in the PID namespace; the process clone3 made reports its PID and exits.
  if (shape.fork) {
    emitForkIntoPidNamespace(t, fds.report);
    // A fork does not inherit the parent-death signal.
    if (armDeath) parentDeath(t, fds.report);
  }

  // In place, no PR_SET_DUMPABLE: "dumpable" belongs to the memory, which this process shares with
  // nsrun (CLONE_VM), so it would change nsrun's own.
  t.stage("user namespace");
  if (makesNamespaces && plan.idMap) emitIdMaps(t, plan.idMap, fds);
  if (ownUserNamespace) setDumpable(t, 0, "the time offsets and id maps are written");

  // A joined mount namespace (OCI) is used as it is (no root of the box's own, no mounts, no pivot),
  // unless the plan sets the root up inside it, as runc does; exec never sets one up.
  const ownRoot = (!shape.mountJoined || plan.rootfs.inJoinedNamespace === true) && profile !== "exec";
  if (profile !== "exec") {
    t.stage("mount namespace and private root");
    const mounts = withFiles(plan, fds.files);
    const early = ownRoot ? emitEarlyBinds(t, mounts) : new Map<MountOp, never>();
    // OCI's slave and shared mount propagation: the host's mounts become slaves here, not private.
    if (ownRoot && plan.propagation?.fromHost) emitSlaveRoot(t);
    else if (ownRoot) emitPrivateRoot(t);

    t.stage("rootfs");
    const root = t.reg("root");
    if (ownRoot) emitRootfs(t, plan.rootfs, root);
    // rootfsPropagation, before nsrun's mounts are attached below it (each mount gets its own), except
    // shared: pivot_root(2) refuses a shared new root, so the root is private until it is `/`.
    const rootPropagation = plan.propagation?.root;
    if (ownRoot && rootPropagation) emitPropagation(t, root, rootPropagation.type === F.MS_SHARED ? { ...rootPropagation, type: F.MS_PRIVATE } : rootPropagation);

    t.stage("mounts");
    // Before the pivot: bind sources and /dev/null are host paths, and an unprivileged proc mount is
    // allowed only while a fully visible proc (the host's) is mounted in the namespace.
    if (ownRoot) emitMounts(t, root, mounts, early, plan.rootfs.readonly && plan.rootfs.targetsFirst);

    t.stage("hostname");
    emitHostname(t, plan.hostname);

    t.stage("network");
    emitNetwork(t, plan.network, plan.namespaces.includes("net"), fds);

    opts.beforePivot?.(t);
    t.stage("pivot_root");
    if (ownRoot) {
      emitPivot(t, root);
      if (rootPropagation?.type === F.MS_SHARED) emitPropagation(t, root, rootPropagation);
      close(t, root);
    }
  }

  t.stage("process");
  emitProcess(t, plan.process);
  // After the new session (setsid in emitProcess): a session leader without a controlling terminal
  // is what may take one.
  if (plan.process.terminal) {
    if (fds.terminal === undefined) throw new Error("compile: a terminal needs the socket its master goes back over");
    emitTerminal(t, plan.process.terminal, fds.terminal);
  }
  // Raising a hard limit needs CAP_SYS_RESOURCE: before the capabilities go.
  emitRlimits(t, plan.rlimits);
  // Sealed: nsrun's own steps come before any seccomp filter, so that none of them depends on what
  // the container's profile allows (a profile older than close_range(2), say): every fd but 0-2
  // closes on exec (the report pipe too: its end of file says the command started), and no signal
  // stays blocked. After the filter, only NSRUN_OP_EXEC's execve(2) (write and exit_group if it fails).
  if (sealed) {
    emitSealFds(t, null);
    t.doing("unblock every signal for the command");
    unblockSignals(t);
  }

  t.stage("capabilities and user");
  const sec = plan.security;
  // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load it while we have it (as runc does).
  if (sec.seccomp && !sec.noNewPrivileges) emitSeccomp(t, sec.seccomp);
  emitBoundingSet(t, sec.capabilities, opts.lastCap); // needs CAP_SETPCAP: before the switch of user
  opts.beforeUser?.(t);
  emitUser(t, plan.process);
  emitCapabilitySets(t, sec.capabilities, plan.process.uid, sec.sets);
  // Changing credentials cleared the parent-death signal: arm it again, and check nsrun is still there.
  if (armDeath) parentDeath(t, fds.report);
  if (sec.noNewPrivileges) {
    t.doing("set no_new_privs");
    prctl(t, F.PR_SET_NO_NEW_PRIVS, 1, "1");
  }

  t.stage("seccomp and execve");
  if (!sealed) emitSealFds(t, fds.report);
  opts.beforeSeccomp?.(t);
  // Last but one: the filter refuses mount() and friends, which the stages above needed.
  if (sec.seccomp && sec.noNewPrivileges) emitSeccomp(t, sec.seccomp);
  opts.beforeExec?.(t);
  if (sealed) emitExecSealed(t, plan.process, fds.report);
  else emitExec(t, plan.process, { stubFd: fds.stub, reportFd: fds.report });
  return t;
}

function joinCgroup(t: Tape, procs: number[]): void {
  t.doing("join the box's cgroup");
  for (const fd of procs) writeText(t, fd, "0");
}

function setDumpable(t: Tape, on: 0 | 1, why: string): void {
  t.doing(`${on ? "dumpable" : "not dumpable"}: ${why}`);
  prctl(t, F.PR_SET_DUMPABLE, on, String(on));
}

/** How namespaces joined by path (OCI linux.namespaces[].path) shape the tape. */
export interface JoinShape {
  /** A user namespace is joined: the new namespaces are made by unshare(2) after setns(2), not by clone3. */
  newAfterJoin: boolean;
  /** The box's process must be a child: a PID namespace is joined, or made by unshare(2). */
  fork: boolean;
  /** A mount namespace is joined: the box uses it as it is. */
  mountJoined: boolean;
}

export function joinShape(plan: Pick<BoxPlan, "namespaces">, join: ReadonlyArray<{ kind: NamespaceKind }>, sealed = false): JoinShape {
  const joined = (kind: NamespaceKind) => join.some((j) => j.kind === kind);
  // Sealed (core/launch/): the stub makes the namespaces itself, as after a joined user namespace.
  const newAfterJoin = sealed || joined("user");
  return { newAfterJoin, fork: joined("pid") || (newAfterJoin && plan.namespaces.includes("pid")), mountJoined: joined("mount") };
}

/** The plan's mounts, with nsrun's own files bound in read-only before the masked and read-only paths. */
function withFiles(plan: BoxPlan, files: Map<string, string> | undefined): MountOp[] {
  if (!files?.size) return plan.mounts;
  const binds: MountOp[] = [...files].map(([target, source]) => ({
    op: "bind",
    source,
    target,
    recursive: false,
    attrs: F.MOUNT_ATTR_RDONLY | F.MOUNT_ATTR_NOSUID | F.MOUNT_ATTR_NODEV | F.MOUNT_ATTR_NOEXEC,
    file: true,
    origin: `nsrun's ${target}`,
  }));
  const last = plan.mounts.findIndex((m) => m.op === "mask" || m.op === "readonly");
  const at = last === -1 ? plan.mounts.length : last;
  return [...plan.mounts.slice(0, at), ...binds, ...plan.mounts.slice(at)];
}

/**
 * Close every inherited fd but 0-2 and `keep`: the child's fd table is a copy of nsrun's, with
 * Bun's own fds and, in a process that starts many boxes, other boxes' pipes in it.
 */
export function keepOnlyFds(t: Tape, keep: number[]): void {
  t.doing("close the fds the box must not have");
  t.kept = [...new Set([...t.kept, ...keep])];
  let from = 3;
  for (const fd of [...new Set(keep)].filter((fd) => fd >= 3).sort((a, b) => a - b)) {
    if (fd > from) closeRange(t, from, fd - 1, 0);
    from = fd + 1;
  }
  closeRange(t, from, 0xffffffff, 0);
}

/**
 * If nsrun dies, so does the box: SIGKILL on the parent's death (the whole PID namespace goes with
 * PID 1). The kernel sends it only if the parent dies after this prctl, so then check that nsrun,
 * the report pipe's only reader, is still there.
 */
function parentDeath(t: Tape, reportFd: number): void {
  t.doing("arm the parent-death signal");
  prctl(t, F.PR_SET_PDEATHSIG, F.SIGKILL, "SIGKILL");
  // struct pollfd { int fd; short events; short revents; }: POLLERR on a pipe whose reader is gone.
  const pollfd = t.struct(8, `{fd=${reportFd}}`, [[0, 4, reportFd]]);
  const polled = t.reg("polled");
  const gone = t.label(`nsrun_gone_${t.ops.length}`);
  const alive = t.label(`nsrun_alive_${t.ops.length}`);
  pollNow(t, pollfd, polled);
  t.load(t.field(pollfd, 4, "pollfd.events|revents<<16"), 4, polled);
  t.jumpIf(polled, "ANY", (F.POLLERR | F.POLLHUP) << 16, gone);
  t.jump(alive);
  t.place(gone);
  t.fail(ERRNO.EPIPE, "nsrun exited during setup");
  t.place(alive);
}

/**
 * The helper tapes: processes nsrun starts that never enter a box, in place (core/launch/).
 *   program   a host program as nsrun's child (pasta, slirp4netns): dies with nsrun, `fds` at 0, 1,
 *             2, ..., every other fd closed on exec, no signal blocked.
 *   userns    a user namespace with maps nsrun writes at a sync point, held open by nsrun through
 *             /proc/PID/ns/user, then the process exits (an id-mapped bind's map, core/oci/idmap.ts).
 *   as-root   root of a new user namespace with `map` (core/image/owners.ts): `body` emits the rest.
 * Each starts as a box does (its fds kept, then the parent-death signal), in the stage order of
 * compileBox.
 */
export type HelperTape =
  | { kind: "program"; report: number; what: string; fds: number[]; path: string; args: string[]; env: string[] }
  | { kind: "userns"; report: number; sync: number; what: string }
  | { kind: "as-root"; report: number; sync: number; what: string; map: IdMapPlan; keep: number[]; body: (t: Tape, reportFd: number) => void };

export function compileHelper(h: HelperTape): Tape {
  const t = new Tape();
  t.reportFd = h.report;
  if (h.kind === "program") {
    t.stage("network", h.what);
    keepOnlyFds(t, [h.report, ...h.fds]);
    t.doing("arm the parent-death signal");
    prctl(t, F.PR_SET_PDEATHSIG, F.SIGKILL, "SIGKILL");
    t.doing(`put its ${h.fds.length} fds at 0-${h.fds.length - 1}`);
    h.fds.forEach((fd, i) => dup3(t, fd, i));
    closeRange(t, h.fds.length, 0xffffffff, F.CLOSE_RANGE_CLOEXEC);
    unblockSignals(t);
    t.doing(`start ${h.path}`);
    execvePath(t, h.path, h.args, h.env);
    return t;
  }
  t.cloneFlags = F.CLONE_NEWUSER;
  t.stage(h.kind === "userns" ? "user namespace" : "namespaces", h.what);
  keepOnlyFds(t, [h.report, h.sync, ...(h.kind === "as-root" ? h.keep : [])]);
  t.doing("arm the parent-death signal");
  prctl(t, F.PR_SET_PDEATHSIG, F.SIGKILL, "SIGKILL");
  if (h.kind === "userns") {
    syncWithHost(t, h.report, h.sync, SYNC.IDMAP_USERNS, `${h.what}: wait while nsrun writes the id maps`);
    exitGroup(t, 0);
    return t;
  }
  t.stage("user namespace");
  emitIdMaps(t, h.map, { report: h.report, sync: h.sync });
  // Becoming root of the namespace cleared it.
  t.doing("arm the parent-death signal");
  prctl(t, F.PR_SET_PDEATHSIG, F.SIGKILL, "SIGKILL");
  h.body(t, h.report);
  return t;
}
