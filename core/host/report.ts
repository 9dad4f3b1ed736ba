// --report FILE: where the verdict goes. The folder is opened once, before anything else happens,
// and from then on only its fd is used: the report is written to a new file of nsrun's own in it
// (O_CREAT|O_EXCL, never through a symlink) and renamed over FILE at the end, so a reader sees the
// whole verdict or none, and nobody can point nsrun's write elsewhere meanwhile.
//
// Refused (exit 125, before the box exists): FILE an existing symlink (for everyone: following it
// would write wherever it points), or not a regular file (a folder, a FIFO); for root, any symlink
// on the way (RESOLVE_NO_SYMLINKS), since a symlink in a folder another user can write could aim
// root's write anywhere. An ordinary user's folders resolve as usual: the user can only write where
// they could anyway.
import { readFileSync } from "node:fs";
import { basename, dirname, resolve } from "node:path";
import * as F from "../../ffi/flags";
import { close, openat, openat2, renameat, typeAt, writeAll } from "../../ffi/fs";
import { NsrunError } from "../../ffi/error";
import { keepAcrossExec } from "../../ffi/io";
import type { BoxPlan } from "../stages/plan";
import { setupFailedVerdict, type Verdict, verdictJson } from "../verdict";

export class ReportPathError extends NsrunError {}

export interface ReportTarget {
  /** The path as given, for messages. */
  shown: string;
  dir: number;
  name: string;
  tmp: string;
  fd: number;
}

export function openReport(path: string, cwd: string, root: boolean): ReportTarget {
  const abs = resolve(cwd, path);
  const name = basename(abs);
  const shown = JSON.stringify(path);
  if (!path || path.endsWith("/") || name === "" || name === "." || name === "..") throw new ReportPathError(`--report: ${shown} is not a file name`);
  let dir = -1;
  try {
    dir = openat2(F.AT_FDCWD, dirname(abs), F.O_PATH | F.O_DIRECTORY, root ? F.RESOLVE_NO_SYMLINKS | F.RESOLVE_NO_MAGICLINKS : 0, dirname(abs));
  } catch (e) {
    const hint = root && /ELOOP/.test((e as Error).message) ? " (as root, nsrun follows no symlink to a report: give the real path)" : "";
    throw new ReportPathError(`--report: the folder of ${shown}: ${(e as Error).message}${hint}`);
  }
  try {
    const type = typeAt(dir, name, abs);
    if (type === F.S_IFLNK) throw new ReportPathError(`--report: ${shown} is a symbolic link; nsrun does not write through one (remove it, or give the path it points to)`);
    if (type !== null && type !== F.S_IFREG) throw new ReportPathError(`--report: ${shown} exists and is not a regular file`);
    const tmp = `.nsrun-report-${process.pid}-${Math.random().toString(36).slice(2, 10)}.tmp`;
    const fd = openat(dir, tmp, F.O_WRONLY | F.O_CREAT | F.O_EXCL | F.O_NOFOLLOW, 0o644, `${dirname(abs)}/${tmp}`);
    return { shown, dir, name, tmp, fd };
  } catch (e) {
    close(dir);
    if (e instanceof ReportPathError) throw e;
    throw new ReportPathError(`--report: ${(e as Error).message}`);
  }
}

/** Write the verdict and rename it into place (TypeScript's writer: a failed setup). */
export function writeReport(target: ReportTarget, verdict: Verdict): void {
  writeAll(target.fd, new TextEncoder().encode(verdictJson(verdict)), target.tmp);
  close(target.fd);
  renameat(target.dir, target.tmp, target.dir, target.name);
  close(target.dir);
}

/** The stub's --report option; its fds stay open across the hand-over. */
export function reportArgs(target: ReportTarget): string[] {
  keepAcrossExec(target.fd);
  keepAcrossExec(target.dir);
  return ["--report", String(target.fd), String(target.dir), target.tmp, target.name];
}

/**
 * The stub's verdict options for this box (ffi/executor/verdict.h): none without a report or a time
 * limit, so a plain box's supervisor measures nothing. `startNs`: when the command started.
 */
export function verdictArgs(plan: BoxPlan, startNs: bigint, report: ReportTarget | null): string[] {
  const limits = plan.timeLimits;
  if (!limits && !report) return [];
  const argv = ["--start", String(startNs)];
  if (limits?.wallMs) argv.push("--wall-limit", String(limits.wallMs));
  if (limits?.cpuMs) argv.push("--cpu-limit", String(limits.cpuMs));
  const stats = plan.cgroup?.stats;
  if (stats?.cpu) argv.push("--cpu-cgroup", String(stats.cpu.version), stats.cpu.path);
  if (stats?.memoryPeak) argv.push("--memory-peak", stats.memoryPeak);
  if (stats?.pidsPeak) argv.push("--pids-peak", stats.pidsPeak);
  if (stats?.pidsEvents) argv.push("--pids-events", stats.pidsEvents);
  if (!stats?.memoryPeak) argv.push("--maxrss-floor", String(ownPeakBytes()));
  if (report) argv.push(...reportArgs(report));
  return argv;
}

/** A setup that failed, in the report (when there is one). Best effort: the error itself goes to stderr anyway. */
export function reportSetupFailure(target: ReportTarget | null | undefined, message: string, exitCode: number, limits: BoxPlan["timeLimits"] | null): void {
  if (!target) return;
  try {
    writeReport(target, setupFailedVerdict(message, exitCode, 0n, { cpuMs: limits?.cpuMs ?? null, wallMs: limits?.wallMs ?? null }));
  } catch (e) {
    process.stderr.write(`nsrun: --report ${target.shown}: ${(e as Error).message}\n`);
  }
}

/**
 * This process's peak resident size (VmHWM). The box's first process began as a CLONE_VM clone of
 * nsrun, and the kernel carries that memory's peak into the process's ru_maxrss at its execve: a
 * maxrss at or below this says only "at most" (memory_peak_source "maxrss-upper-bound").
 */
export function ownPeakBytes(): number {
  try {
    const m = readFileSync("/proc/self/status", "utf8").match(/^VmHWM:\s+(\d+) kB/m);
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}
