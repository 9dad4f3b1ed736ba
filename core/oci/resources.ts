// linux.cgroupsPath and linux.resources -> the same CgroupPlan box.toml's [limits] produce (plain
// data: folders to make, files to write, cgroup.procs to join), so applyCgroup/openCgroupJoin from
// core/stages/cgroup.ts carry it out. Unlike a box, an OCI container's cgroup outlives nsrun: `delete`
// removes it. A root container always gets one (ps, kill --all and stats read it); an ordinary
// user's only when it asks for limits and the host can delegate them (cgroup v2).
import { existsSync, readFileSync, rmdirSync } from "node:fs";
import { type CgroupHost, type CgroupPlan, inspectCgroups } from "../stages/cgroup";
import type { CgroupV1Dir } from "../stages/mounts";
import type { OciCaller } from "./caller";
import type { SpecResources } from "./spec";
import { NsrunError } from "../../ffi/error";

export type OciCgroupHost = CgroupHost;

/** A planning problem in linux.resources or linux.cgroupsPath, with the JSON path it is about. */
export class OciPlanError extends NsrunError {
  constructor(
    readonly key: string,
    message: string,
  ) {
    super(message);
  }
}

const DEFAULT_ALLOWED_DEVICES = ["c *:* m", "b *:* m", "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm", "c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm", "c 10:200 rwm"];

type Writes = Array<[controller: string, file: string, value: string]>;

export function planOciCgroup(res: SpecResources | undefined, cgroupsPath: string | undefined, id: string, caller: OciCaller, host: OciCgroupHost | null): CgroupPlan | null {
  const path = cgroupsPath || `nsrun/${id}`;
  if (/^[^/]*:[^/]*:/.test(path)) throw new OciPlanError("linux.cgroupsPath", `${JSON.stringify(path)} is a systemd slice path (slice:prefix:name); nsrun has no systemd cgroup driver: use cgroupfs paths (podman: --cgroup-manager=cgroupfs)`);
  if (path.split("/").includes("..")) throw new OciPlanError("linux.cgroupsPath", `expected a path without "..", got ${JSON.stringify(path)}`);
  if (!host) return null;
  const useV2 = host.v2 !== null && Object.keys(host.v1).length === 0;
  const writes = useV2 ? v2Writes(res ?? {}) : v1Writes(res ?? {});
  const limited = writes.some(([c]) => c !== "devices");
  if (!caller.hostRoot) {
    if (!limited) return null;
    if (!useV2) throw new OciPlanError("linux.resources", "this host has cgroup v1, where only root can make cgroups: run as root, or leave out linux.resources");
  }
  const memoryText = res?.memory?.limit !== undefined ? String(res.memory.limit) : null;
  if (useV2) {
    const v2 = host.v2 as NonNullable<CgroupHost["v2"]>;
    // As runc does: a relative path is below the parent of nsrun's own cgroup, not below the cgroup
    // itself, which has processes (nsrun's, a shell's) and so, on v2, can hand no controllers down.
    const leaf = under(v2.mount, v2.own.slice(0, v2.own.lastIndexOf("/")) || "/", path);
    if (existsSync(leaf) && !removeIfEmpty(leaf)) throw new OciPlanError("linux.cgroupsPath", `the cgroup ${JSON.stringify(leaf)} exists already, with processes in it`);
    const needed = [...new Set(writes.map(([c]) => c))].filter((c) => c !== "cgroup");
    const dirs = missingAncestors(v2.mount, leaf);
    // Controllers are handed down level by level, from the hierarchy's root to the leaf's parent.
    // Only where they are not on yet: an ordinary user may write nothing above the delegated cgroup.
    const enable: CgroupPlan["writes"] = [];
    for (const dir of [v2.mount, ...dirsBetween(v2.mount, leaf)]) {
      const missing = needed.filter((c) => !enabledBelow(dir).includes(c));
      if (missing.length) enable.push([`${dir}/cgroup.subtree_control`, missing.map((c) => `+${c}`).join(" ")]);
    }
    return {
      version: 2,
      dirs,
      writes: [...enable, ...writes.map(([, file, value]): [string, string] => [`${leaf}/${file}`, value])],
      procs: [`${leaf}/cgroup.procs`],
      boxDirs: [leaf],
      undo: [],
      oomFile: memoryText ? `${leaf}/memory.events` : null,
      memoryText,
    };
  }
  // A root container gets a cgroup of its own in every v1 hierarchy of the host, named ones
  // (name=systemd) and cpuset included, and on a hybrid host in its cgroup2 hierarchy too, as runc
  // 1.1's cgroupfs driver makes them: without a cgroup namespace, /proc/self/cgroup and the
  // `cgroup` mount then show the container's own cgroups, never nsrun's (a hierarchy's root: the
  // host's whole tree). Unlike runc, which ignores a named or cgroup2 hierarchy it cannot join,
  // every one is made and joined or the container is not created. An ordinary user's container gets
  // none on cgroup v1 (it cannot make cgroups there; its limits are refused above).
  const controllers = new Set([...(caller.hostRoot ? Object.keys(host.v1) : []), ...writes.map(([c]) => c)]);
  const hierarchy = (c: string) => host.v1[c] ?? raise("linux.resources", `this host has no cgroup v1 hierarchy for ${c}`);
  const leafOf = (c: string) => under(hierarchy(c).mount, hierarchy(c).own, path);
  const unified = caller.hostRoot && host.v2 ? { mount: host.v2.mount, leaf: under(host.v2.mount, host.v2.own, path) } : null;
  const leaves = [...new Set([...controllers].map(leafOf)), ...(unified ? [unified.leaf] : [])];
  for (const leaf of leaves) if (existsSync(leaf) && !removeIfEmpty(leaf)) throw new OciPlanError("linux.cgroupsPath", `the cgroup ${JSON.stringify(leaf)} exists already, with processes in it`);
  const dirs = [...[...controllers].flatMap((c) => missingAncestors(hierarchy(c).mount, leafOf(c))), ...(unified ? missingAncestors(unified.mount, unified.leaf) : [])];
  const cpusetInit = controllers.has("cpuset") ? cpusetInherit(hierarchy("cpuset").mount, leafOf("cpuset")) : [];
  return {
    version: 1,
    dirs: [...new Set(dirs)],
    writes: [...cpusetInit, ...writes.map(([c, file, value]): [string, string] => [`${leafOf(c)}/${file}`, value])],
    procs: leaves.map((l) => `${l}/cgroup.procs`),
    boxDirs: leaves,
    undo: [],
    oomFile: memoryText && host.v1.memory ? `${leafOf("memory")}/memory.oom_control` : null,
    memoryText,
  };
}

