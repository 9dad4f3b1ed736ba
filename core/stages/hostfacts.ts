// The host facts planning reads (inspectHost, the one impure step before planning), and the box's
// cgroup, planned for each box. Apart from plan.ts so that a box from the tape cache, which plans
// nothing else, loads none of the planning stages (core/host/run.ts loads plan.ts only on a miss).
import { readFileSync, statSync } from "node:fs";
import { resolve } from "node:path";
import { ConfigError } from "../errors";
import { type CgroupHost, type CgroupPlan, CgroupUnavailable, inspectCgroups, type Limits, planCgroup } from "./cgroup";
import type { LoadedConfig } from "./config";
import { canonicalHostPath, HostPathError, readInRootfs } from "./hostpath";
import type { SourceFact } from "./mounts";
import { installed } from "./network";
import { parseSize } from "./sizes";
import { idMapped, parseIdMap, readSubordinateIds, SUBID_HELPERS, type SubordinateIds } from "./userns";
import type { Input } from "../host/inputs";

/** What planning needs to know about the host; gathered by inspectHost, the one impure step. */
export interface HostFacts {
  rootfs: string;
  /** The symlink-free path of the config's `layer` folder, if it names one. */
  layer?: string;
  sources: (SourceFact | null)[];
  /** Read only when [limits] asks for something. */
  cgroups?: CgroupHost | null;
  /** The text of a seccomp profile file, when [security] seccomp names one. */
  seccompProfile?: string;
  /** gid 5 (tty) is mapped in nsrun's own user namespace (not so when nsrun itself runs in one). */
  ttyGroupMapped?: boolean;
  /** nsrun runs in the initial user namespace (uid_map "0 0 4294967295"): root here may mknod a device. Default true. */
  initialUserns?: boolean;
  /** /proc/self/setgroups says "allow" (a user namespace nsrun runs in may have said "deny"). */
  setgroupsAllowed?: boolean;
  /** The caller's ranges in /etc/subuid and /etc/subgid, and whether newuidmap/newgidmap exist. */
  subordinate?: SubordinateIds;
  /** Whether a program is installed (pasta, slirp4netns); absent: every one is. */
  installed?: (program: string) => boolean;
  /** Reads a small file as the box would see it in its rootfs, or null (see core/stages/hostpath.ts). */
  rootfsFile?: (path: string) => string | null;
}

export interface Caller {
  uid: number;
  gid: number;
  /** Names the box's cgroup (nsrun-PID); default this process's PID. */
  pid?: number;
}

export interface PlanOptions {
  /** Replaces [process].args (from `nsrun run -- CMD ARG...`). */
  args?: string[];
  cwdFallback?: boolean;
  /** The name of the box's cgroup, when it has one. Default nsrun-<caller's PID>. */
  cgroupName?: string;
  /**
   * The caller's terminal (its window size) when nsrun's stdin and stdout are both terminals, and
   * what the command line asked (-t, --no-tty): together with [process] terminal, whether the box
   * gets a pseudo-terminal of its own.
   */
  terminal?: { size: { rows: number; cols: number } | null; asked?: boolean; term?: string };
}

/**
 * The box's cgroup ([limits]), named for this box: nsrun-<caller's PID>, or opts.cgroupName. Apart
 * from planBox so that a plan from the tape cache (core/host/tapecache.ts) gets a fresh one.
 */
export function planBoxCgroup(loaded: LoadedConfig, facts: HostFacts, caller: Caller, opts: PlanOptions = {}): CgroupPlan | null {
  const l = loaded.config.limits;
  const fail = (key: string, problem: string): never => {
    throw new ConfigError(loaded.file, key, problem);
  };
  const limits: Limits = {
    memory: l.memory === undefined ? undefined : (parseSize(l.memory) ?? undefined),
    memorySwap: l.memory_swap === undefined ? undefined : (parseSize(l.memory_swap) ?? undefined),
    pids: l.pids,
    cpu: l.cpu,
    cpuWeight: l.cpu_weight,
    ioWeight: l.io_weight,
    cpuAccounting: l.cpu_time !== undefined,
  };
  if (limits.memorySwap !== undefined && limits.memory === undefined) fail("limits.memory_swap", "needs limits.memory too");
  try {
    const memoryText = l.memory === undefined ? null : String(l.memory);
    return facts.cgroups ? planCgroup(limits, facts.cgroups, opts.cgroupName ?? `nsrun-${caller.pid ?? process.pid}`, memoryText, caller.uid !== 0) : null;
  } catch (e) {
    if (e instanceof CgroupUnavailable) fail("limits", e.message);
    throw e;
  }
}

