// The verdict: how a box ended, as one JSON object (`nsrun run --report FILE`, and `verdict` in the
// result of core/api.ts's runBox). Two writers follow this one definition: the stub, which is nsrun's
// supervisor once the box's command runs (ffi/executor/verdict.h writes the fields in this order),
// and TypeScript, for a setup that failed and for the warm API. test/verdict.test.ts checks that
// the C writes exactly VERDICT_FIELDS, and that the CLI and runBox agree on a real box.
// docs/config.md ("The verdict") documents every field; test/docs.test.ts checks it names them all.
import { SIGKILL, SIGXCPU, SIGXFSZ } from "../ffi/flags";

/** Why the box ended, in the order the verdict picks them: the first that holds is the reason. */
export const REASONS = ["setup-failed", "wall-time", "cpu-time", "memory", "file-size", "pids", "signaled", "exited"] as const;
export type Reason = (typeof REASONS)[number];

export interface Verdict {
  reason: Reason;
  /** The command's exit status when it exited, else null. */
  exit_code: number | null;
  /** The signal that ended the box's first process ("SIGSEGV"), else null. */
  signal: string | null;
  /** From the command's start to its end (or to setup's failure), in milliseconds. */
  wall_ms: number;
  /** CPU time of all the box's processes, user + system, in milliseconds. */
  cpu_ms: number;
  user_ms: number;
  system_ms: number;
  /** "cgroup": the box's cgroup counted it; "rusage": the kernel's account of the box's process tree (wait4). */
  cpu_source: "cgroup" | "rusage" | null;
  /** The highest memory use: the cgroup's peak, or the largest process's peak resident size. */
  memory_peak_bytes: number | null;
  /** "maxrss-upper-bound": a maxrss no larger than nsrun's own peak, which the kernel counts in it (docs/config.md). */
  memory_peak_source: "cgroup" | "maxrss" | "maxrss-upper-bound" | null;
  /** The most processes at once (cgroup pids.peak), where the kernel keeps it; else null. */
  pids_peak: number | null;
  /** Processes the OOM killer ended in the box's memory cgroup; null without one. */
  oom_kills: number | null;
  /** nsrun itself killed the box, for its cpu_time or wall_time. */
  killed_by_nsrun: boolean;
  /** The limits in force, in milliseconds, or null. */
  cpu_time_limit_ms: number | null;
  wall_time_limit_ms: number | null;
  /** With reason "setup-failed": nsrun's error message (and its exit status in exit_code); else null. */
  error: string | null;
}

/** The fields, in the order both writers use. */
export const VERDICT_FIELDS = [
  "reason",
  "exit_code",
  "signal",
  "wall_ms",
  "cpu_ms",
  "user_ms",
  "system_ms",
  "cpu_source",
  "memory_peak_bytes",
  "memory_peak_source",
  "pids_peak",
  "oom_kills",
  "killed_by_nsrun",
  "cpu_time_limit_ms",
  "wall_time_limit_ms",
  "error",
] as const satisfies ReadonlyArray<keyof Verdict>;

/** signal(7)'s names, by number, for the standard signals; a real-time one is "SIGRTMIN+N". */
const SIGNAL_NAMES = [
  "", "SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE", "SIGKILL", "SIGUSR1", "SIGSEGV",
  "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM", "SIGSTKFLT", "SIGCHLD", "SIGCONT", "SIGSTOP", "SIGTSTP", "SIGTTIN",
  "SIGTTOU", "SIGURG", "SIGXCPU", "SIGXFSZ", "SIGVTALRM", "SIGPROF", "SIGWINCH", "SIGIO", "SIGPWR", "SIGSYS",
];

export function signalName(n: number): string {
  return SIGNAL_NAMES[n] ?? (n >= 34 && n <= 64 ? `SIGRTMIN+${n - 34}` : `SIG${n}`);
}

/** The JSON text of a verdict: the fields in order, one line (the C writer's exact layout). */
export function verdictJson(v: Verdict): string {
  return `{${VERDICT_FIELDS.map((k) => `${JSON.stringify(k)}:${JSON.stringify(v[k])}`).join(",")}}\n`;
}