/**
 * `update`: the files to write for new linux.resources in a container's existing cgroups (made by
 * planOciCgroup at `create`). On v1 each controller's file goes to the container's folder in that
 * controller's hierarchy; a controller the container has no folder for is an error naming it.
 */
export function resourceWrites(cgroup: CgroupPlan, res: SpecResources): Array<[string, string]> {
  try {
    if (cgroup.version === 2) return v2Writes(res).map(([, file, value]) => [`${cgroup.boxDirs[0]}/${file}`, value]);
    const host = inspectCgroups();
    return v1Writes(res).map(([c, file, value]) => {
        const mount = host.v1[c]?.mount;
        const dir = mount && cgroup.boxDirs.find((d) => d.startsWith(`${mount}/`));
        if (!dir) throw new OciPlanError(`linux.resources`, `the container has no cgroup in the ${c} hierarchy`);
        return [`${dir}/${file}`, value];
      });
  } catch (e) {
    if (e instanceof OciPlanError) throw new Error(`${e.key}: ${e.message}`);
    throw e;
  }
}

/** A leftover cgroup of this name with nothing in it (a container that was never deleted) is taken away. */
function removeIfEmpty(dir: string): boolean {
  try {
    if (readFileSync(`${dir}/cgroup.procs`, "utf8").trim()) return false;
    rmdirSync(dir);
    return true;
  } catch {
    return false;
  }
}

/**
 * A new v1 cpuset cgroup starts with no CPUs and no memory nodes, and takes no process until it has
 * some. As runc does, each folder from the hierarchy's root down to the leaf that is not made yet,
 * or has none, gets its parent's cpuset.cpus and cpuset.mems, parents first; the config's own
 * values (linux.resources.cpu.cpus/mems) follow among the writes.
 */
