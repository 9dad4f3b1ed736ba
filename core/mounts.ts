// Stage: the box's mounts. planMounts turns config into a list of operations (pure data);
// applyMounts walks the list and only calls Sys, like bubblewrap's setup-op list.
import * as F from "../ffi/flags";
import type { Sys } from "../ffi/sys";
import type { MountConfig } from "./config";
import { during } from "./errors";
import { openInRoot } from "./resolve";

export type MountOp =
  /** A new filesystem; `fallbackBind` is a host path bound read-only instead when the kernel says EPERM. */
  | { op: "mount"; fstype: string; source: string; target: string; flags: number; data: string | null; fallbackBind?: string; origin: string }
  /** A bind of a host path; `attrs` are MOUNT_ATTR_* applied afterwards with mount_setattr(2). */
  | { op: "bind"; source: string; target: string; recursive: boolean; attrs: number; file: boolean; origin: string }
  | { op: "mkdir"; target: string; origin: string }
  /** Hide a path: /dev/null over a file, an empty read-only tmpfs over a folder. Missing paths are skipped. */
  | { op: "mask"; target: string; origin: string }
  /** Bind a path onto itself, read-only. Missing paths are skipped. */
  | { op: "readonly"; target: string; origin: string }
  | { op: "symlink"; target: string; linkTo: string; origin: string };

/** Facts about the host that planning needs: each bind source's real path and whether it is a directory. */
export interface SourceFact {
  path: string;
  isDir: boolean;
}

export interface MountContext {
  /** gid 5 (tty) exists in the box's user namespace, so devpts may give its ptys that group. */
  ttyGroup: boolean;
  /** The box has its own PID namespace (proc shows only its processes) and network namespace (sysfs). */
  pidns: boolean;
  netns: boolean;
}

const NOSUID_NODEV_NOEXEC = F.MS_NOSUID | F.MS_NODEV | F.MS_NOEXEC;
const DEV_NODES = ["null", "zero", "full", "random", "urandom", "tty"];

/** /proc, /dev, /sys and /tmp, as podman and runc give them, unless the config mounts the same target. */
export function defaultMounts(ctx: MountContext): Map<string, MountOp[]> {
  const o = (target: string) => `default ${target}`;
  const dev: MountOp[] = [
    { op: "mount", fstype: "tmpfs", source: "tmpfs", target: "/dev", flags: F.MS_NOSUID | F.MS_STRICTATIME, data: "mode=755,size=65536k", origin: o("/dev") },
    ...DEV_NODES.map((n): MountOp => ({ op: "bind", source: `/dev/${n}`, target: `/dev/${n}`, recursive: false, attrs: 0, file: true, origin: o("/dev") })),
    { op: "mkdir", target: "/dev/pts", origin: o("/dev") },
    // A new devpts instance, so the box cannot see the host's terminals. gid=5 (tty) only where it is mapped.
    { op: "mount", fstype: "devpts", source: "devpts", target: "/dev/pts", flags: F.MS_NOSUID | F.MS_NOEXEC, data: `newinstance,ptmxmode=0666,mode=0620${ctx.ttyGroup ? ",gid=5" : ""}`, origin: o("/dev") },
    { op: "symlink", target: "/dev/ptmx", linkTo: "pts/ptmx", origin: o("/dev") },
    { op: "mkdir", target: "/dev/shm", origin: o("/dev") },
    { op: "mount", fstype: "tmpfs", source: "shm", target: "/dev/shm", flags: NOSUID_NODEV_NOEXEC, data: "mode=1777,size=65536k", origin: o("/dev") },
    { op: "symlink", target: "/dev/fd", linkTo: "/proc/self/fd", origin: o("/dev") },
    { op: "symlink", target: "/dev/stdin", linkTo: "/proc/self/fd/0", origin: o("/dev") },
    { op: "symlink", target: "/dev/stdout", linkTo: "/proc/self/fd/1", origin: o("/dev") },
    { op: "symlink", target: "/dev/stderr", linkTo: "/proc/self/fd/2", origin: o("/dev") },
  ];
  return new Map<string, MountOp[]>([
    // Without a PID namespace of its own, a rootless box may not mount proc: it gets the host's, read-only.
    ["/proc", [{ op: "mount", fstype: "proc", source: "proc", target: "/proc", flags: NOSUID_NODEV_NOEXEC, data: null, fallbackBind: ctx.pidns ? undefined : "/proc", origin: o("/proc") }]],
    ["/dev", dev],
    // sysfs may be mounted only by the owner of the network namespace; otherwise bind the host's, read-only.
    ["/sys", [{ op: "mount", fstype: "sysfs", source: "sysfs", target: "/sys", flags: NOSUID_NODEV_NOEXEC | F.MS_RDONLY, data: null, fallbackBind: "/sys", origin: o("/sys") }]],
    ["/tmp", [{ op: "mount", fstype: "tmpfs", source: "tmpfs", target: "/tmp", flags: F.MS_NOSUID | F.MS_NODEV, data: "mode=1777", origin: o("/tmp") }]],
  ]);
}