/** What the end of a box measured; `decideVerdict` turns it into the verdict (the C does the same in verdict.h). */
export interface Ending {
  exit: { code: number | null; signal: number | null };
  wallNs: bigint;
  cpu: { userNs: bigint; systemNs: bigint; source: "cgroup" | "rusage" };
  memory: { bytes: number; source: "cgroup" | "maxrss" | "maxrss-upper-bound" } | null;
  pidsPeak: number | null;
  /** pids.events "max": forks the pids limit refused; null without a pids cgroup. */
  pidsRefused: number | null;
  oomKills: number | null;
  killedFor: "cpu-time" | "wall-time" | null;
  limits: { cpuMs: number | null; wallMs: number | null };
}

const ms = (ns: bigint) => Number(ns / 1_000_000n);

export function decideVerdict(e: Ending): Verdict {
  const cpuNs = e.cpu.userNs + e.cpu.systemNs;
  const sig = e.exit.signal;
  const failed = sig !== null || e.exit.code !== 0;
  let reason: Reason;
  if (e.killedFor) reason = e.killedFor;
  else if (e.limits.cpuMs !== null && (sig === SIGXCPU || (sig === SIGKILL && cpuNs >= BigInt(e.limits.cpuMs) * 1_000_000n))) reason = "cpu-time";
  else if ((e.oomKills ?? 0) > 0 && failed) reason = "memory";
  else if (sig === SIGXFSZ) reason = "file-size";
  else if ((e.pidsRefused ?? 0) > 0 && failed) reason = "pids";
  else if (sig !== null) reason = "signaled";
  else reason = "exited";
  return {
    reason,
    exit_code: sig === null ? e.exit.code : null,
    signal: sig === null ? null : signalName(sig),
    wall_ms: ms(e.wallNs),
    cpu_ms: ms(cpuNs),
    user_ms: ms(e.cpu.userNs),
    system_ms: ms(e.cpu.systemNs),
    cpu_source: e.cpu.source,
    memory_peak_bytes: e.memory?.bytes ?? null,
    memory_peak_source: e.memory?.source ?? null,
    pids_peak: e.pidsPeak,
    oom_kills: e.oomKills,
    killed_by_nsrun: e.killedFor !== null,
    cpu_time_limit_ms: e.limits.cpuMs,
    wall_time_limit_ms: e.limits.wallMs,
    error: null,
  };
}

/** The verdict of a box whose setup failed: the command never ran. */
export function setupFailedVerdict(error: string, exitCode: number, wallNs: bigint, limits: { cpuMs: number | null; wallMs: number | null }): Verdict {
  return {
    reason: "setup-failed",
    exit_code: exitCode,
    signal: null,
    wall_ms: ms(wallNs),
    cpu_ms: 0,
    user_ms: 0,
    system_ms: 0,
    cpu_source: null,
    memory_peak_bytes: null,
    memory_peak_source: null,
    pids_peak: null,
    oom_kills: null,
    killed_by_nsrun: false,
    cpu_time_limit_ms: limits.cpuMs,
    wall_time_limit_ms: limits.wallMs,
    error,
  };
}

/** "500ms", "1.5s", "2m", "1h", or a number of seconds -> milliseconds; null when it is not a duration above 0. */
export function parseDuration(input: string | number): number | null {
  let msValue: number;
  if (typeof input === "number") msValue = input * 1000;
  else {
    const m = input.trim().match(/^(\d+(?:\.\d+)?)\s*(ms|s|m|h)?$/);
    if (!m) return null;
    msValue = Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? "s") as "ms"];
  }
  if (!Number.isFinite(msValue) || msValue < 1 || msValue > MAX_DURATION_MS) return null;
  return Math.round(msValue);
}

/** A week: far beyond any judge's limit, and small enough for every clock and rlimit nsrun uses. */
export const MAX_DURATION_MS = 7 * 24 * 3_600_000;
export const DURATION_EXPECTED = 'expected a duration such as "500ms", "1.5s" or "2m" (at least 1ms, at most a week), or a number of seconds';
