// The OCI front end, part 2: a validated config.json becomes the same BoxPlan box.toml produces,
// plus the few things only OCI asks for (namespaces joined by path, sysctls, exact capability sets,
// hooks), which core/oci/emit.ts turns into extra tape ops. What nsrun cannot do is refused here,
// one line naming the JSON path; nothing is silently skipped.
import { existsSync, readFileSync, statSync } from "node:fs";
import { posix, resolve } from "node:path";
import { type CapabilitySets, capabilityNumber, CAPABILITIES } from "../stages/capabilities";
import { ConfigError } from "../errors";
import { canonicalHostPath, HostPathError } from "../stages/hostpath";
import { idProblem } from "../stages/ids";
import { HOST_DEVICE_ATTRS, MountPlanError, type MountOp, planMount, PROPAGATION_OPTIONS, type Propagation, type PropagationPlan, type SourceFact } from "../stages/mounts";
import { type NamespaceKind, planNamespaces, type TimeOffsets } from "../stages/namespaces";
import type { BoxPlan } from "../stages/plan";
import type { RlimitPlan } from "../stages/rlimits";
import { compileProfile, type Insn } from "../stages/seccomp";
import { ParseProfileError, parseProfile } from "../stages/seccomp-profile";
import * as F from "../../ffi/flags";
import { syscallTable } from "../../ffi/syscalls";
import { type IdMapPlan, type IdRange, idMapped, parseIdMap, readSubordinateIds } from "../stages/userns";
import type { OciCaller } from "./caller";
import { type JoinedNamespace, openToJoin } from "./joinns";
import { closeNs } from "../../ffi/nsfs";
import { type CgroupV1Layout, type OciCgroupHost, OciPlanError, planCgroupV1Mount, planOciCgroup } from "./resources";
import type { HookName, Spec, SpecHook, SpecMount } from "./spec";

export type { CapabilitySets } from "../stages/capabilities";

export interface OciPlan {
  box: BoxPlan;
  /** Existing namespaces to join, by path (linux.namespaces[].path). */
  join: JoinedNamespace[];
  /** [file below /proc/sys, value], written from inside before pivot_root. */
  sysctl: Array<[file: string, value: string]>;
  oomScoreAdj: number | null;
  /** setgroups(2) list, or null when the user namespace denies setgroups (and none were asked). */
  groups: number[] | null;
  caps: CapabilitySets;
  umask: number | null;
  hooks: Record<HookName, SpecHook[]>;
  annotations: Record<string, string>;
}

export type { OciCaller } from "./caller";

/** runtime-spec namespace types as nsrun's kinds. */
export const NS_KIND: Record<string, NamespaceKind> = { pid: "pid", network: "net", mount: "mount", ipc: "ipc", uts: "uts", user: "user", cgroup: "cgroup", time: "time" };
const HOOK_NAMES: HookName[] = ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"];
const RLIMITS: Record<string, number> = {
  RLIMIT_CPU: 0, RLIMIT_FSIZE: 1, RLIMIT_DATA: 2, RLIMIT_STACK: 3, RLIMIT_CORE: 4, RLIMIT_RSS: 5, RLIMIT_NPROC: 6, RLIMIT_NOFILE: 7,
  RLIMIT_MEMLOCK: 8, RLIMIT_AS: 9, RLIMIT_LOCKS: 10, RLIMIT_SIGPENDING: 11, RLIMIT_MSGQUEUE: 12, RLIMIT_NICE: 13, RLIMIT_RTPRIO: 14, RLIMIT_RTTIME: 15,
};
/** Mount options that are runtime extensions (crun, podman) with nothing to do here. */
const IGNORED_OPTIONS = new Set(["tmpcopyup", "notmpcopyup", "copy-symlink", "nocopyup", "z", "Z", "U", "sync", "async", "relatime", "norelatime"]);
/** Options a bind takes and ignores, as mount(2) does with MS_BIND (see planMountOp). */
const BIND_IGNORED = ["rw", "suid", "exec", "strictatime", "nostrictatime", "noatime", "atime", "nodiratime", "diratime", "norelatime", "defaults", "dirsync", "mand", "nomand"];
const DEV_NODES = ["null", "zero", "full", "random", "urandom", "tty"];
const DEV_LINKS: Array<[string, string]> = [["/dev/ptmx", "pts/ptmx"], ["/dev/fd", "/proc/self/fd"], ["/dev/stdin", "/proc/self/fd/0"], ["/dev/stdout", "/proc/self/fd/1"], ["/dev/stderr", "/proc/self/fd/2"]];

