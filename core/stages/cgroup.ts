// Stage: resource limits with a cgroup of the box's own (cgroups(7)).
//
// planCgroup turns [limits] and the host's cgroup layout into plain data: the directories to make,
// the files to write (in order), the cgroup.procs files the box's first process writes itself
// into, and what to read afterwards. applyCgroup/removeCgroup carry it out with ordinary file I/O;
// the root of the hierarchy is data too, so tests point it at a temporary folder.
//
// cgroup v2 is the main target. cgroup v1 (a hierarchy per controller) is the fallback for root.
// Either way the box's cgroup is made beneath the one nsrun runs in, never at the top.
import { O_CLOEXEC } from "../../ffi/flags";
import { accessSync, closeSync, constants, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import { NsrunError } from "../../ffi/error";

export interface Limits {
  memory?: number;
  memorySwap?: number;
  pids?: number;
  cpu?: number;
  cpuWeight?: number;
  ioWeight?: number;
  /** [limits] cpu_time: count the box's CPU time in its cgroup where the host allows (else nsrun falls back to rusage). */
  cpuAccounting?: boolean;
}

/** The host's cgroup layout, as /proc/self/mountinfo and /proc/self/cgroup describe it. */
export interface CgroupHost {
  /** The cgroup2 mount, nsrun's cgroup in it, the controllers that cgroup offers and hands down. */
  v2: { mount: string; own: string; controllers: string[]; delegated: string[]; writable?: boolean } | null;
  /**
   * Per v1 controller: its hierarchy's mount and nsrun's cgroup in it. For blkio, also which weight
   * file it has: blkio.weight (CFQ), blkio.bfq.weight (BFQ), or none (no scheduler with weights).
   */
  v1: Record<string, { mount: string; own: string; weightFile?: string | null }>;
}

export interface CgroupPlan {
  version: 1 | 2;
  /** Made in this order (parents first); removed in reverse. */
  dirs: string[];
  /** Written in this order. */
  writes: Array<[file: string, value: string]>;
  /** The box's first process writes its PID into each before it creates its namespaces. */
  procs: string[];
  /** The box's own cgroups: their members are killed at the end. */
  boxDirs: string[];
  /** Written (best effort) after the box's cgroups are emptied and before the folders go. */
  undo: Array<[file: string, value: string]>;
  /** v2: memory.events; v1: memory.oom_control. Both count `oom_kill`. */
  oomFile: string | null;
  /** The memory limit as the config said it, for the out-of-memory message. */
  memoryText: string | null;
  /** What the verdict reads at the end (core/verdict.ts); a file the kernel lacks reads as unknown. */
  stats?: CgroupStats;
}

export interface CgroupStats {
  /** v2: the cgroup's cpu.stat (user_usec, system_usec); v1: the cpuacct folder (cpuacct.usage_user, cpuacct.usage_sys). */
  cpu: { version: 1 | 2; path: string } | null;
  /** v2 memory.peak; v1 memory.max_usage_in_bytes. */
  memoryPeak: string | null;
  pidsPeak: string | null;
  /** pids.events: its "max" line counts the forks the pids limit refused. */
  pidsEvents: string | null;
}

/** A host that cannot give the limits asked for: the message says what is missing and how to fix it. */
export class CgroupUnavailable extends NsrunError {}

type Controller = "memory" | "pids" | "cpu" | "io";

function neededControllers(l: Limits): Controller[] {
  const out: Controller[] = [];
  if (l.memory !== undefined || l.memorySwap !== undefined) out.push("memory");
  if (l.pids !== undefined) out.push("pids");
  if (l.cpu !== undefined || l.cpuWeight !== undefined) out.push("cpu");
  if (l.ioWeight !== undefined) out.push("io");
  return out;
}

export const CPU_PERIOD_US = 100_000;

/** runc's mapping of cgroup v2 weights (1-10000) onto v1 cpu.shares (2-262144). */
export function weightToShares(weight: number): number {
  return Math.round(2 + ((weight - 1) * 262142) / 9999);
}

/** ... and onto v1 blkio.weight (10-1000). */
export function weightToBlkio(weight: number): number {
  return Math.round(10 + ((weight - 1) * 990) / 9999);
}

export function planCgroup(limits: Limits, host: CgroupHost, name: string, memoryText: string | null, rootless: boolean): CgroupPlan | null {
  const needed = neededControllers(limits);
  if (!needed.length) return limits.cpuAccounting ? planAccounting(limits, host, name, rootless) : null;
  if (host.v2 && needed.every((c) => host.v2?.controllers.includes(c))) return planV2(limits, host.v2, name, needed, memoryText);
  const v1Names: Record<Controller, string> = { memory: "memory", pids: "pids", cpu: "cpu", io: "blkio" };
  const missing = needed.filter((c) => !host.v1[v1Names[c]]);
  if (missing.length) {
    const have = host.v2 ? `cgroup v2 offers ${host.v2.controllers.join(" ") || "no controllers"}` : "there is no cgroup v2";
    throw new CgroupUnavailable(`no cgroup controller for ${missing.join(", ")} (${have}, and cgroup v1 has no ${missing.join(", ")} hierarchy)`);
  }
  if (rootless)
    throw new CgroupUnavailable(
      "this host has the controllers only as cgroup v1, where an ordinary user cannot make cgroups; run nsrun as root, or boot with cgroup v2 (systemd.unified_cgroup_hierarchy=1) and delegate it (Delegate=yes)",
    );
  return planV1(limits, host.v1, name, needed, v1Names, memoryText);
}

/**
 * cpu_time alone: a cgroup only to count the box's CPU time, where one can be had without asking
 * anything of the user. v2's cpu.stat needs no controller, only a cgroup nsrun may make (its own
 * cgroup writable: root, or a delegated one); v1 needs root and a cpuacct hierarchy. Elsewhere
 * (rootless on cgroup v1): no cgroup, and nsrun counts with rusage and RLIMIT_CPU (docs/config.md).
 */
function planAccounting(l: Limits, host: CgroupHost, name: string, rootless: boolean): CgroupPlan | null {
  if (host.v2?.writable && host.v2.controllers.includes("cpu")) return planV2(l, host.v2, name, [], null);
  if (!rootless && host.v1.cpuacct) return planV1(l, host.v1, name, [], { memory: "memory", pids: "pids", cpu: "cpu", io: "blkio" }, null);
  return null;
}

/**
 * cgroup v2 forbids "internal processes": a cgroup other than the root may hand controllers down to
 * children only while no process is in it, and nsrun itself is in its own cgroup C. So, unless C is
 * the root, nsrun first moves itself into a leaf of its own, C/nsrun-PID/supervisor, leaving C empty
 * (when nsrun is alone there: a `systemd-run --scope` of its own), enables the controllers on the
 * way down, and puts the box in C/nsrun-PID/box. Its own memory then never counts against the box's.
 * At the end the steps are undone in reverse, and nsrun moves back into C.
 */
function planV2(l: Limits, v2: NonNullable<CgroupHost["v2"]>, name: string, needed: Controller[], memoryText: string | null): CgroupPlan {
  const own = `${v2.mount}${v2.own === "/" ? "" : v2.own}`;
  const isRoot = v2.own === "/";
  const top = `${own}/${name}`;
  const dir = isRoot ? top : `${top}/box`;
  const supervisor = `${top}/supervisor`;
  const writes: CgroupPlan["writes"] = [];
  const undo: CgroupPlan["undo"] = [];
  const toEnable = needed.filter((c) => !v2.delegated.includes(c));
  const on = needed.map((c) => `+${c}`).join(" ");
  if (!isRoot) writes.push([`${supervisor}/cgroup.procs`, "0"]); // "0": the process that writes
  if (toEnable.length) writes.push([`${own}/cgroup.subtree_control`, toEnable.map((c) => `+${c}`).join(" ")]);
  if (!isRoot && needed.length) writes.push([`${top}/cgroup.subtree_control`, on]);
  if (!isRoot && needed.length) undo.push([`${top}/cgroup.subtree_control`, needed.map((c) => `-${c}`).join(" ")]);
  if (toEnable.length) undo.push([`${own}/cgroup.subtree_control`, toEnable.map((c) => `-${c}`).join(" ")]);
  if (!isRoot) undo.push([`${own}/cgroup.procs`, "0"]);
  if (l.memory !== undefined) writes.push([`${dir}/memory.max`, String(l.memory)]);
  if (l.memorySwap !== undefined) writes.push([`${dir}/memory.swap.max`, String(l.memorySwap)]);
  if (l.pids !== undefined) writes.push([`${dir}/pids.max`, String(l.pids)]);
  if (l.cpu !== undefined) writes.push([`${dir}/cpu.max`, `${Math.round(l.cpu * CPU_PERIOD_US)} ${CPU_PERIOD_US}`]);
  if (l.cpuWeight !== undefined) writes.push([`${dir}/cpu.weight`, String(l.cpuWeight)]);
  if (l.ioWeight !== undefined) writes.push([`${dir}/io.weight`, `default ${l.ioWeight}`]);
  return {
    version: 2,
    dirs: isRoot ? [dir] : [top, supervisor, dir],
    writes,
    procs: [`${dir}/cgroup.procs`],
    boxDirs: [dir],
    undo,
    oomFile: l.memory !== undefined ? `${dir}/memory.events` : null,
    memoryText,
    stats: {
      cpu: { version: 2, path: `${dir}/cpu.stat` }, // a core file of every v2 cgroup, controller or not
      memoryPeak: needed.includes("memory") ? `${dir}/memory.peak` : null,
      pidsPeak: needed.includes("pids") ? `${dir}/pids.peak` : null,
      pidsEvents: needed.includes("pids") ? `${dir}/pids.events` : null,
    },
  };
}

function planV1(l: Limits, v1: CgroupHost["v1"], name: string, needed: Controller[], names: Record<Controller, string>, memoryText: string | null): CgroupPlan {
  const dirOf = (c: Controller) => {
    const h = v1[names[c]];
    return `${h.mount}${h.own === "/" ? "" : h.own}/${name}`;
  };
  // cpu_time counts in cpuacct's hierarchy (which may be cpu's too, "cpu,cpuacct"), when the host has one.
  const cpuacct = l.cpuAccounting && v1.cpuacct ? `${v1.cpuacct.mount}${v1.cpuacct.own === "/" ? "" : v1.cpuacct.own}/${name}` : null;
  const dirs = [...new Set([...needed.map(dirOf), ...(cpuacct ? [cpuacct] : [])])];
  const writes: CgroupPlan["writes"] = [];
  if (l.memory !== undefined) {
    writes.push([`${dirOf("memory")}/memory.limit_in_bytes`, String(l.memory)]);
    // memsw counts memory plus swap, so it can be set only after, and never below, the memory limit.
    if (l.memorySwap !== undefined) writes.push([`${dirOf("memory")}/memory.memsw.limit_in_bytes`, String(l.memory + l.memorySwap)]);
  }
  if (l.pids !== undefined) writes.push([`${dirOf("pids")}/pids.max`, String(l.pids)]);
  if (l.cpu !== undefined) {
    writes.push([`${dirOf("cpu")}/cpu.cfs_period_us`, String(CPU_PERIOD_US)]);
    writes.push([`${dirOf("cpu")}/cpu.cfs_quota_us`, String(Math.round(l.cpu * CPU_PERIOD_US))]);
  }
  if (l.cpuWeight !== undefined) writes.push([`${dirOf("cpu")}/cpu.shares`, String(weightToShares(l.cpuWeight))]);
  if (l.ioWeight !== undefined) {
    // A file the hierarchy lacks cannot be made (EACCES): say so while nothing exists yet.
    const file = v1[names.io].weightFile === undefined ? "blkio.weight" : v1[names.io].weightFile;
    if (!file) throw new CgroupUnavailable("io_weight: this host's blkio controller (cgroup v1) has no weight file (blkio.weight or blkio.bfq.weight): its I/O schedulers offer no weights; remove io_weight");
    writes.push([`${dirOf("io")}/${file}`, String(weightToBlkio(l.ioWeight))]);
  }
  return {
    version: 1,
    dirs,
    writes,
    procs: dirs.map((d) => `${d}/cgroup.procs`),
    boxDirs: dirs,
    undo: [],
    oomFile: l.memory !== undefined ? `${dirOf("memory")}/memory.oom_control` : null,
    memoryText,
    stats: {
      cpu: cpuacct ? { version: 1, path: cpuacct } : null,
      memoryPeak: needed.includes("memory") ? `${dirOf("memory")}/memory.max_usage_in_bytes` : null,
      pidsPeak: needed.includes("pids") ? `${dirOf("pids")}/pids.peak` : null,
      pidsEvents: needed.includes("pids") ? `${dirOf("pids")}/pids.events` : null,
    },
  };
}

/** Read the host's layout. `procRoot` is "/proc" except in tests. */
export function inspectCgroups(procRoot = "/proc"): CgroupHost {
  const host: CgroupHost = { v2: null, v1: {} };
  const mounts = readFileSync(`${procRoot}/self/mountinfo`, "utf8").split("\n");
  const membership = readFileSync(`${procRoot}/self/cgroup`, "utf8").split("\n").filter(Boolean);
  for (const line of mounts) {
    const [pre, post] = line.split(" - ");
    if (!post) continue;
    const [fstype, , superOpts] = post.split(" ");
    const mountPoint = pre.split(" ")[4];
    if (fstype === "cgroup2") {
      const own = membership.find((m) => m.startsWith("0::"))?.slice(3) ?? "/";
      const ownDir = `${mountPoint}${own === "/" ? "" : own}`;
      const controllers = readWords(`${ownDir}/cgroup.controllers`);
      host.v2 = { mount: mountPoint, own, controllers, delegated: readWords(`${ownDir}/cgroup.subtree_control`), writable: canWrite(ownDir) };
    } else if (fstype === "cgroup") {
      for (const opt of superOpts.split(",")) {
        const entry = membership.find((m) => m.split(":")[1]?.split(",").includes(opt));
        if (entry && !host.v1[opt]) host.v1[opt] = { mount: mountPoint, own: entry.split(":").slice(2).join(":") };
        if (opt === "blkio" && host.v1.blkio?.mount === mountPoint) host.v1.blkio.weightFile = blkioWeightFile(`${mountPoint}${host.v1.blkio.own === "/" ? "" : host.v1.blkio.own}`);
      }
    }
  }
  return host;
}

/** CFQ's blkio.weight, or BFQ's blkio.bfq.weight (which a root cgroup does not show, but its stats tell BFQ is there). */
function blkioWeightFile(dir: string): string | null {
  if (existsSync(`${dir}/blkio.weight`)) return "blkio.weight";
  try {
    return readdirSync(dir).some((f) => f.startsWith("blkio.bfq.")) ? "blkio.bfq.weight" : null;
  } catch {
    return null;
  }
}

function canWrite(dir: string): boolean {
  try {
    accessSync(dir, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

function readWords(file: string): string[] {
  try {
    return readFileSync(file, "utf8").trim().split(/\s+/).filter(Boolean);
  } catch {
    return [];
  }
}

/**
 * Remove the cgroups an nsrun left behind when it was killed (SIGKILL gives it no chance to clean
 * up): siblings of this box's cgroup named nsrun-PID or nsrun-PID-N whose PID no longer runs.
 * What is still in them, a box that lost its nsrun, is killed first. Best effort, quiet.
 */
export function sweepStaleCgroups(plan: CgroupPlan, running: (pid: number) => boolean, trace: ((line: string) => void) | null = null): void {
  const parents = new Set(plan.dirs.map((d) => d.slice(0, d.lastIndexOf("/"))).filter((p) => !/\/nsrun-\d+(-\d+)?$/.test(p)));
  for (const parent of parents) {
    let names: string[];
    try {
      names = readdirSync(parent);
    } catch {
      continue;
    }
    for (const name of names) {
      const m = name.match(/^nsrun-(\d+)(?:-\d+)?$/);
      if (!m || running(Number(m[1]))) continue;
      trace?.(`remove the cgroup ${JSON.stringify(`${parent}/${name}`)} of a dead nsrun (PID ${m[1]})`);
      removeTree(`${parent}/${name}`, plan.version);
    }
  }
}

function removeTree(dir: string, version: 1 | 2): void {
  let children: string[] = [];
  try {
    children = readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => `${dir}/${e.name}`);
  } catch {
    return;
  }
  for (const child of children) removeTree(child, version);
  for (let i = 0; i < 50; i++) {
    const members = readWords(`${dir}/cgroup.procs`).map(Number);
    if (!members.length) break;
    if (version === 2 && existsSync(`${dir}/cgroup.kill`)) writeFileSync(`${dir}/cgroup.kill`, "1");
    else for (const pid of members) killQuietly(pid);
    Bun.sleepSync(2);
  }
  tryRmdir(dir);
}

/** Make the cgroup and write its limits. On failure, undo what was made and throw a one-line reason. */
export function applyCgroup(plan: CgroupPlan, trace: ((line: string) => void) | null = null): void {
  const made: string[] = [];
  try {
    for (const dir of plan.dirs) {
      trace?.(`mkdir(${JSON.stringify(dir)})`);
      try {
        mkdirSync(dir);
      } catch (e) {
        throw new Error(`mkdir ${JSON.stringify(dir)}: ${(e as NodeJS.ErrnoException).code ?? e}`);
      }
      made.push(dir);
    }
    for (const [file, value] of plan.writes) {
      try {
        trace?.(`write(${JSON.stringify(file)}, ${JSON.stringify(value)})`);
        writeFileSync(file, value);
      } catch (e) {
        throw new Error(`write ${JSON.stringify(value)} to ${JSON.stringify(file)}: ${(e as NodeJS.ErrnoException).code ?? e}`);
      }
    }
  } catch (e) {
    undoWrites(plan);
    for (const dir of made.reverse()) tryRmdir(dir);
    throw e;
  }
}

function undoWrites(plan: CgroupPlan): void {
  for (const [file, value] of plan.undo) {
    try {
      writeFileSync(file, value);
    } catch {
      // best effort: a step that was never done cannot be undone
    }
  }
}

/**
 * How the box's first process gets into its cgroup: on v2 the directory, for clone3's
 * CLONE_INTO_CGROUP (it starts there, atomically); on v1 each controller's cgroup.procs, which the
 * process writes itself into. The caller closes them once the process exists.
 */
export function openCgroupJoin(plan: CgroupPlan): { dir: number | null; procs: number[] } {
  if (plan.version === 2) return { dir: openSync(plan.boxDirs[0], constants.O_RDONLY | constants.O_DIRECTORY | O_CLOEXEC), procs: [] };
  const procs: number[] = [];
  try {
    for (const file of plan.procs) procs.push(openSync(file, constants.O_WRONLY | O_CLOEXEC));
  } catch (e) {
    for (const fd of procs) closeSync(fd);
    throw e;
  }
  return { dir: null, procs };
}

export function closeCgroupJoin(join: { dir: number | null; procs: number[] }): void {
  for (const fd of [join.dir, ...join.procs]) if (fd !== null) closeSync(fd);
}

/** True when the kernel's OOM killer killed a process of the box. */
export function oomKilled(plan: CgroupPlan): boolean {
  if (!plan.oomFile) return false;
  try {
    const m = readFileSync(plan.oomFile, "utf8").match(/^oom_kill (\d+)/m);
    return m !== null && Number(m[1]) > 0;
  } catch {
    return false;
  }
}

/**
 * Remove the box's cgroup, killing whatever the box left in it first (cgroup.kill on v2, else
 * SIGKILL to each member). Waits briefly for the members to be gone: rmdir fails while any remain.
 */
export async function removeCgroup(plan: CgroupPlan, trace: ((line: string) => void) | null = null): Promise<void> {
  for (const dir of [...plan.boxDirs].reverse()) {
    if (!existsSync(dir)) continue;
    const kill = `${dir}/cgroup.kill`;
    for (let i = 0; i < 100; i++) {
      const members = readWords(`${dir}/cgroup.procs`).map(Number);
      if (!members.length) break;
      trace?.(`${members.length} process${members.length === 1 ? "" : "es"} left in ${JSON.stringify(dir)}: SIGKILL`);
      if (plan.version === 2 && existsSync(kill)) writeFileSync(kill, "1");
      else for (const pid of members) killQuietly(pid);
      await Bun.sleep(10);
    }
  }
  undoWrites(plan);
  for (const dir of [...plan.dirs].reverse()) {
    trace?.(`rmdir(${JSON.stringify(dir)})`);
    if (existsSync(dir)) tryRmdir(dir);
  }
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // already gone
  }
}

/**
 * rmdir(2) of a cgroup, with a few more tries while it is EBUSY: on cgroup v1 a child just removed
 * goes offline asynchronously, and until it has, its parent still counts it and refuses rmdir. A
 * child that is still there (another container's, below a parent they share) is no such wait.
 */
function tryRmdir(dir: string): void {
  for (let attempt = 0; attempt < 50; attempt++) {
    try {
      rmdirSync(dir);
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EBUSY" || hasChildCgroup(dir)) return; // reported by the caller's check, if it matters
      Bun.sleepSync(2);
    }
  }
}

function hasChildCgroup(dir: string): boolean {
  try {
    return readdirSync(dir, { withFileTypes: true }).some((e) => e.isDirectory());
  } catch {
    return false;
  }
}
