// The warm API's supervisor (core/api.ts's runBox): what the stub does for `nsrun run` once the
// command has started (ffi/executor/verdict.h), done here in the long-lived process that is the
// box's parent: kill the box at its wall_time or cpu_time, and measure how it ended into the same
// verdict (core/verdict.ts). The two follow one set of rules; test/verdict.test.ts runs both.
import { availableParallelism } from "node:os";
import { readdirSync, readFileSync } from "node:fs";
import { type ExitWithUsage, monotonicNs, waitExitWithUsage } from "../../ffi/verdict";
import type { CgroupStats } from "../stages/cgroup";
import type { BoxPlan } from "../stages/plan";
import { decideVerdict, type Ending, type Verdict } from "../verdict";
import { ownPeakBytes } from "./report";

const USER_HZ_NS = 10_000_000n; // /proc's clock ticks: USER_HZ, 100 a second on every Linux ABI

function readText(path: string): string | null {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return null;
  }
}

function fieldOf(text: string | null, key: string): number | null {
  const m = text?.match(new RegExp(`^${key}\\s+(\\d+)`, "m"));
  return m ? Number(m[1]) : null;
}

function numberIn(path: string | null): number | null {
  if (!path) return null;
  const t = readText(path)?.trim();
  return t && /^\d+$/.test(t) ? Number(t) : null;
}

/** The box's CPU time (ns, user and system apart) in its cgroup, or null. */
export function cgroupCpu(cpu: CgroupStats["cpu"]): { userNs: bigint; systemNs: bigint } | null {
  if (!cpu) return null;
  if (cpu.version === 2) {
    const text = readText(cpu.path);
    const user = fieldOf(text, "user_usec");
    const system = fieldOf(text, "system_usec");
    return user === null || system === null ? null : { userNs: BigInt(user) * 1000n, systemNs: BigInt(system) * 1000n };
  }
  const user = numberIn(`${cpu.path}/cpuacct.usage_user`);
  const system = numberIn(`${cpu.path}/cpuacct.usage_sys`);
  return user === null || system === null ? null : { userNs: BigInt(user), systemNs: BigInt(system) };
}

/** The box's process tree in /proc: each member's PID and ticks, user (utime + cutime) and system (stime + cstime). */
export function boxTree(box: number): Array<{ pid: number; user: bigint; system: bigint }> {
  const all = new Map<number, { ppid: number; user: bigint; system: bigint }>();
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const text = readText(`/proc/${name}/stat`);
    if (!text) continue;
    // After the command's name (which may hold ")" itself): state ppid ... utime(14) stime cutime cstime(17).
    const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
    all.set(Number(name), { ppid: Number(f[1]), user: BigInt(f[11]) + BigInt(f[13]), system: BigInt(f[12]) + BigInt(f[14]) });
  }
  // Each parent chain is walked once, what is learnt kept: a deep chain of processes costs O(n).
  const known = new Map<number, boolean>([[box, true]]);
  for (const start of all.keys()) {
    const chain: number[] = [];
    let at: number | undefined = start;
    while (at !== undefined && !known.has(at) && chain.length <= all.size) chain.push(at), (at = all.get(at)?.ppid);
    const inside = at !== undefined && known.get(at) === true;
    for (const pid of chain) known.set(pid, inside);
  }
  const members = [...known].filter(([, inside]) => inside).map(([pid]) => pid);
  return members.filter((pid) => all.has(pid)).map((pid) => ({ pid, user: all.get(pid)?.user ?? 0n, system: all.get(pid)?.system ?? 0n }));
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // gone already
  }
}

/**
 * Supervise a started box to its end: returns its exit (reaped) and verdict. `startNs` is when its
 * command started (CLOCK_MONOTONIC). Call before removing the box's cgroup, which it reads.
 */