export function planOci(spec: Spec, file: string, bundle: string, id: string, caller: OciCaller, cgroupHost: OciCgroupHost | null): OciPlan {
  const fail = (key: string, problem: string): never => {
    throw new ConfigError(file, key, problem);
  };
  const proc = spec.process ?? fail("process", "missing; `create` needs the process to start");
  const linux = spec.linux ?? {};
  refuseUnsupported(spec, fail);

  // Namespaces: new ones are made by clone3; ones with a path are joined (setns) right after.
  const wanted: Record<NamespaceKind, boolean> = { user: false, mount: false, pid: false, uts: false, ipc: false, net: false, cgroup: false, time: false };
  const join: OciPlan["join"] = [];
  const seen = new Set<string>();
  (linux.namespaces ?? []).forEach((ns, i) => {
    const kind = NS_KIND[ns.type];
    if (seen.has(kind)) fail(`linux.namespaces[${i}]`, `"${ns.type}" is listed twice`);
    seen.add(kind);
    if (ns.path === undefined || ns.path === "") return void (wanted[kind] = true);
    const joining = { kind, path: ns.path, key: `linux.namespaces[${i}].path` };
    // Checked now, for an error before anything is made; create.ts checks the fd it joins again.
    try {
      closeNs(openToJoin(joining));
    } catch (e) {
      if (e instanceof OciPlanError) fail(e.key, e.message);
      throw e;
    }
    join.push(joining);
  });
  const joined = (kind: NamespaceKind) => join.find((j) => j.kind === kind);
  const joinKey = (kind: NamespaceKind) => `linux.namespaces[${(linux.namespaces ?? []).findIndex((n) => NS_KIND[n.type] === kind)}].path`;
  if (!wanted.mount && !joined("mount")) fail("linux.namespaces", 'nsrun needs a mount namespace: a new one ({"type": "mount"}) to give the container its own root, or one joined by path');
  if (wanted.user && join.length) fail("linux.namespaces", "joining namespaces by path together with a new user namespace is not supported (join the user namespace too)");
  if (!caller.hostRoot && !wanted.user && !joined("user") && caller.uid !== 0)
    fail("linux.namespaces", 'an ordinary user needs a user namespace: a new one ({"type": "user"} with uidMappings/gidMappings; see `nsrun spec --rootless`), or one of theirs joined by path');
  // A joined mount namespace is used as it is, unless the config sets a root up in it (runc's way).
  const setUpInJoined = Boolean(joined("mount")) && setsUpRoot(spec);
  const mountJoined = setUpInJoined ? undefined : joined("mount");
  if (joined("mount")) checkJoinedMount(spec, joinKey("mount"), setUpInJoined && hostsNamespace(joined("mount")?.path ?? "", "mnt"), fail);
  const joinedUser = joined("user") ? joinedUserNamespace(joined("user")?.path ?? "") : null;

  const offsets = linux.timeOffsets;
  if (offsets && !wanted.time)
    fail("linux.timeOffsets", join.some((j) => j.kind === "time") ? "offsets are set on a new time namespace, and this one is joined by path (its offsets are fixed)" : 'offsets need a new time namespace ({"type": "time"})');
  const timeOffsets: TimeOffsets | null = offsets
    ? { monotonic: [offsets.monotonic?.secs ?? 0, offsets.monotonic?.nanosecs ?? 0], boottime: [offsets.boottime?.secs ?? 0, offsets.boottime?.nanosecs ?? 0] }
    : null;

  const idMap = wanted.user ? planIdMap(spec, caller, fail) : null;
  if (!wanted.user && (linux.uidMappings?.length || linux.gidMappings?.length)) fail("linux.uidMappings", 'id mappings need a new user namespace ({"type": "user"})');
  const { uid, gid } = proc.user;
  // Again here: `exec` builds process.user from its flags (--user, --additional-gids), after config.json's schema.
  const ids: Array<[string, number]> = [["process.user.uid", uid], ["process.user.gid", gid], ...(proc.user.additionalGids ?? []).map((g, i): [string, number] => [`process.user.additionalGids[${i}]`, g])];
  for (const [key, value] of ids) if (idProblem(value)) fail(key, idProblem(value) as string);
  if (idMap && (!idMapped(idMap.uidMap, uid) || !idMapped(idMap.gidMap, gid))) fail("process.user", `${uid}:${gid} is not mapped in linux.uidMappings/gidMappings`);
  if (joinedUser?.uidMap && (!idMapped(joinedUser.uidMap, uid) || !idMapped(joinedUser.gidMap ?? [], gid)))
    fail("process.user", `${uid}:${gid} is not mapped in the user namespace ${joinKey("user")} joins`);
  const extraGids = proc.user.additionalGids ?? [];
  // A joined user namespace's setgroups file, when its path is a process's (/proc/PID/ns/user); else setgroups is tried only when asked for.
  const setgroupsAllowed = idMap ? idMap.setgroups === "allow" : joinedUser ? (joinedUser.setgroups ?? extraGids.length > 0) : readFileSync("/proc/self/setgroups", "utf8").trim() === "allow";
  if (extraGids.length && !setgroupsAllowed) fail("process.user.additionalGids", "the user namespace denies setgroups(2) (a single-id mapping written without newgidmap); map more ids or drop them");
  extraGids.forEach((g, i) => idMap && !idMapped(idMap.gidMap, g) && fail(`process.user.additionalGids[${i}]`, `${g} is not mapped in linux.gidMappings`));

  const rootfsPath = resolve(bundle, spec.root?.path ?? fail("root.path", "missing"));
  const rootfs = hostDir(rootfsPath, "root.path", fail);

  // A UTS namespace joined by path takes the hostname too (as with runc), unless it is nsrun's own: the host's.
  const utsJoined = joined("uts");
  const ownUts = utsJoined !== undefined && hostsNamespace(utsJoined.path, "uts");
  const utsKey = utsJoined ? `; the one ${joinKey("uts")} joins is nsrun's own or PID 1's` : "";
  if (spec.hostname && (!(wanted.uts || utsJoined) || ownUts)) fail("hostname", `setting a hostname needs a uts namespace of the container's own ({"type": "uts"}, or one joined by path)${utsKey}; it would change the host's`);
  if (spec.domainname && (!(wanted.uts || utsJoined) || ownUts)) fail("domainname", `setting a domainname needs a uts namespace of the container's own ({"type": "uts"}, or one joined by path)${utsKey}`);
  const netns = wanted.net || join.some((j) => j.kind === "net");
  const ttyGroup = idMap ? idMapped(idMap.gidMap, 5) : joinedUser ? idMapped(joinedUser.gidMap ?? [], 5) : idMapped(parseIdMap(readFileSync("/proc/self/gid_map", "utf8")), 5);
  let cgroup = null;
  try {
    cgroup = planOciCgroup(linux.resources, linux.cgroupsPath, id, caller, cgroupHost);
  } catch (e) {
    if (e instanceof OciPlanError) fail(e.key, e.message);
    throw e;
  }
  const cgroupns = wanted.cgroup || Boolean(joined("cgroup"));
  const cgroupV2Only = existsSync("/sys/fs/cgroup/cgroup.controllers");
  const cgroup1 = (key: string) => {
    if (cgroupV2Only || !cgroupHost) return null;
    try {
      return planCgroupV1Mount(cgroupHost, cgroup, cgroupns, key);
    } catch (e) {
      if (e instanceof OciPlanError) fail(e.key, e.message);
      throw e;
    }
  };
  // A joined mount namespace is used as it is: no mounts of the container's own (refused above).
  const { mounts, propagation } = mountJoined ? { mounts: [], propagation: undefined } : planPropagation(spec, planOciMounts(spec, bundle, { ttyGroup, pidns: wanted.pid || Boolean(joined("pid")), netns, cgroup2: cgroupns && cgroupV2Only, cgroup1, mknod: caller.hostRoot && !wanted.user && !joined("user") }, fail));
  const idmapped = mounts.find((op) => op.op === "bind" && op.idmap);
  if (idmapped && !caller.hostRoot)
    fail(`${idmapped.origin}.uidMappings`, "an id-mapped mount of a host folder needs root (CAP_SYS_ADMIN in the initial user namespace, mount_setattr(2)); nsrun runs as an ordinary user here");

  const caps = planCapabilities(spec, fail);
  const seccomp = planSeccomp(spec, caps.bounding, fail);
  const sysctl = planSysctl(spec, { ...wanted, net: netns, ipc: wanted.ipc || join.some((j) => j.kind === "ipc"), uts: wanted.uts || join.some((j) => j.kind === "uts") }, fail);


  const terminal = proc.terminal ? { rows: proc.consoleSize?.height || 24, cols: proc.consoleSize?.width || 80 } : null;
  const hooks = Object.fromEntries(HOOK_NAMES.map((h) => [h, spec.hooks?.[h] ?? []])) as OciPlan["hooks"];

  const box: BoxPlan = {
    namespaces: planNamespaces(wanted),
    idMap,
    rootfs: { hostPath: rootfs, readonly: spec.root?.readonly ?? false, targetsFirst: true, ephemeral: false, userns: wanted.user, inJoinedNamespace: setUpInJoined },
    mounts,
    hostname: spec.hostname || null,
    // A new network namespace has loopback only (its `lo` brought up); one joined by path is as it is.
    network: { mode: wanted.net ? "none" : "host", ports: [] },
    files: [],
    process: {
      args: proc.args,
      cwd: proc.cwd,
      cwdFallback: false,
      env: proc.env ?? [],
      uid,
      gid,
      // Groups are set by core/oci/emit.ts (with additionalGids), not by the compiler's setgroups([]).
      setgroups: false,
      init: false,
      terminal,
    },
    cgroup,
    timeOffsets,
    propagation,
    rlimits: planRlimits(spec, fail),
    security: { capabilities: caps.bounding, sets: { effective: caps.effective, permitted: caps.permitted, inheritable: caps.inheritable, ambient: caps.ambient }, noNewPrivileges: proc.noNewPrivileges ?? false, seccomp },
  };
  return {
    box,
    join,
    sysctl,
    oomScoreAdj: proc.oomScoreAdj ?? null,
    groups: setgroupsAllowed ? extraGids : null,
    caps: { effective: caps.effective, permitted: caps.permitted, inheritable: caps.inheritable, ambient: caps.ambient },
    umask: proc.user.umask ?? null,
    hooks,
    annotations: spec.annotations ?? {},
  };
}

