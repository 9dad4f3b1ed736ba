// Tape ops only OCI containers need, inserted by create.ts at compileBox's hook points, and the
// fork that `exec` makes after joining a PID namespace. Each is a plain syscall (no new executor
// code): the tape stays a list of raw syscalls.
import { ERRNO, errnoName } from "../../ffi/errno";
import { REPORT, type Report } from "../../ffi/executor/protocol";
import * as F from "../../ffi/flags";
import { close, closeFd, closeRange, dup3, fcntl, openat, prctl, read, setgroups, syncWithHost, unblockSignals, write, writeText } from "../tape/calls";
import type { Ptr, Tape } from "../tape/tape";

import { SYNC } from "../launch/sync";

/** Sync point ids of OCI tapes, from the one list (core/launch/sync.ts). */
export const SYNC_CREATE_HOOKS = SYNC.CREATE_HOOKS;
export const SYNC_READY = SYNC.READY;


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

export { emitForkIntoPidNamespace } from "../stages/namespaces";

export { write };

// ---- hooks run inside the container (createContainer, startContainer) -------------------------
//
// No JavaScript runs in the container, so such a hook is a process the tape forks: the child takes
// the state JSON on its stdin (a pipe nsrun filled), keeps only fds 0-2, dies with the container's
// process (PR_SET_PDEATHSIG), unblocks signals and execve(2)s the hook; the parent waits for it
// through a pidfd (ppoll with the hook's timeout, then waitid). A hook that fails ends the tape
// with a HOOK record, which says which hook and why; nsrun create or start turns it into the error.

/** The hook lists the tape runs, in the HOOK record's numbering. */
export const TAPE_HOOKS = ["createContainer", "startContainer"] as const;
export type TapeHookList = (typeof TAPE_HOOKS)[number];

/** Why a hook failed: the HOOK record's index is (reason << 24) | (list << 16) | position. */
const HOOK_EXITED = 1; // value: its exit status
const HOOK_KILLED = 2; // value: the signal
const HOOK_TIMED_OUT = 3; // value: the timeout, seconds
const HOOK_NOT_RUN = 4; // value: -errno of execve(2)


export interface TapeHook {
  list: TapeHookList;
  position: number;
  path: string;
  args: string[];
  env: string[];
  timeout: number | null;
  /** The read end of the pipe that holds the state JSON (the host keeps the write end). */
  stdin: number;
}

function hookRecord(t: Tape, h: TapeHook, reason: number, value: number | null, show: string): Ptr {
  const index = (reason << 24) | (TAPE_HOOKS.indexOf(h.list) << 16) | h.position;
  t.expects.hooks = true;
  return t.struct(16, `{HOOK, ${show}}`, [[0, 4, REPORT.HOOK], [4, 4, index], ...(value === null ? [] : [[8, 8, value] as [number, 8, number]])]);
}

function reportHook(t: Tape, reportFd: number, record: Ptr, code: number): void {
  t.sys("write", [reportFd, record, 16], () => `write(${reportFd}, ${record.show}, 16)`);
  t.sys("exit_group", [code], () => `exit_group(${code})`);
}

