// Stage 2: plan. A validated config and a few facts about the host become a BoxPlan: plain data
// that says everything the later stages do. The runtime stages read only the BoxPlan, so any front
// end (box.toml today, an OCI bundle later) can drive them.
import { chooseHelper, HELPERS, type NetworkMode, type NetworkPlan, PING_GROUP_RANGE, parsePort } from "./network";
import { capabilityNumber, DEFAULT_CAPABILITIES, type CapabilitySets } from "./capabilities";
import type { CgroupPlan } from "./cgroup";
import { type Config, DEFAULT_PATH, type LoadedConfig } from "./config";
import { type Caller, type HostFacts, type PlanOptions, planBoxCgroup } from "./hostfacts";
import { ConfigError } from "../errors";
import { MountPlanError, type MountOp, planMounts, type PropagationPlan } from "./mounts";
import { type NamespaceKind, planNamespaces, planTimeOffsets, type TimeOffsets } from "./namespaces";
import type { ProcessPlan } from "./process";
import { parseDuration } from "../verdict";
import { type RlimitName, type RlimitPlan, planRlimits, rlimitProblem } from "./rlimits";
import { overlayUnsafe, type RootfsPlan } from "./rootfs";
import { compileProfile, defaultProfile, type Insn } from "./seccomp";
import { ParseProfileError, parseProfile } from "./seccomp-profile";
import { type IdMapPlan, idMapped, parseIdMap, planIdMaps, type SubordinateIds } from "./userns";

export interface BoxPlan {
  namespaces: NamespaceKind[];
  idMap: IdMapPlan | null;
  rootfs: RootfsPlan;
  mounts: MountOp[];
  hostname: string | null;
  network: NetworkPlan;
  /** Files nsrun writes for the box and binds in read-only (a generated /etc/resolv.conf, /etc/hosts). */
  files: Array<{ target: string; content: string }>;
  process: ProcessPlan;
  /** The box's own cgroup, when [limits] asks for any. */
  cgroup: CgroupPlan | null;
  rlimits: RlimitPlan[];
  /** [limits] cpu_time and wall_time in milliseconds, enforced by the supervisor (core/verdict.ts); absent: none. */
  timeLimits?: TimeLimits;
  security: SecurityPlan;
  /** The time namespace's clock offsets ([namespaces] time = { ... }, OCI linux.timeOffsets); none: zero. */
  timeOffsets?: TimeOffsets | null;
  /** OCI mount propagation other than private; none: every mount private. */
  propagation?: PropagationPlan;
}

export interface TimeLimits {
  cpuMs: number | null;
  wallMs: number | null;
}

export interface SecurityPlan {
  /** Capability numbers the box keeps. */
  capabilities: number[];
  /** OCI's process.capabilities, set as given (core/stages/capabilities.ts); a box's are all `capabilities`. */
  sets?: CapabilitySets;
  noNewPrivileges: boolean;
  /** The compiled filter, or null for "unconfined". */
  seccomp: Insn[] | null;
}


const RLIMIT_KEYS: RlimitName[] = ["nofile", "nproc", "core", "fsize", "stack", "as"];

const NO_SUBORDINATE_IDS = { uids: [], gids: [], helpers: false };

/** The box's id maps: explicit [user_namespace] lines, or what its mode gives the caller. */
function planUserNamespace(config: Config, facts: HostFacts, caller: Caller, fail: (key: string, problem: string) => never): IdMapPlan {
  const un = config.user_namespace;
  const sub = facts.subordinate ?? NO_SUBORDINATE_IDS;
  const planned = planIdMaps(caller, sub, un.mode);
  if (!un.uid_map && !un.gid_map) return planned;
  const explicit = (key: "uid_map" | "gid_map", own: number, ranges: SubordinateIds["uids"]) => {
    const lines = un[key] ?? [];
    const map = parseIdMap(lines.join("\n"));
    if (!map.length) fail(`user_namespace.${key}`, "expected at least one line; set both uid_map and gid_map");
    // What the caller may map: root anything; anyone else its own id and its subordinate ranges.
    if (caller.uid !== 0)
      map.forEach((r, i) => {
        const fits = (r.outside === own && r.count === 1) || ranges.some((s) => r.outside >= s.start && r.outside + r.count <= s.start + s.count);
        if (!fits) fail(`user_namespace.${key}[${i}]`, `"${lines[i].trim()}" maps ids you may not map (your own ${own}, or your ranges in /etc/sub${key[0]}id: ${ranges.map((s) => `${s.start}+${s.count}`).join(", ") || "none"})`);
      });
    return map;
  };
  const uidMap = explicit("uid_map", caller.uid, sub.uids);
  const gidMap = explicit("gid_map", caller.gid, sub.gids);
  const onlyOwn = caller.uid !== 0 && uidMap.length === 1 && gidMap.length === 1 && uidMap[0].outside === caller.uid && gidMap[0].outside === caller.gid;
  if (caller.uid !== 0 && !onlyOwn && !sub.helpers) fail("user_namespace", "mapping more than your own id needs newuidmap and newgidmap: install the package uidmap");
  return { writer: caller.uid === 0 ? "root" : onlyOwn ? "self" : "newuidmap", uidMap, gidMap, setgroups: onlyOwn ? "deny" : "allow" };
}