type Fail = (key: string, problem: string) => never;

function refuseUnsupported(spec: Spec, fail: Fail): void {
  const p = spec.process;
  const l = spec.linux ?? {};
  const hasLsm = (name: string) => {
    try {
      return readFileSync("/sys/kernel/security/lsm", "utf8").split(",").includes(name);
    } catch {
      return false;
    }
  };
  if (p?.apparmorProfile) fail("process.apparmorProfile", hasLsm("apparmor") ? "nsrun does not apply AppArmor profiles; remove it" : "this host has no AppArmor (no LSM named apparmor in /sys/kernel/security/lsm); remove it");
  if (p?.selinuxLabel) fail("process.selinuxLabel", hasLsm("selinux") ? "nsrun does not apply SELinux labels; remove it" : "this host has no SELinux; remove it");
  if (l.mountLabel) fail("linux.mountLabel", hasLsm("selinux") ? "nsrun does not apply SELinux labels; remove it" : "this host has no SELinux; remove it");
  if (p?.commandLine !== undefined) fail("process.commandLine", "is for Windows containers");
  for (const k of ["ioPriority", "scheduler", "execCPUAffinity"] as const) if (p?.[k] !== undefined) fail(`process.${k}`, "not supported by nsrun; remove it");
  for (const k of ["intelRdt", "personality"] as const) if (l[k] !== undefined) fail(`linux.${k}`, "not supported by nsrun; remove it");
  for (const k of ["solaris", "windows", "vm", "zos"] as const) if (spec[k] !== undefined) fail(k, "is for another platform; nsrun runs Linux containers");
  const prop = l.rootfsPropagation;
  if (prop !== undefined && !(prop in PROPAGATION_OPTIONS))
    fail("linux.rootfsPropagation", `${JSON.stringify(prop)}: expected one of ${Object.keys(PROPAGATION_OPTIONS).join(", ")}`);
}