const FLAG_OPTIONS: Record<string, [set: number, clear: number]> = {
  ro: [F.MS_RDONLY, 0],
  rw: [0, F.MS_RDONLY],
  nosuid: [F.MS_NOSUID, 0],
  suid: [0, F.MS_NOSUID],
  nodev: [F.MS_NODEV, 0],
  dev: [0, F.MS_NODEV],
  noexec: [F.MS_NOEXEC, 0],
  exec: [0, F.MS_NOEXEC],
  noatime: [F.MS_NOATIME, 0],
  nodiratime: [F.MS_NODIRATIME, 0],
  relatime: [F.MS_RELATIME, 0],
  strictatime: [F.MS_STRICTATIME, 0],
  sync: [F.MS_SYNCHRONOUS, 0],
};

/** Where a bind mount's flags go: mount_setattr attributes, since MS_* flags are ignored on a bind. */
const BIND_ATTRS: Record<string, number> = {
  ro: F.MOUNT_ATTR_RDONLY,
  nosuid: F.MOUNT_ATTR_NOSUID,
  nodev: F.MOUNT_ATTR_NODEV,
  noexec: F.MOUNT_ATTR_NOEXEC,
};

const FS_DEFAULTS: Record<string, { source: string; flags: number; data: string | null }> = {
  tmpfs: { source: "tmpfs", flags: F.MS_NOSUID | F.MS_NODEV, data: null },
  proc: { source: "proc", flags: NOSUID_NODEV_NOEXEC, data: null },
  sysfs: { source: "sysfs", flags: NOSUID_NODEV_NOEXEC, data: null },
  devpts: { source: "devpts", flags: F.MS_NOSUID | F.MS_NOEXEC, data: "newinstance,ptmxmode=0666" },
  mqueue: { source: "mqueue", flags: NOSUID_NODEV_NOEXEC, data: null },
};

/** A config error found while planning, with the key it is about. */
export class MountPlanError extends Error {
  constructor(
    readonly key: string,
    problem: string,
  ) {
    super(problem);
  }
}

/** One configured [[mounts]] entry -> one operation. */
export function planMount(m: MountConfig, index: number, source: SourceFact | null): MountOp {
  const origin = `mounts[${index}]`;
  if (m.type === "bind") {
    if (!source) throw new MountPlanError(`${origin}.source`, "missing");
    let attrs = m.readonly ? F.MOUNT_ATTR_RDONLY : 0;
    let recursive = true;
    m.options.forEach((opt, j) => {
      if (opt === "rbind") recursive = true;
      else if (opt === "bind") recursive = false;
      else if (opt in BIND_ATTRS) attrs |= BIND_ATTRS[opt];
      else if (opt === "rw") attrs &= ~F.MOUNT_ATTR_RDONLY;
      else throw new MountPlanError(`${origin}.options[${j}]`, `"${opt}" is not an option for a bind mount (ro, rw, nosuid, nodev, noexec, bind, rbind)`);
    });
    return { op: "bind", source: source.path, target: m.target, recursive, attrs, file: !source.isDir, origin };
  }
  const d = FS_DEFAULTS[m.type];
  let flags = d.flags | (m.readonly ? F.MS_RDONLY : 0);
  const data: string[] = d.data ? [d.data] : [];
  for (const opt of m.options) {
    const flag = FLAG_OPTIONS[opt];
    if (flag) flags = (flags | flag[0]) & ~flag[1];
    else data.push(opt); // filesystem-specific (size=64m, mode=755); the kernel rejects what it does not know
  }
  return { op: "mount", fstype: m.type, source: d.source, target: m.target, flags, data: data.length ? data.join(",") : null, origin };
}

/** Defaults first (minus any target the config mounts itself), then the configured mounts in order. */
export function planMounts(mounts: MountConfig[], sources: (SourceFact | null)[], ctx: MountContext): MountOp[] {
  const configured = new Set(mounts.map((m) => m.target));
  const ops: MountOp[] = [];
  for (const [target, list] of defaultMounts(ctx)) if (!configured.has(target)) ops.push(...list);
  mounts.forEach((m, i) => ops.push(planMount(m, i, sources[i])));
  return ops;
}

/** How the applier reaches things: host paths under the old root, and an fd as a path. */
export interface MountEnv {
  /** Where the host's root is while the box is assembled, e.g. "/oldroot". */
  hostRoot: string;
  /** A path that names an open fd, e.g. "/oldroot/proc/self/fd/7". */
  fdPath(fd: number): string;
}

const EPERM = 1;

export function applyMounts(sys: Sys, rootfd: number, ops: MountOp[], env: MountEnv): void {
  for (const op of ops) {
    const what = describeOp(op);
    during("mounts", what, () => applyOne(sys, rootfd, op, env));
  }
}