export function planBox(loaded: LoadedConfig, facts: HostFacts, caller: Caller, opts: PlanOptions = {}): BoxPlan {
  const { config, file } = loaded;
  const fail = (key: string, problem: string): never => {
    throw new ConfigError(file, key, problem);
  };
  const ns = config.namespaces;
  // [network] mode and [namespaces] net say the same thing twice: they must agree.
  const mode = config.network.mode ?? (ns.net === false ? "host" : "none");
  if (ns.net !== undefined && (mode === "host") === ns.net)
    fail("network.mode", `"${mode}" contradicts [namespaces] net = ${ns.net}: "host" shares the host's network namespace, "none" and "nat" need the box's own`);
  const wanted: Record<NamespaceKind, boolean> = {
    user: ns.user ?? caller.uid !== 0,
    mount: ns.mount,
    pid: ns.pid,
    uts: ns.uts,
    ipc: ns.ipc,
    net: mode !== "host",
    cgroup: ns.cgroup,
    time: ns.time !== false,
  };
  if (!wanted.mount) fail("namespaces.mount", "nsrun needs a mount namespace to give the box its own root; remove this key");
  if (caller.uid !== 0 && ns.user === false)
    fail("namespaces.user", "an ordinary user may create the other namespaces only inside a user namespace of their own: remove this key (or run as root)");
  if (config.hostname !== undefined && !wanted.uts)
    fail("hostname", "setting a hostname needs namespaces.uts = true (it would change the host's)");
  if (config.ephemeral && overlayUnsafe(facts.rootfs))
    fail("rootfs", `${JSON.stringify(facts.rootfs)} has a character overlayfs cannot take (, : \\); ephemeral needs another path`);

  const idMap = wanted.user ? planUserNamespace(config, facts, caller, fail) : null;
  const [uid, gid] = config.process.user.split(":").map(Number);
  if (idMap && (!idMapped(idMap.uidMap, uid) || !idMapped(idMap.gidMap, gid)))
    fail(
      "process.user",
      `"${config.process.user}" is not mapped in the box's user namespace (uid_map ${idMap.uidMap.map((r) => `${r.inside} ${r.outside} ${r.count}`).join(", ")}); ${idMap.writer === "self" ? "subordinate ids (/etc/subuid, /etc/subgid, the uidmap package) give a box more ids" : "use an id inside the map"}`,
    );

  let mounts: MountOp[];
  // A root box without a user namespace gets device nodes of its own (mknod needs CAP_MKNOD in the
  // initial user namespace); its masks then cover files with its own null device.
  const ownDevices = !wanted.user && (facts.initialUserns ?? true);
  const ownNull = ownDevices && !config.mounts.some((m) => m.target === "/dev" || m.target === "/dev/null");
  try {
    // gid 5 (tty) for devpts must exist in the box's user namespace: with ranges it does; one without
    // shares ours, where gid 5 may be unmapped too.
    const ttyGroup = idMap ? idMapped(idMap.gidMap, 5) : (facts.ttyGroupMapped ?? true);
    mounts = planMounts(config.mounts, facts.sources, { ttyGroup, pidns: wanted.pid, netns: wanted.net, ownDevices });
  } catch (e) {
    if (e instanceof MountPlanError) fail(e.key, e.message);
    throw e;
  }

  const l = config.limits;
  const cgroup = planBoxCgroup(loaded, facts, caller, opts);

  for (const k of RLIMIT_KEYS) {
    const value = l[k];
    const problem = value === undefined ? null : rlimitProblem(value);
    if (problem) fail(`limits.${k}`, problem);
  }
  const timeLimits: TimeLimits = {
    cpuMs: l.cpu_time === undefined ? null : parseDuration(l.cpu_time),
    wallMs: l.wall_time === undefined ? null : parseDuration(l.wall_time),
  };
  // RLIMIT_CPU backs cpu_time up per process, in whole seconds: SIGXCPU at the soft limit, SIGKILL a
  // second later. Without a cgroup (rootless on cgroup v1) it is what stops a process the supervisor's
  // account misses (one whose parent has not waited for it).
  const cpuSeconds = timeLimits.cpuMs === null ? null : Math.ceil(timeLimits.cpuMs / 1000);
  const rlimits = planRlimits({ ...Object.fromEntries(RLIMIT_KEYS.map((k) => [k, l[k]])), ...(cpuSeconds === null ? {} : { cpu: [cpuSeconds, cpuSeconds + 1] }) });
  const security = planSecurity(config, fail, facts.seccompProfile);
  mounts.push(
    ...(config.security.masked_paths ?? DEFAULT_MASKED).map((target, i): MountOp => ({ op: "mask", target, origin: `security.masked_paths[${i}]`, ...(ownNull ? { ownNull } : {}) })),
    ...(config.security.readonly_paths ?? DEFAULT_READONLY).map((target, i): MountOp => ({ op: "readonly", target, origin: `security.readonly_paths[${i}]` })),
  );

  const env = Object.entries(config.process.env ?? { PATH: DEFAULT_PATH }).map(([k, v]) => `${k}=${v}`);
  const network = planNetwork(config, facts, mode, fail);
  const files = network.helper ? networkFiles(config, facts, HELPERS[network.helper.name].nameserver, wanted.uts ? (config.hostname ?? "nsrun") : null) : [];
  // HOME, as a login would set it: the box user's entry in the rootfs's /etc/passwd, else / (or /root for root).
  if (!env.some((e) => e.startsWith("HOME="))) env.push(`HOME=${homeOf(facts.rootfsFile?.("/etc/passwd") ?? "", uid)}`);

  // A terminal: asked on the command line, else in the config, else when nsrun has one itself.
  const tty = opts.terminal;
  const callerHasOne = Boolean(tty?.size);
  const wantsTerminal = tty?.asked ?? config.process.terminal ?? callerHasOne;
  if (wantsTerminal && !wanted.mount) fail("process.terminal", "a terminal needs the box's own /dev");
  const terminal = wantsTerminal ? (tty?.size ?? { rows: 24, cols: 80 }) : null;
  if (terminal && !env.some((e) => e.startsWith("TERM="))) env.push(`TERM=${tty?.term || "xterm"}`);

  return {
    namespaces: planNamespaces(wanted),
    idMap,
    rootfs: { hostPath: facts.rootfs, readonly: config.readonly, ephemeral: config.ephemeral, ...(facts.layer !== undefined ? { layer: facts.layer } : {}), userns: wanted.user },
    mounts,
    hostname: wanted.uts ? (config.hostname ?? "nsrun") : null,
    network,
    files,
    timeOffsets: planTimeOffsets(ns.time),
    process: {
      args: opts.args?.length ? opts.args : config.process.args,
      cwd: config.process.cwd,
      cwdFallback: opts.cwdFallback ?? false,
      env,
      uid,
      gid,
      // In a user namespace of the box's own, setgroups is what its maps' writer set (a self-writer
      // must deny it, user_namespaces(7)); in a shared one it is whatever nsrun's own namespace says.
      setgroups: idMap ? idMap.setgroups === "allow" : (facts.setgroupsAllowed ?? true),
      // With a terminal and a PID namespace the command would be PID 1, which the kernel spares every
      // signal it has no handler for, Ctrl-C from its own terminal included (the supervisor's SIGKILL
      // rule sees only signals sent to nsrun). So nsrun's init is PID 1 there, as bubblewrap's always
      // is, unless the config says init = false.
      init: config.process.init ?? (terminal !== null && wanted.pid),
      terminal,
    },
    cgroup,
    rlimits,
    ...(timeLimits.cpuMs !== null || timeLimits.wallMs !== null ? { timeLimits } : {}),
    security,
  };
}