/** Tape: run one hook in a child of this process, inside its namespaces; end the tape if it fails. */
export function emitHook(t: Tape, h: TapeHook, reportFd: number): void {
  const name = `hooks.${h.list}[${h.position}] ${JSON.stringify(h.path)}`;
  t.doing(`run ${name}`);
  const n = t.ops.length;
  const child = t.reg("hook");
  const pidfd = t.reg("hook_pidfd");
  const got = t.reg("hook_got");
  const inChild = t.label(`hook_child_${n}`);
  const exited = t.label(`hook_exited_${n}`);
  const signalled = t.label(`hook_signalled_${n}`);
  const done = t.label(`hook_done_${n}`);
  const slot = t.slot(8, "pidfd");
  // fork(2) with CLONE_PIDFD: the pidfd lands in the parent_tid argument's int.
  t.sys("clone", [F.SIGCHLD | F.CLONE_PIDFD, 0, slot, 0, 0], () => "clone(SIGCHLD|CLONE_PIDFD, &pidfd)", { dst: child });
  t.jumpIf(child, "EQ", 0, inChild);
  t.load(slot, 4, pidfd);
  const pollfd = t.struct(8, "{hook_pidfd, POLLIN}", [[4, 2, F.POLLIN]]);
  t.store(pidfd, t.field(pollfd, 0, "pollfd.fd"), 4);
  const timeout = h.timeout ? t.bytes(new Uint8Array(new BigUint64Array([BigInt(h.timeout), 0n]).buffer), `{${h.timeout}, 0}`) : null;
  t.sys("ppoll", [pollfd, 1, timeout ?? 0, 0, 8], () => `ppoll({hook_pidfd, POLLIN}, 1, ${timeout ? timeout.show : "NULL"}, NULL, 8)`, { dst: got });
  const info = t.slot(128, "siginfo");
  const wait = () => t.sys("waitid", [F.P_PIDFD, pidfd, info, F.WEXITED, 0], () => "waitid(P_PIDFD, hook_pidfd, &siginfo, WEXITED, NULL)");
  t.jumpIf(got, "GE", 1, exited);
  // The timeout passed: kill it, reap it, fail.
  t.sys("pidfd_send_signal", [pidfd, F.SIGKILL, 0, 0], () => "pidfd_send_signal(hook_pidfd, SIGKILL, NULL, 0)");
  wait();
  reportHook(t, reportFd, hookRecord(t, h, HOOK_TIMED_OUT, h.timeout, `timed out after ${h.timeout}s`), 125);
  t.place(exited);
  wait();
  close(t, pidfd);
  // siginfo_t: si_code at 8, si_status at 24 (the exit status, or the signal).
  t.load(t.field(info, 8, "siginfo.si_code"), 4, got);
  t.load(t.field(info, 24, "siginfo.si_status"), 4, child);
  t.jumpIf(got, "NE", F.CLD_EXITED, signalled);
  t.jumpIf(child, "EQ", 0, done);
  const status = hookRecord(t, h, HOOK_EXITED, null, "exit status");
  t.store(child, t.field(status, 8, "record.value"), 8);
  reportHook(t, reportFd, status, 125);
  t.place(signalled);
  const killed = hookRecord(t, h, HOOK_KILLED, null, "signal");
  t.store(child, t.field(killed, 8, "record.value"), 8);
  reportHook(t, reportFd, killed, 125);

  // The child: the state on stdin, only fds 0-2 beyond the execve, no signal blocked, then the hook.
  t.place(inChild);
  dup3(t, h.stdin, 0);
  prctl(t, F.PR_SET_PDEATHSIG, F.SIGKILL, "SIGKILL");
  closeRange(t, 3, 0xffffffff, F.CLOSE_RANGE_CLOEXEC);
  unblockSignals(t);
  const all = Array.from({ length: 63 }, (_, i) => i + 1);
  t.sys("execveat", [F.AT_FDCWD, t.str(h.path), t.strv(h.args), t.strv(h.env), 0], () => `execveat(AT_FDCWD, ${JSON.stringify(h.path)}, ${JSON.stringify(h.args)}, [${h.env.length} variables], 0)`, { dst: child, ok: all });
  const notRun = hookRecord(t, h, HOOK_NOT_RUN, null, "-errno");
  t.store(child, t.field(notRun, 8, "record.value"), 8);
  reportHook(t, reportFd, notRun, 127);

  t.place(done);
  closeFd(t, h.stdin);
}

/** A HOOK record as the error it stands for, or null for another record. */
export function describeHookReport(r: Report, hooks: Record<TapeHookList, Array<{ path: string }>>): string | null {
  if (r.kind !== REPORT.HOOK) return null;
  const list = TAPE_HOOKS[(r.index >> 16) & 0xff] ?? "?";
  const position = r.index & 0xffff;
  const where = `hooks.${list}[${position}] ${JSON.stringify(hooks[list as TapeHookList]?.[position]?.path ?? "?")}`;
  switch (r.index >>> 24) {
    case HOOK_EXITED:
      return `${where}: exited with status ${r.value}`;
    case HOOK_KILLED:
      return `${where}: killed by signal ${r.value}`;
    case HOOK_TIMED_OUT:
      return `${where}: timed out after ${r.value}s`;
    case HOOK_NOT_RUN:
      return `${where}: cannot run it (${errnoName(-r.value)})`;
  }
  return `${where}: failed`;
}