function describeOp(op: MountOp): string {
  switch (op.op) {
    case "mount":
      return `${op.origin}: mount ${op.fstype} on ${JSON.stringify(op.target)}`;
    case "bind":
      return `${op.origin}: bind ${JSON.stringify(op.source)} on ${JSON.stringify(op.target)}`;
    case "mkdir":
      return `${op.origin}: mkdir ${JSON.stringify(op.target)}`;
    case "symlink":
      return `${op.origin}: symlink ${JSON.stringify(op.target)} -> ${JSON.stringify(op.linkTo)}`;
    case "mask":
      return `${op.origin}: mask ${JSON.stringify(op.target)}`;
    case "readonly":
      return `${op.origin}: make ${JSON.stringify(op.target)} read-only`;
  }
}

function applyOne(sys: Sys, rootfd: number, op: MountOp, env: MountEnv): void {
  switch (op.op) {
    case "mkdir":
      sys.close(openInRoot(sys, rootfd, op.target, "dir"));
      return;
    case "symlink":
      return symlinkInRoot(sys, rootfd, op.target, op.linkTo);
    case "mask":
      return maskInRoot(sys, rootfd, op.target, env);
    case "readonly": {
      const fd = openIfPresent(sys, rootfd, op.target);
      if (fd === null) return;
      sys.close(fd);
      return bindInRoot(sys, rootfd, null, op.target, true, F.MOUNT_ATTR_RDONLY, false, env);
    }
    case "bind":
      return bindInRoot(sys, rootfd, `${env.hostRoot}${op.source}`, op.target, op.recursive, op.attrs, op.file, env);
    case "mount": {
      const fd = openInRoot(sys, rootfd, op.target, "dir");
      try {
        sys.mount(op.source, env.fdPath(fd), op.fstype, op.flags, op.data);
      } catch (e) {
        const code = (e as { errno?: number }).errno;
        if (!op.fallbackBind || code !== EPERM) throw e;
        bindInRoot(sys, rootfd, `${env.hostRoot}${op.fallbackBind}`, op.target, true, F.MOUNT_ATTR_RDONLY | F.MOUNT_ATTR_NOSUID | F.MOUNT_ATTR_NODEV | F.MOUNT_ATTR_NOEXEC, false, env);
      } finally {
        sys.close(fd);
      }
      return;
    }
  }
}

/** Bind `source` (a host path, or null for the target itself) onto `target` inside the root. */
function bindInRoot(sys: Sys, rootfd: number, source: string | null, target: string, recursive: boolean, attrs: number, file: boolean, env: MountEnv): void {
  const fd = openInRoot(sys, rootfd, target, file ? "file" : "dir");
  try {
    sys.mount(source ?? env.fdPath(fd), env.fdPath(fd), null, F.MS_BIND | (recursive ? F.MS_REC : 0), null);
  } finally {
    sys.close(fd);
  }
  if (!attrs) return;
  // The fd above names what was under the mount; open the target again to reach the new mount itself.
  // mount_setattr only adds attributes, so flags the kernel locked on a host mount (nosuid, nodev) stay.
  const top = openInRoot(sys, rootfd, target, null);
  try {
    sys.mountSetattr(top, "", F.AT_EMPTY_PATH | (recursive ? F.AT_RECURSIVE : 0), attrs);
  } finally {
    sys.close(top);
  }
}

/** O_PATH fd of `target`, or null when it does not exist (masked and read-only paths are optional). */
function openIfPresent(sys: Sys, rootfd: number, target: string): number | null {
  try {
    return openInRoot(sys, rootfd, target, null);
  } catch (e) {
    if ((e as { errno?: number }).errno === ENOENT) return null;
    throw e;
  }
}

function maskInRoot(sys: Sys, rootfd: number, target: string, env: MountEnv): void {
  const fd = openIfPresent(sys, rootfd, target);
  if (fd === null) return;
  try {
    let isDir = true;
    try {
      sys.close(sys.openat2(rootfd, target, F.O_PATH | F.O_DIRECTORY, F.RESOLVE_IN_ROOT | F.RESOLVE_NO_MAGICLINKS));
    } catch (e) {
      if ((e as { errno?: number }).errno !== ENOTDIR) throw e;
      isDir = false;
    }
    if (isDir) sys.mount("tmpfs", env.fdPath(fd), "tmpfs", F.MS_RDONLY | F.MS_NOSUID | F.MS_NODEV | F.MS_NOEXEC, "size=0,mode=000");
    else sys.mount(`${env.hostRoot}/dev/null`, env.fdPath(fd), null, F.MS_BIND, null);
  } finally {
    sys.close(fd);
  }
}

const ENOENT = 2;
const ENOTDIR = 20;

function symlinkInRoot(sys: Sys, rootfd: number, target: string, linkTo: string): void {
  const slash = target.lastIndexOf("/");
  const parent = openInRoot(sys, rootfd, target.slice(0, slash) || "/", "dir");
  try {
    sys.symlinkat(linkTo, parent, target.slice(slash + 1));
  } catch (e) {
    if ((e as { errno?: number }).errno !== 17) throw e; // EEXIST: the rootfs has it already
  } finally {
    sys.close(parent);
  }
}