/** podman's masked and read-only paths. */
export { inspectHost, planBoxCgroup } from "./hostfacts";
export type { Caller, HostFacts, PlanOptions };

export const DEFAULT_MASKED = [
  "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
  "/proc/scsi", "/proc/acpi", "/sys/firmware", "/sys/devices/virtual/powercap",
];
export const DEFAULT_READONLY = ["/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

function planNetwork(config: Config, facts: HostFacts, mode: NetworkMode, fail: (key: string, problem: string) => never): NetworkPlan {
  const ports = config.network.ports.map((spec, i) => {
    const p = parsePort(spec);
    return typeof p === "string" ? fail(`network.ports[${i}]`, p) : p;
  });
  if (ports.length && mode !== "nat") fail("network.ports", `ports are forwarded only with [network] mode = "nat", not "${mode}"`);
  const asked = config.network.helper ?? "auto";
  if (asked !== "auto" && mode !== "nat") fail("network.helper", `a helper connects only a box with [network] mode = "nat", not "${mode}"`);
  const hostLoopback = config.network.host_loopback ?? false;
  if (hostLoopback && mode !== "nat") fail("network.host_loopback", `only a box with [network] mode = "nat" reaches the host through a gateway, not "${mode}"`);
  // A network namespace of the box's own gets podman's ping_group_range; the host's is left alone.
  const ping = mode === "host" ? {} : { pingGroupRange: PING_GROUP_RANGE };
  if (mode !== "nat") return { mode, ports, ...ping };
  const helper = chooseHelper(asked, facts.installed ?? (() => true));
  if ("key" in helper) return fail(helper.key, helper.problem);
  return { mode, ports, helper, hostLoopback, ...ping };
}

/**
 * /etc/resolv.conf and /etc/hosts for a box with a network, unless the config mounts its own. The
 * resolv.conf names the helper's DNS forwarder, always, as podman's does: a rootfs's own often names
 * the resolver of the host it was built on (mmdebstrap and debootstrap copy it), which the box, in a
 * network namespace of its own, cannot reach. Its search, domain and options lines are kept. The
 * rootfs's /etc/hosts is kept when it has one.
 */
function networkFiles(config: Config, facts: HostFacts, nameserver: string, hostname: string | null): Array<{ target: string; content: string }> {
  const mounted = new Set(config.mounts.map((m) => m.target));
  const out: Array<{ target: string; content: string }> = [];
  const kept = (facts.rootfsFile?.("/etc/resolv.conf") ?? "").split("\n").filter((l) => /^\s*(search|domain|options)\s/.test(l));
  if (!mounted.has("/etc/resolv.conf")) out.push({ target: "/etc/resolv.conf", content: `nameserver ${nameserver}\n${kept.map((l) => `${l.trim()}\n`).join("")}` });
  const hosts = facts.rootfsFile?.("/etc/hosts") ?? "";
  if (!mounted.has("/etc/hosts") && !hosts.trim())
    out.push({ target: "/etc/hosts", content: `127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n${hostname ? `127.0.1.1\t${hostname}\n` : ""}` });
  return out;
}

/** The home folder /etc/passwd gives `uid`, or "/root" for root and "/" for others. */
export function homeOf(passwd: string, uid: number): string {
  const entry = passwd.split("\n").find((l) => l.split(":")[2] === String(uid));
  const home = entry?.split(":")[5];
  return home?.startsWith("/") ? home : uid === 0 ? "/root" : "/";
}

let compiledDefault: Insn[] | null = null;

/** The default profile's filter, compiled once per process (a process may plan many boxes). */
function defaultFilter(): Insn[] {
  compiledDefault ??= compileProfile(defaultProfile());
  return compiledDefault;
}

function planSecurity(config: Config, fail: (key: string, problem: string) => never, profileText: string | undefined): SecurityPlan {
  const sec = config.security;
  const names = sec.capabilities ?? DEFAULT_CAPABILITIES;
  const capabilities = names.map((name, i) => capabilityNumber(name) ?? fail(`security.capabilities[${i}]`, `unknown capability ${JSON.stringify(name)}`));
  let seccomp: Insn[] | null = null;
  if (sec.seccomp !== "unconfined") {
    if (process.arch !== "x64") fail("security.seccomp", `nsrun's seccomp compiler knows only x86-64 syscalls; set seccomp = "unconfined" on ${process.arch}`);
    try {
      const capNames = capabilities.map((c) => names[capabilities.indexOf(c)].toUpperCase().replace(/^CAP_/, ""));
      seccomp = profileText === undefined ? defaultFilter() : compileProfile(parseProfile(profileText, capNames));
    } catch (e) {
      if (e instanceof ParseProfileError) fail("security.seccomp", `${JSON.stringify(sec.seccomp)}: ${e.message}`);
      throw e;
    }
  }
  return { capabilities: [...new Set(capabilities)].sort((a, b) => a - b), noNewPrivileges: sec.no_new_privileges, seccomp };
}