/**
 * A joined mount namespace is used as it is when the config sets no root up; when it does (mounts,
 * masks, devices, a read-only root), the root is set up and pivoted there, as runc does, but never
 * in nsrun's own mount namespace, the host's. The tape writes oom_score_adj and
 * sysctls through that namespace's /proc, which shows the container's process when its PID
 * namespace is that /proc's or below it (else the write fails, naming /proc/self); clock offsets
 * must be written before the process could be seen there, so they are refused.
 */
function checkJoinedMount(spec: Spec, key: string, ownAndSetUp: boolean, fail: Fail): void {
  if (ownAndSetUp)
    fail(key, "is nsrun's own mount namespace or PID 1's (the host's): setting the container's root up there (mounts, maskedPaths, readonlyPaths, devices, rootfsPropagation, root.readonly) would change the host's mounts and pivot its root; join another, or leave those out to use it as it is");
  const l = spec.linux ?? {};
  if (l.timeOffsets !== undefined) fail("linux.timeOffsets", `the offsets are written through /proc/self before the container's process enters the joined PID namespace, and the joined mount namespace's /proc (${key}) does not show it then`);
}

/** The config sets a root up (runc does it in a joined mount namespace too): mounts, masks, devices, propagation or a read-only root. */
function setsUpRoot(spec: Spec): boolean {
  const l = spec.linux ?? {};
  return Boolean(spec.mounts?.length || l.maskedPaths?.length || l.readonlyPaths?.length || l.devices?.length || l.rootfsPropagation !== undefined || spec.root?.readonly);
}

/** `path` names nsrun's own namespace of that kind, or init's (PID 1's, the host's when nsrun runs in one of its own). */
function hostsNamespace(path: string, file: "mnt" | "uts"): boolean {
  return sameNamespace(path, `/proc/self/ns/${file}`) || sameNamespace(path, `/proc/1/ns/${file}`);
}

/** Two namespace files name the same namespace (device and inode, as nsfs gives them). */
function sameNamespace(a: string, b: string): boolean {
  try {
    const [x, y] = [statSync(a), statSync(b)];
    return x.dev === y.dev && x.ino === y.ino;
  } catch {
    return false;
  }
}

/** What nsrun can learn of a user namespace joined by path: its maps and setgroups, when the path is /proc/PID/ns/user. */
function joinedUserNamespace(path: string): { uidMap?: IdRange[]; gidMap?: IdRange[]; setgroups?: boolean } {
  const pid = path.match(/^\/proc\/(\d+)\/ns\/user$/)?.[1];
  if (!pid) return {};
  try {
    const read = (f: string) => readFileSync(`/proc/${pid}/${f}`, "utf8");
    return { uidMap: parseIdMap(read("uid_map")), gidMap: parseIdMap(read("gid_map")), setgroups: read("setgroups").trim() === "allow" };
  } catch {
    return {};
  }
}

function hostDir(path: string, key: string, fail: Fail): string {
  try {
    const real = canonicalHostPath(path);
    if (!statSync(real).isDirectory()) fail(key, `${JSON.stringify(path)} is not a directory`);
    return real;
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    if (e instanceof HostPathError) fail(key, e.message);
    return fail(key, `${JSON.stringify(path)} ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "does not exist" : `cannot be used (${(e as NodeJS.ErrnoException).code})`}`);
  }
}