function cpusetInherit(mount: string, leaf: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const dir of [...dirsBetween(mount, leaf), leaf]) {
    const parent = dir.slice(0, dir.lastIndexOf("/"));
    for (const file of ["cpuset.cpus", "cpuset.mems"]) {
      if (existsSync(dir) && readValue(`${dir}/${file}`)) continue;
      const value = nearestValue(parent, file, mount) ?? raise("linux.cgroupsPath", `cannot read ${file} of the cgroup ${JSON.stringify(parent)} (or any above it)`);
      out.push([`${dir}/${file}`, value]);
    }
  }
  return out;
}

function readValue(file: string): string {
  try {
    return readFileSync(file, "utf8").trim();
  } catch {
    return "";
  }
}

/** A cpuset file's value in `dir`, or in the nearest folder above it that exists and has one, up to `top`. */
function nearestValue(dir: string, file: string, top: string): string | null {
  for (let d = dir; d.length >= top.length; d = d.slice(0, d.lastIndexOf("/"))) {
    try {
      const v = readFileSync(`${d}/${file}`, "utf8").trim();
      if (v) return v;
    } catch {
      // not made yet: look further up
    }
  }
  return null;
}

/** The controllers a cgroup hands down (its cgroup.subtree_control); none for one not made yet. */
function enabledBelow(dir: string): string[] {
  try {
    return readFileSync(`${dir}/cgroup.subtree_control`, "utf8").trim().split(/\s+/);
  } catch {
    return [];
  }
}

function raise(key: string, message: string): never {
  throw new OciPlanError(key, message);
}

/** An absolute cgroupsPath is taken from the hierarchy's root; a relative one from `own`. */
function under(mount: string, own: string, path: string): string {
  const base = path.startsWith("/") ? mount : `${mount}${own === "/" ? "" : own}`;
  return `${base}/${path.replace(/^\/+/, "").replace(/\/+$/, "")}`;
}

function dirsBetween(top: string, leaf: string): string[] {
  const out: string[] = [];
  for (let d = leaf.slice(0, leaf.lastIndexOf("/")); d.length > top.length; d = d.slice(0, d.lastIndexOf("/"))) out.unshift(d);
  return out;
}

/** The folders from the first missing one down to the leaf, parents first (removed in reverse by `delete`, when empty). */
function missingAncestors(top: string, leaf: string): string[] {
  return [...dirsBetween(top, leaf), leaf].filter((d) => !existsSync(d));
}