export async function watchBox(plan: BoxPlan, pid: number, pidfd: number, startNs: bigint): Promise<{ exit: ExitWithUsage; verdict: Verdict }> {
  const limits = { cpuMs: plan.timeLimits?.cpuMs ?? null, wallMs: plan.timeLimits?.wallMs ?? null };
  const stats = plan.cgroup?.stats;
  const floor = ownPeakBytes();
  const ncpu = BigInt(Math.max(1, availableParallelism()));
  let killedFor: Ending["killedFor"] = null;
  let timer: ReturnType<typeof setTimeout> | null = null;
  let cpuSeen = 0n;
  let treeSeen = { userNs: 0n, systemNs: 0n }; // the /proc tree's last account (no cgroup)
  const kill = (why: "cpu-time" | "wall-time") => {
    if (killedFor) return;
    killedFor = why;
    killQuietly(pid);
    for (const p of boxTree(pid)) killQuietly(p.pid);
  };
  const cpuNow = () => {
    const c = cgroupCpu(stats?.cpu ?? null);
    if (c) return c.userNs + c.systemNs;
    const tree = boxTree(pid);
    const seen = { userNs: tree.reduce((sum, p) => sum + p.user * USER_HZ_NS, 0n), systemNs: tree.reduce((sum, p) => sum + p.system * USER_HZ_NS, 0n) };
    if (seen.userNs + seen.systemNs >= treeSeen.userNs + treeSeen.systemNs) treeSeen = seen;
    return seen.userNs + seen.systemNs;
  };
  // Without a cgroup, processes killed with the box's PID 1 are reaped by nobody who counts (a dying
  // PID namespace's init ignores SIGCHLD): their CPU time is only in what was seen of the tree. Unlike
  // the stub (which looks only with --report), a service runs many boxes at once: it looks only at
  // boxes with a time limit, the ones it runs as untrusted.
  const sampling = !stats?.cpu && (limits.wallMs !== null || limits.cpuMs !== null);
  // The same schedule as the stub's: look again before the box can have used the rest of its CPU
  // time on every CPU, every 5ms at most and 100ms at least, and at the wall-time deadline.
  const check = () => {
    timer = null;
    if (killedFor) return;
    const now = monotonicNs();
    if (sampling && limits.cpuMs === null) cpuNow();
    if (limits.wallMs !== null && now >= startNs + BigInt(limits.wallMs) * 1_000_000n) return kill("wall-time");
    if (limits.cpuMs !== null) {
      cpuSeen = cpuNow();
      if (cpuSeen >= BigInt(limits.cpuMs) * 1_000_000n) return kill("cpu-time");
    }
    schedule();
  };
  const schedule = () => {
    let wait = sampling ? 1_000_000_000n : -1n; // as the stub: a look at /proc each second without a CPU limit
    const now = monotonicNs();
    const toDeadline = limits.wallMs === null ? null : startNs + BigInt(limits.wallMs) * 1_000_000n - now;
    if (toDeadline !== null && (wait < 0n || toDeadline < wait)) wait = toDeadline;
    if (limits.cpuMs !== null) {
      let rest = (BigInt(limits.cpuMs) * 1_000_000n - cpuSeen) / ncpu;
      if (rest < 5_000_000n) rest = 5_000_000n;
      if (rest > 100_000_000n) rest = 100_000_000n;
      if (wait < 0n || rest < wait) wait = rest;
    }
    if (wait < 0n) wait = 0n;
    timer = setTimeout(check, Number(wait / 1_000_000n));
  };
  if (limits.wallMs !== null || limits.cpuMs !== null || sampling) schedule();
  const exit = await waitExitWithUsage(pidfd);
  if (timer) clearTimeout(timer);
  const endNs = monotonicNs();
  const cgroupCpuNow = cgroupCpu(stats?.cpu ?? null);
  const memoryPeak = numberIn(stats?.memoryPeak ?? null);
  const maxrss = exit.usage.maxRssBytes;
  const ending: Ending = {
    exit,
    wallNs: endNs - startNs,
    cpu: cgroupCpuNow
      ? { ...cgroupCpuNow, source: "cgroup" }
      : treeSeen.userNs + treeSeen.systemNs > exit.usage.userNs + exit.usage.systemNs
        ? { ...treeSeen, source: "rusage" }
        : { userNs: exit.usage.userNs, systemNs: exit.usage.systemNs, source: "rusage" },
    memory: memoryPeak !== null ? { bytes: memoryPeak, source: "cgroup" } : { bytes: maxrss, source: maxrss > floor ? "maxrss" : "maxrss-upper-bound" },
    pidsPeak: numberIn(stats?.pidsPeak ?? null),
    pidsRefused: stats?.pidsEvents ? fieldOf(readText(stats.pidsEvents), "max") : null,
    oomKills: plan.cgroup?.oomFile ? fieldOf(readText(plan.cgroup.oomFile), "oom_kill") : null,
    killedFor,
    limits,
  };
  return { exit, verdict: decideVerdict(ending) };
}