function planIdMap(spec: Spec, caller: OciCaller, fail: Fail): IdMapPlan {
  const l = spec.linux ?? {};
  const toRanges = (list: typeof l.uidMappings, key: string): IdRange[] => {
    if (!list?.length) fail(`linux.${key}`, "a new user namespace needs uidMappings and gidMappings");
    return (list ?? []).map((m) => ({ inside: m.containerID, outside: m.hostID, count: m.size }));
  };
  const uidMap = toRanges(l.uidMappings, "uidMappings");
  const gidMap = toRanges(l.gidMappings, "gidMappings");
  if (caller.uid === 0) return { writer: "root", uidMap, gidMap, setgroups: "allow" };
  const onlyOwn = uidMap.length === 1 && gidMap.length === 1 && uidMap[0].outside === caller.uid && uidMap[0].count === 1 && gidMap[0].outside === caller.gid && gidMap[0].count === 1;
  if (onlyOwn) return { writer: "self", uidMap, gidMap, setgroups: "deny" };
  const sub = readSubordinateIds(caller.uid);
  const check = (map: IdRange[], own: number, ranges: Array<{ start: number; count: number }>, key: string) =>
    map.forEach((r, i) => {
      const fits = (r.outside === own && r.count === 1) || ranges.some((s) => r.outside >= s.start && r.outside + r.count <= s.start + s.count);
      if (!fits) fail(`linux.${key}[${i}]`, `maps host ids ${r.outside}+${r.count}, which you may not map (your own ${own}, or your ranges in /etc/sub${key[0]}id)`);
    });
  check(uidMap, caller.uid, sub.uids, "uidMappings");
  check(gidMap, caller.gid, sub.gids, "gidMappings");
  if (!sub.helpers) fail("linux.uidMappings", "mapping more than your own id needs newuidmap and newgidmap: install the package uidmap");
  return { writer: "newuidmap", uidMap, gidMap, setgroups: "allow" };
}

/** config.json's mounts, in order, then the devices the spec says a runtime supplies, then masks. */
/** What the mounts depend on: the tty group mapped, new PID and network namespaces, cgroup2 for /sys/fs/cgroup. */
interface MountContext {
  ttyGroup: boolean;
  pidns: boolean;
  netns: boolean;
  /** The host is cgroup v2 only and the container has a cgroup namespace: a `cgroup` mount is cgroup2, showing the container's own cgroup as its root. */
  cgroup2: boolean;
  /** The host has cgroup v1 hierarchies: how a `cgroup` mount (the key given) shows them, as runc does (null: an empty tmpfs). */
  cgroup1: (key: string) => CgroupV1Layout | null;
  /** Device nodes can be made: nsrun is the host's root and the container has no user namespace. */
  mknod: boolean;
}

function planOciMounts(spec: Spec, bundle: string, ctx: MountContext, fail: Fail): MountOp[] {
  const ops: MountOp[] = [];
  const targets = new Set<string>();
  (spec.mounts ?? []).forEach((m, i) => {
    const op = planOneMount(m, i, bundle, ctx, fail);
    targets.add(op.target);
    ops.push(op);
  });
  (spec.linux?.devices ?? []).forEach((d, i) => {
    targets.add(d.path);
    ops.push(planDevice(d, `linux.devices[${i}]`, ctx.mknod, fail));
  });
  for (const n of DEV_NODES)
    // Read-only (core/stages/mounts.ts): a root container keeps CHOWN and FOWNER, and must not chmod the host's node.
    if (!targets.has(`/dev/${n}`)) ops.push({ op: "bind", source: `/dev/${n}`, target: `/dev/${n}`, recursive: false, attrs: HOST_DEVICE_ATTRS, file: true, origin: "default devices" });
  for (const [target, linkTo] of DEV_LINKS) if (!targets.has(target)) ops.push({ op: "symlink", target, linkTo, origin: "default devices" });
  const boxPath = (p: string, key: string) => (p.startsWith("/") && !p.split("/").includes("..") ? p : fail(key, `expected an absolute path without "..", got ${JSON.stringify(p)}`));
  (spec.linux?.maskedPaths ?? []).forEach((p, i) => ops.push({ op: "mask", target: boxPath(p, `linux.maskedPaths[${i}]`), origin: `linux.maskedPaths[${i}]` }));
  (spec.linux?.readonlyPaths ?? []).forEach((p, i) => ops.push({ op: "readonly", target: boxPath(p, `linux.readonlyPaths[${i}]`), origin: `linux.readonlyPaths[${i}]` }));
  return ops;
}

/**
 * One of linux.devices. As runc does: root without a user namespace makes the node (mknodat, with
 * the config's mode, owner and group); in a user namespace, where the kernel refuses device nodes,
 * the host's node of the same path, type and numbers is bound. A FIFO can be made anywhere.
 */
