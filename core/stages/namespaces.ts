// Stage: the namespaces. The order is data (as in youki): one list, walked by one function.
//
// All kinds are created by ONE clone3(2) call, which starts the box's first process in them. When
// CLONE_NEWUSER is among the flags the kernel creates the user namespace first and makes it the owner
// of the others, which is what later permits an ordinary user to mount, pivot_root and set the
// hostname in them (user_namespaces(7)). The new process is PID 1 of the new PID namespace, which is
// why it, not nsrun, mounts the box's /proc (pid_namespaces(7)).
import { REPORT } from "../../ffi/executor/protocol";
import * as F from "../../ffi/flags";
import { close, openat, writeText } from "../tape/calls";
import type { Tape } from "../tape/tape";

export const NAMESPACE_ORDER = [
  ["user", F.CLONE_NEWUSER],
  ["mount", F.CLONE_NEWNS],
  ["pid", F.CLONE_NEWPID],
  ["uts", F.CLONE_NEWUTS],
  ["ipc", F.CLONE_NEWIPC],
  ["net", F.CLONE_NEWNET],
  ["cgroup", F.CLONE_NEWCGROUP],
  ["time", F.CLONE_NEWTIME],
] as const;

export type NamespaceKind = (typeof NAMESPACE_ORDER)[number][0];

/** A kind's file in /proc/PID/ns/: its name, except the mount namespace's, "mnt". */
export function nsFileName(kind: NamespaceKind): string {
  return kind === "mount" ? "mnt" : kind;
}

/** The kinds to create, in the canonical order. */
export function planNamespaces(wanted: Record<NamespaceKind, boolean>): NamespaceKind[] {
  return NAMESPACE_ORDER.filter(([kind]) => wanted[kind]).map(([kind]) => kind);
}

export function unshareFlags(kinds: readonly NamespaceKind[]): number {
  let flags = 0;
  for (const [kind, flag] of NAMESPACE_ORDER) if (kinds.includes(kind)) flags |= flag;
  return flags;
}

/**
 * The clone3(2) flags. A cgroup namespace takes the process's cgroup at creation as its root, so
 * when the box joins its cgroup from inside (cgroup v1: it writes cgroup.procs itself), the cgroup
 * namespace is made after that, with unshare(2), instead of here.
 */
export function cloneFlags(kinds: readonly NamespaceKind[], cgroupJoinedInside: boolean): number {
  return unshareFlags(cgroupJoinedInside ? kinds.filter((k) => k !== "cgroup") : kinds);
}

// ---- the time namespace's clock offsets ------------------------------------------------------
//
// A time namespace shifts CLOCK_MONOTONIC and CLOCK_BOOTTIME (and /proc/uptime) by fixed offsets,
// which /proc/PID/timens_offsets sets until a process enters the namespace (time_namespaces(7)).
// clone3(CLONE_NEWTIME|CLONE_VM) makes the namespace but does not put the new process in it (a
// process sharing nsrun's memory cannot change clocks under nsrun's threads): it is the process's
// time namespace "for children", entered by its children and, on recent kernels (tested on 6.18 by
// test/oci.test.ts), by the process itself at execve(2). So the tape writes the offsets through
// /proc/self/timens_offsets, which names that namespace, before anything could enter it: no fork
// comes earlier. Writing needs CAP_SYS_TIME in the namespace's owner, the box's user namespace
// when it has one.

/** [seconds, nanoseconds 0..999999999]; the seconds may be negative (-1.5 s is [-2, 500000000]). */
export type ClockOffset = [seconds: number, nanoseconds: number];

export interface TimeOffsets {
  monotonic: ClockOffset;
  boottime: ClockOffset;
}

/** Seconds, maybe fractional or negative, as a ClockOffset (to the nanosecond). */
export function clockOffset(seconds: number): ClockOffset {
  let s = Math.floor(seconds);
  let ns = Math.round((seconds - s) * 1e9);
  if (ns >= 1e9) {
    s += 1;
    ns -= 1e9;
  }
  return [s, ns];
}

/** What /proc/PID/timens_offsets takes: one "clock seconds nanoseconds" line per clock. */
export function timeOffsetsText(o: TimeOffsets): string {
  return `monotonic ${o.monotonic[0]} ${o.monotonic[1]}\nboottime ${o.boottime[0]} ${o.boottime[1]}\n`;
}

/** Tape: set the offsets of the time namespace this process's children (and its execve) enter. */
export function emitTimeOffsets(t: Tape, offsets: TimeOffsets): void {
  t.doing("set the time namespace's clock offsets", {
    ERANGE: "an offset would make the clock negative (more negative than the host's uptime) or too large",
    EACCES: "the time namespace has been entered already: its offsets are fixed",
    EPERM: "setting clock offsets needs CAP_SYS_TIME in the user namespace that owns the time namespace",
  });
  const fd = t.reg("timens");
  openat(t, F.AT_FDCWD, "/proc/self/timens_offsets", F.O_WRONLY, 0, { dst: fd });
  writeText(t, fd, timeOffsetsText(offsets));
  close(t, fd);
}

/** [namespaces] time: a table of offsets in seconds means a time namespace with those offsets. */
export function planTimeOffsets(time: boolean | { monotonic?: number; boottime?: number }): TimeOffsets | null {
  if (typeof time !== "object") return null;
  return { monotonic: clockOffset(time.monotonic ?? 0), boottime: clockOffset(time.boottime ?? 0) };
}

/**
 * fork(2) (a raw clone): after setns(2) into a PID namespace, or unshare(2) of one, only children
 * are in it. The child carries on with the tape; the parent reports the child's PID (REPORT.PID)
 * and exits. CLONE_PARENT makes the child a sibling, nsrun's own child from the start: nothing is
 * reparented, and a parent-death signal the child arms later is about nsrun, never about the parent
 * that is about to exit.
 */
export function emitForkIntoPidNamespace(t: Tape, reportFd: number): void {
  t.doing("fork into the PID namespace");
  t.expects.pid = true;
  const child = t.reg("child");
  const inChild = t.label(`in_child_${t.ops.length}`);
  t.sys("clone", [F.CLONE_PARENT | F.SIGCHLD, 0, 0, 0, 0], () => "clone(CLONE_PARENT|SIGCHLD)", { dst: child });
  t.jumpIf(child, "EQ", 0, inChild);
  const record = t.struct(16, "{PID, child}", [[0, 4, REPORT.PID]]);
  t.store(child, t.field(record, 8, "record.value"), 8);
  t.sys("write", [reportFd, record, 16], () => `write(${reportFd}, {PID, child}, 16)`);
  t.sys("exit_group", [0], () => "exit_group(0)");
  t.place(inChild);
}
