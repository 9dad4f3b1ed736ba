// Tape ops only OCI containers need, inserted by create.ts at compileBox's hook points, and the
// fork that `exec` makes after joining a PID namespace. Each is a plain syscall (no new executor
// code): the tape stays a list of raw syscalls.
import { ERRNO } from "../../ffi/errno";
import { REPORT } from "../../ffi/executor/protocol";
import * as F from "../../ffi/flags";
import { capabilityMask } from "../capabilities";
import { close, closeFd, fcntl, openat, read, setgroups, syncWithHost, write, writeText } from "../tape/calls";
import type { Tape } from "../tape/tape";
import type { CapabilitySets } from "./plan";

/** Sync point ids of OCI tapes (core/userns.ts has 1 for the id maps). */
export const SYNC_CREATE_HOOKS = 0x4f01;
export const SYNC_READY = 0x4f02;

const PR_CAP_AMBIENT = 47;
const PR_CAP_AMBIENT_RAISE = 2;

/**
 * Before pivot_root the host's /proc is still at /proc, and /proc/self and /proc/sys resolve for
 * this process, in its new namespaces: oom_score_adj and the namespaced sysctls are written there.
 */
export function emitProcWrites(t: Tape, oomScoreAdj: number | null, sysctl: Array<[string, string]>): void {
  const fd = t.reg("procfile");
  const writes: Array<[string, string, string]> = sysctl.map(([file, value]) => [`/proc/sys/${file}`, value, `set the sysctl ${file.replace(/\//g, ".")}`]);
  if (oomScoreAdj !== null) writes.unshift(["/proc/self/oom_score_adj", String(oomScoreAdj), `set oom_score_adj to ${oomScoreAdj}`]);
  for (const [path, value, what] of writes) {
    t.doing(what, { EACCES: "only root may lower oom_score_adj or set this sysctl", EPERM: "only root may lower oom_score_adj or set this sysctl" });
    openat(t, F.AT_FDCWD, path, F.O_WRONLY, 0, { dst: fd });
    writeText(t, fd, value);
    close(t, fd);
  }
}

export function emitGroups(t: Tape, groups: number[]): void {
  t.doing(`set the additional groups ${JSON.stringify(groups)}`);
  setgroups(t, groups);
}

/**
 * The exact capability sets runtime-spec asks for (the compiler gave all of them the bounding set),
 * then the ambient ones raised one by one (each must be permitted and inheritable).
 */
export function emitCapabilitySets(t: Tape, caps: CapabilitySets): void {
  t.doing("set the effective, permitted and inheritable capability sets");
  const header = t.bytes(new Uint8Array(new Uint32Array([F.LINUX_CAPABILITY_VERSION_3, 0]).buffer), "{_LINUX_CAPABILITY_VERSION_3, 0}");
  const [e, p, i] = [caps.effective, caps.permitted, caps.inheritable].map(capabilityMask);
  const lo = (m: bigint) => Number(m & 0xffffffffn);
  const hi = (m: bigint) => Number(m >> 32n);
  const data = t.bytes(new Uint8Array(new Uint32Array([lo(e), lo(p), lo(i), hi(e), hi(p), hi(i)]).buffer), "{...}");
  const hex = (m: bigint) => `0x${m.toString(16)}`;
  t.sys("capset", [header, data], () => `capset({_LINUX_CAPABILITY_VERSION_3, 0}, {eff=${hex(e)}, prm=${hex(p)}, inh=${hex(i)}})`);
  for (const cap of caps.ambient) t.sys("prctl", [PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0], () => `prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, ${cap})`);
}

/** --preserve-fds: fds 3.. stay open into the command (emitSealFds marked them close-on-exec). */
export function emitPreserveFds(t: Tape, fds: number[]): void {
  t.doing("keep the preserved fds open across execve");
  for (const fd of fds) fcntl(t, fd, F.F_SETFD, 0, "F_SETFD, 0");
}

/**
 * The container is ready: tell `create` (a sync point it answers and then exits), then wait in
 * read(2) on exec.fifo until `start` writes a byte there. The fifo was opened O_RDWR by the host, so
 * this process is never without a reader and `start` never blocks.
 */
export function emitWaitForStart(t: Tape, reportFd: number, syncFd: number, execFifo: number): void {
  syncWithHost(t, reportFd, syncFd, SYNC_READY, "tell nsrun create the container is ready");
  closeFd(t, syncFd);
  t.doing("wait for nsrun start (exec.fifo)");
  const got = t.reg("started");
  const go = t.label("started");
  read(t, execFifo, t.slot(8, "byte"), 1, { dst: got });
  t.jumpIf(got, "EQ", 1, go);
  t.fail(ERRNO.EPIPE, "exec.fifo closed without a byte from nsrun start");
  t.place(go);
  closeFd(t, execFifo);
}

/**
 * fork(2) (a raw clone with SIGCHLD): after setns into a PID namespace only children are in it. The
 * child carries on with the tape; the parent reports the child's PID (REPORT.PID) and exits.
 */
export function emitForkIntoPidNamespace(t: Tape, reportFd: number): void {
  t.doing("fork into the joined PID namespace");
  const child = t.reg("child");
  const inChild = t.label("in_child");
  t.sys("clone", [F.SIGCHLD, 0, 0, 0, 0], () => "clone(SIGCHLD)", { dst: child });
  t.jumpIf(child, "EQ", 0, inChild);
  const record = t.struct(16, "{PID, child}", [[0, 4, REPORT.PID]]);
  t.store(child, t.field(record, 8, "record.value"), 8);
  t.sys("write", [reportFd, record, 16], () => `write(${reportFd}, {PID, child}, 16)`);
  t.sys("exit_group", [0], () => "exit_group(0)");
  t.place(inChild);
}

export { write };