function planDevice(d: NonNullable<NonNullable<Spec["linux"]>["devices"]>[number], key: string, mknod: boolean, fail: Fail): MountOp {
  const type = d.type === "u" ? "c" : d.type;
  if (type !== "p" && (d.major === undefined || d.minor === undefined)) fail(key, `a ${type === "c" ? "character" : "block"} device needs major and minor`);
  if (mknod || type === "p") return { op: "device", target: d.path, type, major: d.major ?? 0, minor: d.minor ?? 0, mode: d.fileMode ?? 0o666, uid: d.uid ?? 0, gid: d.gid ?? 0, origin: key };
  let st: ReturnType<typeof statSync>;
  try {
    st = statSync(d.path);
  } catch {
    return fail(key, `in a user namespace nsrun binds device nodes from the host (the kernel lets no one make them there), and the host has no ${JSON.stringify(d.path)}`);
  }
  const hostType = st.isCharacterDevice() ? "c" : st.isBlockDevice() ? "b" : st.isFIFO() ? "p" : "?";
  const major = Math.floor(Number(st.rdev) / 256) & 0xfff;
  const minor = (Number(st.rdev) & 0xff) | ((Number(st.rdev) >> 12) & 0xfff00);
  if (hostType !== type || (d.major !== undefined && d.major !== major) || (d.minor !== undefined && d.minor !== minor))
    fail(key, `the host's ${d.path} is ${hostType} ${major}:${minor}, not ${d.type} ${d.major}:${d.minor}; in a user namespace nsrun can only bind the host's own node`);
  return { op: "bind", source: d.path, target: d.path, recursive: false, attrs: 0, file: true, origin: key };
}

/**
 * rootfsPropagation and the mounts' propagation options. nsrun's default is private everywhere (the
 * namespace's copy of the host's mounts made MS_REC|MS_PRIVATE). When the root or a mount is to be a
 * slave, or a mount shared, that copy becomes MS_REC|MS_SLAVE instead; then, and under a shared root
 * (attaching below a shared mount makes a mount shared), every mount that asked for nothing is made
 * private explicitly, so only what the config names follows the host. A shared bind is copied before
 * "/" changes (`early`): of a shared host mount, a peer. A shared root is private until pivot_root.
 */
function planPropagation(spec: Spec, ops: MountOp[]): { mounts: MountOp[]; propagation?: PropagationPlan } {
  const asked = spec.linux?.rootfsPropagation;
  const root = asked ? PROPAGATION_OPTIONS[asked] : null;
  const own = (op: MountOp) => (op.op === "mount" || op.op === "bind" || op.op === "cgroup1" ? op.propagation : undefined);
  const fromHost = root?.type === F.MS_SLAVE || ops.some((op) => own(op)?.type === F.MS_SLAVE || own(op)?.type === F.MS_SHARED);
  const explicit = fromHost || root?.type === F.MS_SHARED;
  const isPrivate = (p: Propagation | null | undefined) => !p || p.type === F.MS_PRIVATE;
  if (!explicit && isPrivate(root) && ops.every((op) => isPrivate(own(op)))) return { mounts: ops.map(withoutPropagation) };
  const PRIVATE: Propagation = { type: F.MS_PRIVATE, recursive: true };
  const mounts = ops.map((op): MountOp => {
    if (op.op !== "mount" && op.op !== "bind" && op.op !== "cgroup1") return op;
    const p = op.propagation ?? (explicit ? PRIVATE : undefined);
    if (!p || (!explicit && p.type === F.MS_PRIVATE)) return withoutPropagation(op);
    return op.op === "bind" ? { ...op, propagation: p, early: p.type === F.MS_SHARED } : { ...op, propagation: p };
  });
  const rootPlan = root ?? (explicit ? PRIVATE : null);
  return { mounts, propagation: { fromHost, root: rootPlan && (explicit || rootPlan.type !== F.MS_PRIVATE) ? rootPlan : null } };
}

function withoutPropagation(op: MountOp): MountOp {
  if (op.op !== "mount" && op.op !== "bind" && op.op !== "cgroup1") return op;
  const { propagation: _, ...rest } = op;
  return rest as MountOp;
}