/** Resolve the rootfs and bind sources against the config's folder; missing ones are config errors. */
export function inspectHost(loaded: LoadedConfig): HostFacts {
  const { config, file, dir } = loaded;
  const real = (p: string, key: string, wantDir: boolean): SourceFact => {
    const abs = resolve(dir, p);
    let path: string;
    let isDir: boolean;
    try {
      path = canonicalHostPath(abs);
      isDir = statSync(path).isDirectory();
    } catch (e) {
      if (e instanceof HostPathError) throw new ConfigError(file, key, e.message);
      const code = (e as NodeJS.ErrnoException).code;
      throw new ConfigError(file, key, `${JSON.stringify(abs)} ${code === "ENOENT" ? "does not exist" : `cannot be used (${code})`}`);
    }
    if (wantDir && !isDir) throw new ConfigError(file, key, `${JSON.stringify(abs)} is not a directory`);
    return { path, isDir };
  };
  const rootfs = real(config.rootfs, "rootfs", true).path;
  return {
    rootfs,
    ...(config.layer !== undefined ? { layer: real(config.layer, "layer", true).path } : {}),
    rootfsFile: (path) => readInRootfs(rootfs, path),
    sources: config.mounts.map((m, i) => (m.type === "bind" && m.source ? real(m.source, `mounts[${i}].source`, false) : null)),
    cgroups: CGROUP_KEYS.some((k) => config.limits[k] !== undefined) ? inspectCgroups() : null,
    seccompProfile: readProfile(config.security.seccomp, dir, file),
    ttyGroupMapped: idMapped(parseIdMap(readFileSync("/proc/self/gid_map", "utf8")), 5),
    setgroupsAllowed: readFileSync("/proc/self/setgroups", "utf8").trim() === "allow",
    initialUserns: readFileSync("/proc/self/uid_map", "utf8").trim().split(/\s+/).join(" ") === "0 0 4294967295",
    subordinate: readSubordinateIds(process.getuid?.() ?? 0),
    installed,
  };
}

const CGROUP_KEYS = ["memory", "memory_swap", "pids", "cpu", "cpu_weight", "io_weight", "cpu_time"] as const;

function readProfile(seccomp: string, dir: string, file: string): string | undefined {
  if (seccomp === "default" || seccomp === "unconfined") return undefined;
  const path = resolve(dir, seccomp);
  try {
    return readFileSync(path, "utf8");
  } catch (e) {
    throw new ConfigError(file, "security.seccomp", `cannot read the profile ${JSON.stringify(path)} (${(e as NodeJS.ErrnoException).code})`);
  }
}

/**
 * The files inspectHost and the tape cache's key (core/host/tapecache.ts keyOf) read whatever the
 * config: the kernel (release, this boot, the last capability), nsrun's own user namespace, and
 * the users' subordinate ids (readSubordinateIds).
 */
const HOST_FILES = [
  "/proc/sys/kernel/osrelease",
  "/proc/sys/kernel/random/boot_id",
  "/proc/sys/kernel/cap_last_cap",
  "/proc/sys/kernel/overflowuid",
  "/proc/self/uid_map",
  "/proc/self/gid_map",
  "/proc/self/setgroups",
  "/etc/passwd",
  "/etc/subuid",
  "/etc/subgid",
];

/**
 * Every host input inspectHost and the tape cache's key read for this config: what a start record
 * checks again (core/host/startrecord.ts). Listed from the config alone, so that they are observed
 * before inspectHost reads them (an input that changes in between then fails the check next time,
 * never the other way round). Beside inspectHost on purpose: a new read there is a new line here.
 * What planning reads lazily (the rootfs's files) comes from the tape cache's list instead.
 */
export function planningInputs(loaded: LoadedConfig): Input[] {
  const { config, dir } = loaded;
  const inputs: Input[] = HOST_FILES.map((path) => ({ kind: "file", path }));
  for (const path of SUBID_HELPERS) inputs.push({ kind: "executable", path });
  // The rootfs, the layer and bind sources by identity (unlisted() refuses a path with a symlink).
  for (const [, given] of resolvedPaths(loaded)) inputs.push({ kind: "node", path: resolve(dir, given) });
  if (config.security.seccomp !== "default" && config.security.seccomp !== "unconfined") inputs.push({ kind: "file", path: resolve(dir, config.security.seccomp) });
  // The planning options: the caller's terminal, and TERM (the box's, when it gets a terminal).
  inputs.push({ kind: "terminal" }, { kind: "env", name: "TERM" });
  return inputs;
}

/**
 * Why planningInputs cannot stand for what planning read, or null: a cgroup (named for each box),
 * a program looked for (`reads`, the tape cache's list of lazy reads), a path planning reached
 * through a symlink (canonicalHostPath followed it: its identity alone does not say where it leads).
 */
export function unlisted(loaded: LoadedConfig, facts: HostFacts, reads: Array<[fn: string, arg: string, result: unknown]>): string | null {
  if (facts.cgroups) return "the box has a cgroup (named for its nsrun: planned for each box)";
  const installed = reads.find(([fn]) => fn === "installed");
  if (installed) return `planning looked for ${installed[1]}`;
  const resolved = [facts.rootfs, ...(loaded.config.layer !== undefined ? [facts.layer] : []), ...facts.sources.filter((f) => f !== null).map((f) => f.path)];
  const paths = resolvedPaths(loaded);
  if (paths.length !== resolved.length) return "a path planning resolved is not listed";
  for (const [i, [key, given]] of paths.entries()) if (resolve(loaded.dir, given) !== resolved[i]) return `${key} is reached through a symlink`;
  return null;
}

/** The host paths inspectHost resolves, in its order: [config key, path as given]. */
function resolvedPaths({ config }: LoadedConfig): Array<[key: string, given: string]> {
  const paths: Array<[string, string]> = [["rootfs", config.rootfs]];
  if (config.layer !== undefined) paths.push(["layer", config.layer]);
  config.mounts.forEach((m, i) => {
    if (m.type === "bind" && m.source) paths.push([`mounts[${i}].source`, m.source]);
  });
  return paths;
}