function v1Writes(r: SpecResources): Writes {
  const w: Writes = [];
  const m = r.memory ?? {};
  const refuse = (key: string, why: string) => raise(`linux.resources.${key}`, why);
  if (m.kernel !== undefined || m.kernelTCP !== undefined) refuse(m.kernel !== undefined ? "memory.kernel" : "memory.kernelTCP", "kernel memory limits are not supported (deprecated in runtime-spec)");
  if (m.limit !== undefined) w.push(["memory", "memory.limit_in_bytes", String(m.limit)]);
  if (m.swap !== undefined) {
    // runtime-spec's swap is memory plus swap, which is what memsw counts; without swap accounting there is none to limit.
    if (existsSync("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")) w.push(["memory", "memory.memsw.limit_in_bytes", String(m.swap)]);
    else process.stderr.write("nsrun: warning: linux.resources.memory.swap: this host has no swap accounting (memory.memsw); only the memory limit applies\n");
  }
  if (m.reservation !== undefined) w.push(["memory", "memory.soft_limit_in_bytes", String(m.reservation)]);
  if (m.swappiness !== undefined) w.push(["memory", "memory.swappiness", String(m.swappiness)]);
  if (m.disableOOMKiller) w.push(["memory", "memory.oom_control", "1"]);
  const c = r.cpu ?? {};
  if (c.cpus) w.push(["cpuset", "cpuset.cpus", c.cpus]);
  if (c.mems) w.push(["cpuset", "cpuset.mems", c.mems]);
  if (c.realtimeRuntime !== undefined || c.realtimePeriod !== undefined || c.burst !== undefined || c.idle !== undefined) refuse("cpu", "realtime, burst and idle CPU settings are not supported by nsrun");
  if (c.shares !== undefined) w.push(["cpu", "cpu.shares", String(c.shares)]);
  if (c.period !== undefined) w.push(["cpu", "cpu.cfs_period_us", String(c.period)]);
  if (c.quota !== undefined) w.push(["cpu", "cpu.cfs_quota_us", String(c.quota)]);
  if (r.pids) w.push(["pids", "pids.max", r.pids.limit > 0 ? String(r.pids.limit) : "max"]);
  const b = r.blockIO ?? {};
  if (b.weight !== undefined) w.push(["blkio", "blkio.weight", String(b.weight)]);
  if (b.leafWeight !== undefined) w.push(["blkio", "blkio.leaf_weight", String(b.leafWeight)]);
  for (const d of b.weightDevice ?? []) {
    if (d.weight !== undefined) w.push(["blkio", "blkio.weight_device", `${d.major}:${d.minor} ${d.weight}`]);
    if (d.leafWeight !== undefined) w.push(["blkio", "blkio.leaf_weight_device", `${d.major}:${d.minor} ${d.leafWeight}`]);
  }
  const throttles = [["throttleReadBpsDevice", "read_bps_device"], ["throttleWriteBpsDevice", "write_bps_device"], ["throttleReadIOPSDevice", "read_iops_device"], ["throttleWriteIOPSDevice", "write_iops_device"]] as const;
  for (const [key, file] of throttles) for (const d of b[key] ?? []) w.push(["blkio", `blkio.throttle.${file}`, `${d.major}:${d.minor} ${d.rate}`]);
  for (const d of r.devices ?? []) {
    const num = (n: number | null | undefined) => (n === undefined || n === null || n < 0 ? "*" : String(n));
    const rule = `${d.type ?? "a"} ${num(d.major)}:${num(d.minor)} ${d.access || "rwm"}`;
    w.push(["devices", d.allow ? "devices.allow" : "devices.deny", rule]);
  }
  // As runc does, the devices every container has stay allowed after the config's rules (podman
  // denies all and relies on this): null, zero, full, random, urandom, tty, console, ptys, ptmx, tun.
  if (r.devices?.length) for (const rule of DEFAULT_ALLOWED_DEVICES) w.push(["devices", "devices.allow", rule]);
  refuseOthers(r);
  if (r.unified && Object.keys(r.unified).length) refuse("unified", "cgroup v2 files cannot be set on this cgroup v1 host");
  return w;
}

function v2Writes(r: SpecResources): Writes {
  const w: Writes = [];
  const m = r.memory ?? {};
  if (m.kernel !== undefined || m.kernelTCP !== undefined) raise("linux.resources.memory.kernel", "kernel memory limits are not supported (deprecated in runtime-spec)");
  if (m.limit !== undefined) w.push(["memory", "memory.max", m.limit > 0 ? String(m.limit) : "max"]);
  if (m.swap !== undefined && m.limit !== undefined) w.push(["memory", "memory.swap.max", m.swap < 0 ? "max" : String(Math.max(0, m.swap - m.limit))]);
  if (m.reservation !== undefined) w.push(["memory", "memory.low", String(m.reservation)]);
  if (m.disableOOMKiller || m.swappiness !== undefined) raise("linux.resources.memory", "disableOOMKiller and swappiness do not exist in cgroup v2");
  const c = r.cpu ?? {};
  if (c.realtimeRuntime !== undefined || c.realtimePeriod !== undefined || c.burst !== undefined || c.idle !== undefined)
    raise("linux.resources.cpu", "realtime, burst and idle CPU settings are not supported by nsrun");
  if (c.cpus) w.push(["cpuset", "cpuset.cpus", c.cpus]);
  if (c.mems) w.push(["cpuset", "cpuset.mems", c.mems]);
  if (c.shares !== undefined) w.push(["cpu", "cpu.weight", String(Math.round(1 + ((Math.max(2, c.shares) - 2) * 9999) / 262142))]);
  if (c.quota !== undefined || c.period !== undefined) w.push(["cpu", "cpu.max", `${c.quota !== undefined && c.quota > 0 ? c.quota : "max"} ${c.period ?? 100000}`]);
  if (r.pids) w.push(["pids", "pids.max", r.pids.limit > 0 ? String(r.pids.limit) : "max"]);
  const b = r.blockIO ?? {};
  if (b.weight !== undefined) w.push(["io", "io.weight", `default ${Math.round(1 + ((b.weight - 10) * 9999) / 990)}`]);
  if (b.leafWeight !== undefined || b.weightDevice?.length || b.throttleReadBpsDevice?.length || b.throttleWriteBpsDevice?.length || b.throttleReadIOPSDevice?.length || b.throttleWriteIOPSDevice?.length)
    raise("linux.resources.blockIO", "on cgroup v2 nsrun sets only blockIO.weight");
  // Device rules need an eBPF program on cgroup v2; nsrun's containers get their device nodes only as binds of the host's.
  refuseOthers(r);
  for (const [file, value] of Object.entries(r.unified ?? {})) {
    if (file.includes("/") || file.startsWith(".")) raise(`linux.resources.unified.${file}`, "expected a file name of the cgroup");
    w.push([file.split(".")[0] === "cgroup" ? "cgroup" : file.split(".")[0], file, value]);
  }
  return w;
}

