// `nsrun doctor`: does this host have what a box needs? One check per fact, in the order the
// algorithm meets them, each {id, status, summary, detail?, fix?}. The checks read the host through
// a HostView (ffi/probe.ts), so tests can point them at a folder of fake /proc and /etc files. Only
// the live probe runs something: nsrun itself, in a rootless-style box, with its config on stdin.
// Nothing is written to the host.
import { chmodSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { type HostView, hostView, type Mount, parseMountinfo, realpathOr, runProbe } from "../../ffi/probe";
import { inspectCgroups } from "../stages/cgroup";
import { passwdName } from "../stages/userns";

export type Status = "ok" | "warn" | "fail";
/** One line of the report; `fix` says what to do when the status is not ok. */
export type Check = { id: string; status: Status; summary: string; detail?: string; fix?: string };

export interface DoctorContext {
  view: HostView;
  /** The caller's effective uid, as this process's user namespace numbers it. */
  uid: number;
  /** Whether this process is in the initial user namespace (its uid_map maps every id to itself). */
  initialUserNs: boolean;
  /** uid 0 in the initial user namespace: the only caller the kernel's userns restrictions exempt. */
  root: boolean;
  /** The caller's user name, for /etc/subuid (null when /etc/passwd has none). */
  user: string | null;
  /** The executable that makes the namespaces: what an AppArmor profile must name. */
  nsrunPath: string;
  /** The argv that runs nsrun for the live probe; null skips the probe. */
  probe: string[] | null;
  probeTimeoutMs: number;
}

const NS_KINDS = ["cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"];
/** Only `[namespaces] time = true` needs a time namespace; the default box does not. */
const OPTIONAL_NS = "time";
const NS_CONFIG: Record<string, string> = { cgroup: "CGROUPS", ipc: "IPC_NS", net: "NET_NS", pid: "PID_NS", time: "TIME_NS", user: "USER_NS", uts: "UTS_NS", mnt: "NAMESPACES" };
const sysctlFix = (key: string, value: string) =>
  `sudo sysctl -w ${key}=${value}; to keep it after a reboot: echo ${key}=${value} | sudo tee -a /etc/sysctl.d/90-nsrun.conf`;

export function checkKernel(ctx: DoctorContext): Check {
  const release = ctx.view.read("/proc/sys/kernel/osrelease")?.trim();
  if (!release) return { id: "kernel", status: "warn", summary: "kernel: cannot read /proc/sys/kernel/osrelease" };
  const [major, minor] = release.split(/[.-]/).map(Number);
  if (major > 5 || (major === 5 && minor >= 12)) return { id: "kernel", status: "ok", summary: `kernel: Linux ${release}` };
  const detail = "nsrun needs openat2 (5.6), close_range with CLOSE_RANGE_CLOEXEC (5.11) and mount_setattr (5.12)";
  return { id: "kernel", status: "fail", summary: `kernel: Linux ${release} is older than 5.12`, detail, fix: "boot Linux 5.12 or later" };
}

export function checkNamespaces(ctx: DoctorContext): Check {
  const have = new Set(ctx.view.list("/proc/self/ns") ?? []);
  const missing = NS_KINDS.filter((k) => !have.has(k));
  if (!missing.length) return { id: "namespaces", status: "ok", summary: `namespaces: all eight kinds (${NS_KINDS.join(" ")})` };
  const needed = missing.filter((k) => k !== OPTIONAL_NS);
  const summary = `namespaces: the kernel has no ${missing.join(", ")} namespace${missing.length > 1 ? "s" : ""} (/proc/self/ns)`;
  const detail = needed.length ? undefined : "only boxes with [namespaces] time = true need a time namespace";
  return { id: "namespaces", status: needed.length ? "fail" : "warn", summary, detail, fix: `use a kernel built with ${missing.map((k) => `CONFIG_${NS_CONFIG[k]}`).join(", ")}` };
}

export function checkUserNsLimit(ctx: DoctorContext): Check {
  const value = ctx.view.read("/proc/sys/user/max_user_namespaces")?.trim();
  const summary = `user namespaces: max_user_namespaces = ${value ?? "(missing)"}`;
  if (value === undefined) return { id: "userns.max", status: "fail", summary, fix: "use a kernel built with CONFIG_USER_NS" };
  if (Number(value) > 0) return { id: "userns.max", status: "ok", summary };
  return { id: "userns.max", status: "fail", summary, detail: "0 forbids user namespaces to everyone", fix: sysctlFix("user.max_user_namespaces", "15000") };
}

export function checkOtherNsLimits(ctx: DoctorContext): Check {
  const kinds = NS_KINDS.filter((k) => k !== "user");
  const zero = kinds.filter((k) => ctx.view.read(`/proc/sys/user/max_${k}_namespaces`)?.trim() === "0");
  if (!zero.length) return { id: "ns.max", status: "ok", summary: `namespace limits: max_{${kinds.join(",")}}_namespaces are above 0 (or absent)` };
  const needed = zero.some((k) => k !== OPTIONAL_NS);
  const detail = needed ? "the default box needs cgroup, ipc, mnt, net, pid and uts namespaces" : "only boxes with [namespaces] time = true need one";
  const fix = zero.map((k) => sysctlFix(`user.max_${k}_namespaces`, "15000")).join("\n");
  return { id: "ns.max", status: needed ? "fail" : "warn", summary: `namespace limits: ${zero.map((k) => `max_${k}_namespaces`).join(", ")} = 0`, detail, fix };
}

export function checkUnprivilegedClone(ctx: DoctorContext): Check {
  const value = ctx.view.read("/proc/sys/kernel/unprivileged_userns_clone")?.trim();
  const id = "userns.clone";
  if (value === undefined) return { id, status: "ok", summary: "user namespaces: no kernel.unprivileged_userns_clone here (only Debian's kernels have it)" };
  const summary = `user namespaces: kernel.unprivileged_userns_clone = ${value}`;
  if (value !== "0") return { id, status: "ok", summary };
  const fix = sysctlFix("kernel.unprivileged_userns_clone", "1");
  if (ctx.root) return { id, status: "warn", summary: `${summary}: ordinary users cannot create user namespaces (root can)`, fix };
  return { id, status: "fail", summary: `${summary}: ordinary users cannot create user namespaces`, fix };
}

/** The AppArmor profile that lets `path` create user namespaces (Ubuntu 23.10+). */
export function apparmorProfile(path: string): string {
  const p = /\s/.test(path) ? JSON.stringify(path) : path;
  return `abi <abi/4.0>,\ninclude <tunables/global>\n\nprofile nsrun ${p} flags=(unconfined) {\n  userns,\n\n  include if exists <local/nsrun>\n}\n`;
}

function apparmorFix(path: string): string {
  const profile = apparmorProfile(path).trimEnd().split("\n").map((l) => (l ? `  ${l}` : l));
  return [
    "install this profile as /etc/apparmor.d/nsrun:",
    ...profile,
    "then load it: sudo apparmor_parser -r /etc/apparmor.d/nsrun",
    "(or lift the restriction for every program: sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0)",
  ].join("\n");
}

/** A profile file in /etc/apparmor.d that names `path` and allows `userns,`, and the profile's name. */
function findProfile(view: HostView, path: string): { file: string; name: string } | null {
  const esc = path.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
  const names = new RegExp(`(?:^|\\s)"?${esc}"?(?:\\s|\\{|$)`);
  for (const entry of (view.list("/etc/apparmor.d") ?? []).sort()) {
    const file = `/etc/apparmor.d/${entry}`;
    const text = view.stat(file)?.isFile ? view.read(file) : null;
    if (!text || !names.test(text) || !/^\s*userns\s*,/m.test(text)) continue;
    return { file, name: text.match(new RegExp(`profile\\s+(\\S+)\\s+"?${esc}`))?.[1] ?? path };
  }
  return null;
}

export function checkAppArmor(ctx: DoctorContext): Check {
  const value = ctx.view.read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns")?.trim();
  const id = "userns.apparmor";
  if (value === undefined) return { id, status: "ok", summary: "user namespaces: no AppArmor restriction (kernel.apparmor_restrict_unprivileged_userns absent)" };
  const summary = `user namespaces: kernel.apparmor_restrict_unprivileged_userns = ${value}`;
  if (value === "0") return { id, status: "ok", summary };
  const found = findProfile(ctx.view, ctx.nsrunPath);
  if (found) {
    const loaded = ctx.view.read("/sys/kernel/security/apparmor/profiles");
    if (loaded !== null && !loaded.split("\n").some((l) => l.startsWith(`${found.name} (`)))
      return { id, status: "warn", summary: `${summary}; ${found.file} allows nsrun but is not loaded`, fix: `sudo apparmor_parser -r ${found.file}` };
    return { id, status: "ok", summary: `${summary}; ${found.file} allows userns for ${ctx.nsrunPath}` };
  }
  const detail = `no profile in /etc/apparmor.d names ${ctx.nsrunPath} with \`userns,\`; a rootless box's uid_map write fails with EPERM`;
  if (ctx.root) return { id, status: "warn", summary: `${summary}: ordinary users need an AppArmor profile for nsrun (root is exempt)`, detail, fix: apparmorFix(ctx.nsrunPath) };
  return { id, status: "fail", summary: `${summary}: nsrun needs an AppArmor profile`, detail, fix: apparmorFix(ctx.nsrunPath) };
}

/** In-process: which user namespace this process is in, and whether a seccomp filter is on it. */
export function checkOwnUserNs(ctx: DoctorContext): Check {
  const uidMap = ctx.view.read("/proc/self/uid_map");
  const gidMap = ctx.view.read("/proc/self/gid_map");
  if (uidMap === null || gidMap === null) return { id: "userns.self", status: "warn", summary: "user namespaces: cannot read /proc/self/uid_map" };
  const seccomp = ctx.view.read("/proc/self/status")?.match(/^Seccomp:\s*(\d)/m)?.[1];
  const summary = ctx.initialUserNs
    ? "user namespaces: nsrun runs in the initial user namespace (uid_map 0 0 4294967295)"
    : `user namespaces: nsrun already runs in a user namespace (uid_map ${oneLine(uidMap)}; gid_map ${oneLine(gidMap)}); boxes nest in it`;
  const detail = seccomp === "2" ? "a seccomp filter is on this process; it may refuse unshare (the live probe shows whether it does)" : undefined;
  return { id: "userns.self", status: "ok", summary, detail };
}

/**
 * Where a live probe's nsrun reads its config: its stdin, by /proc (a bare VM or initramfs may have
 * no /dev/stdin link, and then the probe would fail where boxes run fine).
 */
const PROBE_STDIN = "/proc/self/fd/0";

/** The live probe's box: the host's / read-only, with a user namespace even for root. */
export const PROBE_CONFIG = 'rootfs = "/"\nreadonly = true\n\n[namespaces]\nuser = true\n\n[process]\nargs = ["/bin/true"]\n';

/** Runs nsrun for real: unshare(CLONE_NEWUSER|...), setgroups, uid_map, gid_map, mounts, pivot_root, execve. */
export async function probeLive(ctx: DoctorContext): Promise<Check> {
  const id = "userns.live";
  if (!ctx.probe) return { id, status: "warn", summary: "user namespaces: live probe skipped (no nsrun executable to run)" };
  const { code, stderr, ms, timedOut } = await runProbe([...ctx.probe, "run", "--config", PROBE_STDIN], PROBE_CONFIG, ctx.probeTimeoutMs);
  if (timedOut) return { id, status: "fail", summary: `user namespaces: live probe did not finish within ${ctx.probeTimeoutMs} ms`, detail: stderr.trim() || undefined };
  if (code === null) return { id, status: "fail", summary: `user namespaces: live probe: ${stderr}` };
  if (code === 0) return { id, status: "ok", summary: `user namespaces: live probe ran /bin/true in a box with a user namespace (${ms} ms)` };
  const lines = stderr.trim().split("\n");
  const hint = lines.find((l) => l.trim().startsWith("hint:"))?.trim().slice(5).trim();
  const detail = lines.slice(1).filter((l) => !l.trim().startsWith("hint:")).join("\n") || undefined;
  return { id, status: "fail", summary: `user namespaces: live probe failed, exit ${code}: ${lines[0] || "(no message)"}`, detail, fix: hint };
}

function idRanges(view: HostView, file: string, ctx: DoctorContext): string[] {
  return (view.read(file) ?? "")
    .split("\n")
    .map((l) => l.trim().split(":"))
    .filter(([who, start, count]) => count !== undefined && (who === String(ctx.uid) || who === ctx.user) && start !== "")
    .map(([, start, count]) => `${start}+${count}`);
}

export function checkSubIds(ctx: DoctorContext): Check {
  const id = "subids";
  const uids = idRanges(ctx.view, "/etc/subuid", ctx);
  const gids = idRanges(ctx.view, "/etc/subgid", ctx);
  const who = ctx.user ?? `uid ${ctx.uid}`;
  if (ctx.root)
    return {
      id,
      status: "ok",
      summary: `subordinate ids: a root box with user = true maps to ${uids.length ? `root's subuid ${uids.join(", ")}` : "1879048192+65536 (root has no /etc/subuid entry)"}`,
    };
  const helpers = ["newuidmap", "newgidmap"].every((t) => ctx.view.stat(`/usr/bin/${t}`) !== null);
  if (uids.length && gids.length && helpers)
    return { id, status: "ok", summary: `subordinate ids: rootless boxes map 0 to ${who} and 1.. to subuid ${uids.join(", ")} and subgid ${gids.join(", ")}` };
  if (uids.length && gids.length)
    return { id, status: "warn", summary: `subordinate ids: ${who} has ranges, but newuidmap/newgidmap are missing, so boxes map only ${who} (as 0)`, fix: "sudo apt-get install uidmap" };
  const missing = [uids.length ? "" : "/etc/subuid", gids.length ? "" : "/etc/subgid"].filter(Boolean);
  const name = ctx.user ?? "USER";
  const detail = `rootless boxes map only ${who}, as 0: apt-get, su and users other than root inside need more ids`;
  const fix = `add these lines (or: sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 ${name})\n  /etc/subuid: ${name}:100000:65536\n  /etc/subgid: ${name}:100000:65536`;
  return { id, status: "warn", summary: `subordinate ids: no ${missing.join(" or ")} entry for ${who}`, detail, fix };
}

export function checkIdMapHelpers(ctx: DoctorContext): Check {
  const states = ["newuidmap", "newgidmap"].map((tool) => {
    const path = `/usr/bin/${tool}`;
    const s = ctx.view.stat(path);
    if (!s) return { tool, state: "missing" };
    // In a nested user namespace the host's root is unmapped and shows as the overflow uid.
    const owner = s.uid === 0 ? "root" : !ctx.initialUserNs && String(s.uid) === (ctx.view.read("/proc/sys/kernel/overflowuid")?.trim() ?? "65534") ? "root (unmapped here)" : null;
    if ((s.mode & 0o4000) !== 0 && owner) return { tool, state: `setuid ${owner}` };
    return { tool, state: ctx.view.hasCapabilities(path) ? "file capabilities" : "unprivileged" };
  });
  const summary = `id-map helpers: ${states.map((s) => `${s.tool} ${s.state === "missing" ? "not installed" : `(${s.state})`}`).join(", ")}`;
  const detail = "rootless boxes map id ranges from /etc/subuid and /etc/subgid through them";
  if (states.some((s) => s.state === "missing")) return { id: "idmap", status: "warn", summary, detail, fix: "sudo apt-get install uidmap" };
  if (states.some((s) => s.state === "unprivileged"))
    return { id: "idmap", status: "warn", summary, detail: `${detail}; without setuid or file capabilities they cannot map other ids`, fix: "sudo chmod u+s /usr/bin/newuidmap /usr/bin/newgidmap" };
  return { id: "idmap", status: "ok", summary };
}

const LIMIT_CONTROLLERS = ["memory", "pids", "cpu", "io"];
const V1_NAME: Record<string, string> = { memory: "memory", pids: "pids", cpu: "cpu", io: "blkio" };
/** Threaded controllers; the others the kernel will not enable in a non-root cgroup with processes (EBUSY). */
const THREADED = ["cpu", "pids"];

/** A cgroup's processes (paths from mountinfo are used as they are, like `writable`), or null. */
function readMembers(file: string): string[] | null {
  try {
    return readFileSync(file, "utf8").split("\n").filter(Boolean);
  } catch {
    return null;
  }
}

export function checkCgroup(ctx: DoctorContext): Check {
  let host: ReturnType<typeof inspectCgroups>;
  try {
    host = inspectCgroups(`${ctx.view.root}/proc`);
  } catch (e) {
    return { id: "cgroup", status: "warn", summary: `cgroup: cannot read the layout: ${(e as Error).message}` };
  }
  const v1 = Object.keys(host.v1).filter((k) => !k.startsWith("name=")).sort();
  const { v2 } = host;
  const version = v2 && v1.length ? "hybrid (v1 and v2)" : v2 ? "v2" : v1.length ? "v1" : "none";
  const ownDir = v2 ? `${v2.mount}${v2.own === "/" ? "" : v2.own}` : "";
  const ownWritable = v2 !== null && ctx.view.writable(ownDir);
  // nsrun's box cgroup goes below nsrun's own. A domain controller must be on there already, or nsrun
  // must be alone in it, so that it can move itself into a leaf and turn the controller on (the
  // kernel allows that only in a cgroup without processes). This doctor stands in for nsrun here.
  const members = v2 ? readMembers(`${ownDir}/cgroup.procs`) : null;
  const alone = members !== null && members.length <= 1;
  const enabled = (c: string) => v2 !== null && (v2.delegated.includes(c) || v2.own === "/" || THREADED.includes(c) || alone);
  const usable = (c: string) => (v2?.controllers.includes(c) && (ctx.root || ownWritable) && enabled(c)) || (ctx.root && v1.includes(V1_NAME[c]));
  const missing = LIMIT_CONTROLLERS.filter((c) => !usable(c));
  const lines = [
    v2 ? `v2 at ${v2.mount}: controllers ${v2.controllers.join(" ") || "none"}; your cgroup ${v2.own} (${ownWritable ? "writable" : "not writable"} by you), subtree_control ${v2.delegated.join(" ") || "empty"}` : "no cgroup v2",
    v1.length ? `v1 hierarchies: ${v1.join(" ")}${ctx.root ? "" : " (only root can use them)"}` : "no cgroup v1",
  ];
  if (!missing.length) return { id: "cgroup", status: "ok", summary: `cgroup: ${version}; [limits] can use ${LIMIT_CONTROLLERS.join(" ")}`, detail: lines.join("\n") };
  if (v2?.controllers.some((c) => missing.includes(c) && !enabled(c)) && (ctx.root || ownWritable))
    lines.push(`your cgroup holds ${members?.length ?? "other"} processes: the kernel enables memory and io in it only once it has none, so nsrun must be alone there (or find them enabled)`);
  // A delegated scope hands down only cgroup v2 controllers: where the missing ones are not on v2 at
  // all (a hybrid or v1 host has them on v1, root's alone), systemd-run cannot help an ordinary user.
  const notOnV2 = missing.filter((c) => !v2?.controllers.includes(c));
  const fix = ctx.root
    ? "boot with cgroup v2 (systemd.unified_cgroup_hierarchy=1), or mount the missing v1 controllers"
    : notOnV2.length
      ? `${notOnV2.join(" ")} ${notOnV2.length === 1 ? "is" : "are"} not on cgroup v2 here (${v2 ? `${v2.mount} has ${v2.controllers.join(" ") || "none"}` : "no v2"}) but on v1, which only root can use, so a delegated scope cannot help: boot with cgroup v2 (the kernel parameter systemd.unified_cgroup_hierarchy=1), or run boxes with [limits] as root`
      : "run nsrun in a cgroup v2 delegated to you and of its own: `systemd-run --user --scope -p Delegate=yes nsrun ...`";
  const summary = `cgroup: ${version}; [limits] cannot use ${missing.join(" ")}${ctx.root ? "" : " as this user"}`;
  return { id: "cgroup", status: "warn", summary, detail: `${lines.join("\n")}\nboxes without [limits] do not need a cgroup`, fix };
}

/**
 * An ephemeral box over an empty folder: overlayfs mounted inside a user namespace, for real. (Not
 * over the host's /: the kernel refuses to overlay a mount with locked submounts in a user namespace.)
 * The folder has no program, so success is exit 127 after every mount is in place.
 */
export const overlayProbeConfig = (rootfs: string) =>
  `rootfs = ${JSON.stringify(rootfs)}\nephemeral = true\n\n[namespaces]\nuser = true\n\n[process]\nargs = ["/nsrun-doctor-probe"]\n`;

export async function checkOverlay(ctx: DoctorContext): Promise<Check> {
  const fs = ctx.view.read("/proc/filesystems") ?? "";
  if (/^\S*\s+overlay$/m.test(fs)) {
    if (!ctx.probe) return { id: "overlay", status: "ok", summary: "overlayfs: available (ephemeral = true); live probe skipped" };
    const empty = mkdtempSync(join(tmpdir(), "nsrun-doctor-"));
    chmodSync(empty, 0o755);
    const { code, stderr, ms } = await runProbe([...ctx.probe, "run", "--config", PROBE_STDIN], overlayProbeConfig(empty), ctx.probeTimeoutMs).finally(() =>
      rmSync(empty, { recursive: true, force: true }),
    );
    if (code === 127) return { id: "overlay", status: "ok", summary: `overlayfs: an ephemeral box mounted it inside a user namespace (${ms} ms)` };
    const fix = "ephemeral = true in a user namespace needs overlayfs there (5.11+) with its scratch upper layer on a tmpfs that keeps user.* xattrs (Linux 6.6+); use a writable rootfs you own instead";
    return { id: "overlay", status: "warn", summary: `overlayfs: available, but an ephemeral box failed, exit ${code}: ${stderr.trim().split("\n")[0] || "(no message)"}`, fix };
  }
  const fix = "sudo modprobe overlay (to load it at boot: echo overlay | sudo tee /etc/modules-load.d/overlay.conf)";
  return { id: "overlay", status: "warn", summary: "overlayfs: not in /proc/filesystems; boxes with ephemeral = true will fail", fix };
}

export function checkPivotRoot(ctx: DoctorContext): Check {
  const root = parseMountinfo(ctx.view.read("/proc/self/mountinfo") ?? "").findLast((m) => m.point === "/");
  if (!root) return { id: "pivot_root", status: "warn", summary: "pivot_root: cannot find / in /proc/self/mountinfo" };
  if (root.fstype !== "rootfs" && root.fstype !== "ramfs") return { id: "pivot_root", status: "ok", summary: `pivot_root: / is ${root.fstype} (${root.source}), not the initial ramfs` };
  const fix = "boot with a real root filesystem, or switch_root onto a tmpfs before running nsrun";
  return { id: "pivot_root", status: "fail", summary: `pivot_root: / is the initial ramfs (${root.fstype}); pivot_root(2) refuses to move it`, fix };
}

/** Directories of proc that are permanently empty: mounts there do not hide anything from a new proc. */
const EMPTY_PROC_DIRS = ["/proc/sys/fs/binfmt_misc", "/proc/fs/nfsd"];

export function checkProc(ctx: DoctorContext): Check {
  const mounts = parseMountinfo(ctx.view.read("/proc/self/mountinfo") ?? "");
  const procs = mounts.filter((m) => m.fstype === "proc");
  const problems = (p: Mount) => [
    ...mounts.filter((m) => m.point.startsWith(`${p.point}/`) && !EMPTY_PROC_DIRS.includes(m.point)).map((m) => `${m.point} is covered (${m.fstype})`),
    ...(p.opts.includes("ro") ? [`${p.point} is read-only`] : []),
  ];
  if (procs.some((p) => !problems(p).length)) return { id: "proc", status: "ok", summary: "proc: /proc is fully visible, so a box may mount its own" };
  const found = procs.flatMap(problems);
  const summary = procs.length
    ? `proc: /proc is masked or read-only (${found.length} problem${found.length > 1 ? "s" : ""}); a box with a user namespace cannot mount a new proc`
    : "proc: no proc is mounted; a box with a user namespace cannot mount one";
  const fix = "run nsrun where the host's /proc is neither masked nor read-only (in docker: --security-opt systempaths=unconfined; in podman: --security-opt unmask=ALL)";
  return { id: "proc", status: "warn", summary, detail: found.join("\n") || undefined, fix };
}

/** An id map on one line: "0 1000 1, 1 100000 65536". */
const oneLine = (m: string) => m.trim().split("\n").map((l) => l.trim().split(/\s+/).join(" ")).join(", ");

export function doctorContext(o: Partial<DoctorContext> = {}): DoctorContext {
  const view = o.view ?? hostView();
  const uid = o.uid ?? process.geteuid?.() ?? 0;
  const uidMap = view.read("/proc/self/uid_map");
  const initialUserNs = o.initialUserNs ?? (uidMap === null || oneLine(uidMap) === "0 0 4294967295");
  const probe = o.probe === undefined ? selfCommand() : o.probe;
  const user = o.user === undefined ? userName(view, uid) : o.user;
  const nsrunPath = o.nsrunPath ?? realpathOr(probe?.[0] ?? process.execPath); // AppArmor matches the resolved path
  return { view, uid, initialUserNs, root: o.root ?? (uid === 0 && initialUserNs), user, nsrunPath, probe, probeTimeoutMs: o.probeTimeoutMs ?? 5000 };
}

/** Every check, in order. The live probes run while the others read their files. */
export async function runDoctor(options: Partial<DoctorContext> = {}): Promise<Check[]> {
  const ctx = doctorContext(options);
  // The cgroup check counts the processes in doctor's own cgroup (is nsrun alone there?): it reads
  // them before the probes start boxes in that cgroup, or it would count them too.
  const cgroup = checkCgroup(ctx);
  const live = probeLive(ctx);
  const overlay = checkOverlay(ctx);
  const userns = [checkKernel, checkNamespaces, checkUserNsLimit, checkOtherNsLimits, checkUnprivilegedClone, checkAppArmor, checkOwnUserNs].map((f) => f(ctx));
  const rest = [...[checkSubIds, checkIdMapHelpers].map((f) => f(ctx)), cgroup];
  return [...userns, await live, ...rest, await overlay, checkPivotRoot(ctx), checkProc(ctx)];
}

/** 0 when a rootless box can run here (no check failed), 1 otherwise. */
export function doctorExitCode(checks: Check[]): 0 | 1 {
  return checks.some((c) => c.status === "fail") ? 1 : 0;
}

/** The command that runs this program again: the compiled binary, or bun with the entry script. */
function selfCommand(): string[] {
  const script = process.argv[1] ?? "";
  // In a compiled executable argv[1] is the embedded entry ("/$bunfs/root/nsrun"), not a file on disk.
  return script.startsWith("/$bunfs/") || script === "" ? [process.execPath] : [process.execPath, script];
}

/** The user name for a uid from the view's /etc/passwd, else (on the real host) from getpwuid. */
function userName(view: HostView, uid: number): string | null {
  const name = passwdName(view.read("/etc/passwd") ?? "", uid);
  if (name) return name;
  try {
    return view.root === "" ? userInfo().username : null;
  } catch {
    return null;
  }
}