function planOneMount(m: SpecMount, i: number, bundle: string, ctx: MountContext, fail: Fail): MountOp {
  const key = `mounts[${i}]`;
  const dest = m.destination.startsWith("/") ? m.destination : `/${m.destination}`;
  if (dest.split("/").includes("..")) fail(`${key}.destination`, `expected a path without "..", got ${JSON.stringify(m.destination)}`);
  const target = posix.normalize(dest).replace(/\/+$/, "") || "/";
  if (target === "/") fail(`${key}.destination`, "cannot mount over the container's root; use root.path");
  const options: string[] = [];
  let propagation: Propagation | undefined;
  let idmapOption: string | null = null;
  (m.options ?? []).forEach((o, j) => {
    if (IGNORED_OPTIONS.has(o)) return;
    const p = PROPAGATION_OPTIONS[o];
    if (p) {
      if (propagation && (propagation.type !== p.type || propagation.recursive !== p.recursive)) fail(`${key}.options[${j}]`, `"${o}" contradicts an earlier propagation option`);
      return void (propagation = p);
    }
    if (o === "idmap" || o === "ridmap") return void (idmapOption = o);
    options.push(o);
  });
  const op = planMountOp(m, i, target, options, bundle, ctx, fail);
  if (propagation && op.op !== "mount" && op.op !== "bind" && op.op !== "cgroup1") fail(`${key}.options`, "propagation applies to mounts and binds");
  const withPropagation = propagation ? ({ ...op, propagation } as MountOp) : op;
  if (!m.uidMappings?.length && !m.gidMappings?.length && !idmapOption) return withPropagation;
  // An id-mapped bind: both maps, as a user namespace's ("containerID hostID size").
  if (withPropagation.op !== "bind") return fail(`${key}.type`, "only a bind mount can be id-mapped");
  if (!m.uidMappings?.length || !m.gidMappings?.length) return fail(`${key}.${m.uidMappings?.length ? "gidMappings" : "uidMappings"}`, "an id-mapped mount needs both uidMappings and gidMappings");
  const ranges = (list: NonNullable<SpecMount["uidMappings"]>) => list.map((r) => ({ inside: r.containerID, outside: r.hostID, count: r.size }));
  return { ...withPropagation, idmap: { uidMap: ranges(m.uidMappings), gidMap: ranges(m.gidMappings), recursive: idmapOption === "ridmap" } };
}

/** One mount of config.json, its propagation options taken out. */
function planMountOp(m: SpecMount, i: number, target: string, options: string[], bundle: string, ctx: MountContext, fail: Fail): MountOp {
  const key = `mounts[${i}]`;
  const isBind = m.type === "bind" || options.includes("bind") || options.includes("rbind");
  try {
    if (isBind) {
      if (!m.source) return fail(`${key}.source`, "missing; a bind mount needs a source");
      let source: SourceFact;
      const abs = resolve(bundle, m.source);
      try {
        const path = canonicalHostPath(abs);
        source = { path, isDir: statSync(path).isDirectory() };
      } catch (e) {
        if (e instanceof HostPathError) return fail(`${key}.source`, e.message);
        return fail(`${key}.source`, `${JSON.stringify(abs)} ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "does not exist" : `cannot be used (${(e as NodeJS.ErrnoException).code})`}`);
      }
      // A filesystem's data options (mode=755, size=, uid=) and the atime and sync flags mean nothing
      // to a bind: mount(2) ignores them with MS_BIND, and so do runc and nsrun. A word nsrun does
      // not know is still refused (a misspelt "nosiud" must not pass silently).
      const bindOptions = options.filter((o, j) => {
        if (o === "dev") fail(`${key}.options[${j}]`, '"dev": nsrun binds are always nodev (device nodes come only through linux.devices)');
        return !o.includes("=") && !BIND_IGNORED.includes(o);
      });
      const readonly = bindOptions.includes("ro");
      return planMount({ type: "bind", source: m.source, target, readonly, options: bindOptions.filter((o) => o !== "ro") }, i, source, ctx);
    }
    const type = m.type ?? fail(`${key}.type`, "missing (and the options say no bind)");
    if (type === "cgroup" || type === "cgroup2") {
      // cgroup v2 with a cgroup namespace: cgroup2 itself, whose root is the container's cgroup (it
      // was in it when its cgroup namespace was made). cgroup v1 (or hybrid): runc's layout, a tmpfs
      // with a folder per hierarchy (planCgroupV1Mount). Otherwise (cgroup v2 without a cgroup
      // namespace, where cgroup2 would show the host's whole tree, or no host facts) the container
      // sees an empty tmpfs there. Read-only unless the options say rw.
      const ro = !options.includes("rw");
      const attrs = F.MOUNT_ATTR_NOSUID | F.MOUNT_ATTR_NODEV | F.MOUNT_ATTR_NOEXEC | (ro ? F.MOUNT_ATTR_RDONLY : 0);
      if (ctx.cgroup2) return { op: "mount", fstype: "cgroup2", target, attrs, options: [], special: false, origin: key };
      const v1 = ctx.cgroup1(key);
      if (v1) return { op: "cgroup1", target, attrs, ...v1, origin: key };
      return { op: "mount", fstype: "tmpfs", target, attrs, options: ["mode=755"], special: false, origin: key };
    }
    if (!["tmpfs", "proc", "sysfs", "devpts", "mqueue"].includes(type))
      fail(`${key}.type`, `"${type}" is not supported (bind, tmpfs, proc, sysfs, devpts, mqueue, cgroup)`);
    return planMount({ type: type as "tmpfs", target, readonly: false, options }, i, null, ctx);
  } catch (e) {
    if (e instanceof MountPlanError) return fail(e.key.replace(/^mounts\[\d+\]/, key), e.message);
    throw e;
  }
}

function capList(names: string[] | undefined, key: string, fail: Fail): number[] {
  return [...new Set((names ?? []).map((n, i) => capabilityNumber(n) ?? fail(`${key}[${i}]`, `unknown capability ${JSON.stringify(n)}`)))].sort((a, b) => a - b);
}

