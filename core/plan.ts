// Stage 2: plan. A validated config and a few facts about the host become a BoxPlan: plain data
// that says everything the later stages do. The runtime stages read only the BoxPlan, so any front
// end (box.toml today, an OCI bundle later) can drive them.
import { realpathSync, statSync } from "node:fs";
import { resolve } from "node:path";
import { type CgroupHost, type CgroupPlan, CgroupUnavailable, inspectCgroups, type Limits, planCgroup } from "./cgroup";
import { type Config, DEFAULT_PATH, type LoadedConfig, parseSize } from "./config";
import { ConfigError } from "./errors";
import { MountPlanError, type MountOp, planMounts, type SourceFact } from "./mounts";
import { type NamespaceKind, planNamespaces } from "./namespaces";
import type { ProcessPlan } from "./process";
import { overlayUnsafe, type RootfsPlan } from "./rootfs";
import { type IdMapPlan, planIdMaps } from "./userns";

export interface BoxPlan {
  namespaces: NamespaceKind[];
  idMap: IdMapPlan | null;
  rootfs: RootfsPlan;
  mounts: MountOp[];
  hostname: string | null;
  loopback: boolean;
  process: ProcessPlan;
  /** The box's own cgroup, when [limits] asks for any. */
  cgroup: CgroupPlan | null;
  /** Print every syscall of every stage to stderr. */
  trace: boolean;
}

/** What planning needs to know about the host; gathered by inspectHost, the one impure step. */
export interface HostFacts {
  rootfs: string;
  sources: (SourceFact | null)[];
  /** Read only when [limits] asks for something. */
  cgroups?: CgroupHost | null;
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
  trace?: boolean;
}

/** Resolve the rootfs and bind sources against the config's folder; missing ones are config errors. */
export function inspectHost(loaded: LoadedConfig): HostFacts {
  const { config, file, dir } = loaded;
  const real = (p: string, key: string, wantDir: boolean): SourceFact => {
    const abs = resolve(dir, p);
    let path: string;
    let isDir: boolean;
    try {
      path = realpathSync(abs);
      isDir = statSync(path).isDirectory();
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new ConfigError(file, key, `${JSON.stringify(abs)} ${code === "ENOENT" ? "does not exist" : `cannot be used (${code})`}`);
    }
    if (wantDir && !isDir) throw new ConfigError(file, key, `${JSON.stringify(abs)} is not a directory`);
    return { path, isDir };
  };
  return {
    rootfs: real(config.rootfs, "rootfs", true).path,
    sources: config.mounts.map((m, i) => (m.type === "bind" && m.source ? real(m.source, `mounts[${i}].source`, false) : null)),
    cgroups: Object.keys(config.limits).length ? inspectCgroups() : null,
  };
}

export function planBox(loaded: LoadedConfig, facts: HostFacts, caller: Caller, opts: PlanOptions = {}): BoxPlan {
  const { config, file } = loaded;
  const fail = (key: string, problem: string): never => {
    throw new ConfigError(file, key, problem);
  };
  const ns = config.namespaces;
  const wanted: Record<NamespaceKind, boolean> = {
    user: ns.user ?? caller.uid !== 0,
    mount: ns.mount,
    pid: ns.pid,
    uts: ns.uts,
    ipc: ns.ipc,
    net: ns.net,
    cgroup: ns.cgroup,
    time: ns.time,
  };
  if (!wanted.mount) fail("namespaces.mount", "nsrun needs a mount namespace to give the box its own root; remove this key");
  if (config.hostname !== undefined && !wanted.uts)
    fail("hostname", "setting a hostname needs namespaces.uts = true (it would change the host's)");
  if (config.ephemeral && overlayUnsafe(facts.rootfs))
    fail("rootfs", `${JSON.stringify(facts.rootfs)} has a character overlayfs cannot take (, : \\); ephemeral needs another path`);

  const idMap = wanted.user ? planIdMaps(caller.uid, caller.gid) : null;
  const [uid, gid] = config.process.user.split(":").map(Number);
  if (idMap && (uid !== 0 || gid !== 0))
    fail("process.user", `"${config.process.user}": a box with a user namespace maps only 0:0 (to your ${caller.uid}:${caller.gid}); use "0:0"`);

  let mounts: MountOp[];
  try {
    mounts = planMounts(config.mounts, facts.sources, { userns: wanted.user, pidns: wanted.pid, netns: wanted.net });
  } catch (e) {
    if (e instanceof MountPlanError) fail(e.key, e.message);
    throw e;
  }

  const l = config.limits;
  const limits: Limits = {
    memory: l.memory === undefined ? undefined : (parseSize(l.memory) ?? undefined),
    memorySwap: l.memory_swap === undefined ? undefined : (parseSize(l.memory_swap) ?? undefined),
    pids: l.pids,
    cpu: l.cpu,
    cpuWeight: l.cpu_weight,
    ioWeight: l.io_weight,
  };
  if (limits.memorySwap !== undefined && limits.memory === undefined) fail("limits.memory_swap", "needs limits.memory too");
  let cgroup: CgroupPlan | null = null;
  try {
    const memoryText = l.memory === undefined ? null : String(l.memory);
    cgroup = facts.cgroups ? planCgroup(limits, facts.cgroups, `nsrun-${caller.pid ?? process.pid}`, memoryText, caller.uid !== 0) : null;
  } catch (e) {
    if (e instanceof CgroupUnavailable) fail("limits", e.message);
    throw e;
  }

  return {
    namespaces: planNamespaces(wanted),
    idMap,
    rootfs: { hostPath: facts.rootfs, readonly: config.readonly, ephemeral: config.ephemeral },
    mounts,
    hostname: wanted.uts ? (config.hostname ?? "nsrun") : null,
    loopback: wanted.net,
    process: {
      args: opts.args?.length ? opts.args : config.process.args,
      cwd: config.process.cwd,
      cwdFallback: opts.cwdFallback ?? false,
      env: Object.entries(config.process.env ?? { PATH: DEFAULT_PATH }).map(([k, v]) => `${k}=${v}`),
      uid,
      gid,
      setgroups: !idMap,
      init: config.process.init,
    },
    cgroup,
    trace: opts.trace ?? false,
  };
}

/**
 * The box `nsrun run -- CMD` gets without a config: the host's root read-only, fresh /proc, a
 * minimal /dev, private /tmp, loopback-only network, hostname "nsrun", the caller's cwd.
 */
export function defaultBoxConfig(cwd: string): LoadedConfig {
  const config: Config = {
    rootfs: "/",
    readonly: true,
    ephemeral: false,
    process: { args: ["/bin/sh"], cwd, init: false, user: "0:0" },
    namespaces: { mount: true, pid: true, uts: true, ipc: true, net: true, cgroup: true, time: false },
    mounts: [],
    limits: {},
  };
  return { config, file: "(default box)", dir: "/" };
}