function refuseOthers(r: SpecResources): void {
  if (r.hugepageLimits?.length) raise("linux.resources.hugepageLimits", "not supported by nsrun");
  if (r.network !== undefined) raise("linux.resources.network", "not supported by nsrun");
  if (r.rdma !== undefined) raise("linux.resources.rdma", "not supported by nsrun");
}

/** How planCgroupV1Mount lays out /sys/fs/cgroup (MountOp "cgroup1" without its target and attributes). */
export interface CgroupV1Layout {
  hierarchies: CgroupV1Dir[];
  links: Array<{ name: string; linkTo: string }>;
}

/**
 * An OCI `cgroup` mount on a cgroup v1 (or hybrid) host, as runc 1.1 lays it out: a folder per v1
 * hierarchy of the host (in the host's mount table's order), named after its mount point's last
 * component; with a cgroup namespace, a fresh mount of that hierarchy (its controllers, or its
 * name=, as options: the kernel gives the namespace's root, the container's cgroup); without one,
 * a bind of the container's own cgroup folder (from `box`, else nsrun's own cgroup, which the
 * container stays in). Each controller of a co-mounted hierarchy ("cpu,cpuacct") gets a link to
 * it. The cgroup2 mount of a hybrid host is left out, as runc leaves it out. Null: no v1 hierarchy.
 */
export function planCgroupV1Mount(host: CgroupHost, box: CgroupPlan | null, cgroupns: boolean, key: string): CgroupV1Layout | null {
  const byMount = new Map<string, { own: string; options: string[] }>();
  for (const [option, h] of Object.entries(host.v1)) {
    const entry = byMount.get(h.mount) ?? { own: h.own, options: [] };
    entry.options.push(option);
    byMount.set(h.mount, entry);
  }
  if (byMount.size === 0) return null;
  const hierarchies: CgroupV1Dir[] = [];
  for (const [mount, { own, options }] of byMount) {
    const name = mount.slice(mount.lastIndexOf("/") + 1);
    // A name that is not one path component would put the mount elsewhere: refused, not adjusted.
    if (name === "" || name === "." || name === "..") raise(key, `the host's cgroup v1 hierarchy mounted on ${JSON.stringify(mount)} has no folder name to show it under`);
    if (hierarchies.some((h) => h.name === name)) continue;
    const leaf = box?.version === 1 ? box.boxDirs.find((d) => d.startsWith(`${mount}/`)) : undefined;
    hierarchies.push({ name, options: cgroupns ? options : null, source: leaf ?? `${mount}${own === "/" ? "" : own}` });
  }
  const links: CgroupV1Layout["links"] = [];
  for (const h of hierarchies)
    if (h.name.includes(","))
      for (const c of h.name.split(",")) if (c && c !== "." && c !== ".." && !hierarchies.some((o) => o.name === c) && !links.some((l) => l.name === c)) links.push({ name: c, linkTo: h.name });
  return { hierarchies, links };
}