/**
 * process.capabilities as runc applies them: each set as given, whatever the uid (execve(2) then
 * leaves a process with another uid only its ambient set, capabilities(7)). The kernel raises an
 * ambient capability only if it is permitted and inheritable; runc ignores the others (`runc
 * spec` lists ambient ones that are not inheritable), and so does nsrun, by leaving them out here.
 */
function planCapabilities(spec: Spec, fail: Fail): CapabilitySets & { bounding: number[] } {
  const c = spec.process?.capabilities ?? {};
  const bounding = capList(c.bounding, "process.capabilities.bounding", fail);
  const sets = {
    effective: capList(c.effective, "process.capabilities.effective", fail),
    permitted: capList(c.permitted, "process.capabilities.permitted", fail),
    inheritable: capList(c.inheritable, "process.capabilities.inheritable", fail),
    ambient: capList(c.ambient, "process.capabilities.ambient", fail),
  };
  for (const [name, list] of Object.entries(sets)) {
    const outside = list.find((cap) => !bounding.includes(cap));
    if (outside !== undefined) fail(`process.capabilities.${name}`, `CAP_${CAPABILITIES[outside]} is not in the bounding set; nsrun cannot grant it`);
  }
  if (sets.effective.some((cap) => !sets.permitted.includes(cap))) fail("process.capabilities.effective", "must be a subset of permitted");
  sets.ambient = sets.ambient.filter((cap) => sets.permitted.includes(cap) && sets.inheritable.includes(cap));
  return { bounding, ...sets };
}

function planSeccomp(spec: Spec, bounding: number[], fail: Fail): Insn[] | null {
  const s = spec.linux?.seccomp;
  if (!s) return null;
  if (s.listenerPath) fail("linux.seccomp.listenerPath", "seccomp user notification is not supported by nsrun");
  if (s.flags?.length) fail("linux.seccomp.flags", `${JSON.stringify(s.flags)}: seccomp filter flags are not supported by nsrun`);
  if (process.arch !== "x64") fail("linux.seccomp", `nsrun's seccomp compiler knows only x86-64 syscalls, not ${process.arch}`);
  // Profiles name syscalls of every architecture (bdflush, ...); libseccomp skips those this one
  // lacks, and so does nsrun: its table is x86-64's complete list (to 465, Linux 6.13), so a name
  // missing there has no syscall here to allow or deny.
  const syscalls = (s.syscalls ?? []).map((r) => ({ ...r, names: r.names.filter((n) => n in syscallTable("x64")) })).filter((r) => r.names.length);
  try {
    return compileProfile(parseProfile(JSON.stringify({ ...s, syscalls }), bounding.map((c) => CAPABILITIES[c])));
  } catch (e) {
    if (e instanceof ParseProfileError) return fail(`linux.seccomp.${e.where}`.replace(/\.$/, ""), e.message.replace(`${e.where}: `, ""));
    throw e;
  }
}

/** Only namespaced sysctls, and only for namespaces the container has of its own: never the host's. */
function planSysctl(spec: Spec, ns: Record<NamespaceKind, boolean>, fail: Fail): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  const IPC = /^(kernel\.(msgmax|msgmnb|msgmni|sem|shmall|shmmax|shmmni|shm_rmid_forced)|fs\.mqueue\..+)$/;
  for (const [name, value] of Object.entries(spec.linux?.sysctl ?? {})) {
    const key = `linux.sysctl.${name}`;
    if (!/^[a-z0-9_]+(\.[A-Za-z0-9_-]+)+$/.test(name.replace(/\//g, "."))) fail(key, "not a sysctl name");
    const dotted = name.replace(/\//g, ".");
    const ok = IPC.test(dotted) ? ns.ipc : dotted.startsWith("net.") ? ns.net : dotted === "kernel.hostname" || dotted === "kernel.domainname" ? ns.uts : false;
    if (!ok) fail(key, "is not a sysctl of a namespace the container has of its own (ipc, network, uts): it would change the host's");
    out.push([dotted.replace(/\./g, "/"), value]);
  }
  if (spec.domainname) out.push(["kernel/domainname", spec.domainname]);
  return out;
}

function planRlimits(spec: Spec, fail: Fail): RlimitPlan[] {
  // 2^64-1 (RLIM_INFINITY) arrives as a double; anything that large is unlimited.
  const value = (n: number) => (n >= 2 ** 63 ? -1 : n);
  const seen = new Set<string>();
  return (spec.process?.rlimits ?? []).map((r, i) => {
    const resource = RLIMITS[r.type];
    if (resource === undefined) fail(`process.rlimits[${i}].type`, `unknown rlimit ${JSON.stringify(r.type)} (RLIMIT_NOFILE, RLIMIT_NPROC, ...)`);
    if (seen.has(r.type)) fail(`process.rlimits[${i}].type`, `${r.type} is listed twice`);
    seen.add(r.type);
    const soft = value(r.soft);
    const hard = value(r.hard);
    if (hard !== -1 && (soft === -1 || soft > hard)) fail(`process.rlimits[${i}]`, "the soft limit is above the hard one");
    return { name: r.type.slice(7).toLowerCase() as RlimitPlan["name"], resource, soft, hard };
  });
}
