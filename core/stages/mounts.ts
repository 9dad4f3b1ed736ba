// Stage: the box's mounts. planMounts turns config into a list of operations (pure data);
// emitMounts compiles the list into tape ops, each mount made with the new mount API (Linux 5.2):
// a filesystem is created detached (fsopen, fsconfig, fsmount) or a tree is copied detached
// (open_tree OPEN_TREE_CLONE), its attributes are set while nobody can see it yet, and only then is
// it attached onto an fd of the target that the kernel resolved inside the root (move_mount).
import { ERRNO } from "../../ffi/errno";
import * as F from "../../ffi/flags";
import type { MountConfig } from "./config";
import { components, type Lookup, openInRoot, resolveFlags } from "./resolve";
import { close, detachedTmpfs, fchmodat, fchownat, fsconfigCreate, fsconfigSet, fsmount, fsopen, mkdirat, mknodat, mount, moveMount, mountSetattr, openat2, openTree, symlinkat } from "../tape/calls";
import type { Reg, Tape } from "../tape/tape";
import type { IdRange } from "./userns";
import { NsrunError } from "../../ffi/error";

export type MountOp =
  /**
   * A new filesystem. `attrs` are MOUNT_ATTR_* for fsmount(2); `options` go to fsconfig(2) ("mode=755",
   * or a flag such as "newinstance"). `special`: proc, sysfs, devpts, mqueue and /dev are mounted only
   * on a real directory, reached without symlinks, and paths below them are resolved from the mount
   * itself. `fallbackBind`: when the kernel says EPERM, that host path is bound read-only instead.
   */
  | { op: "mount"; fstype: string; target: string; attrs: number; options: string[]; special: boolean; fallbackBind?: string; origin: string; propagation?: Propagation }
  /**
   * A copy of a host path's mount tree; `attrs` (MOUNT_ATTR_*) are set before it is attached.
   * `early`: copied before the namespace's mounts stop being peers of the host's (see
   * emitEarlyBinds), so that a shared source stays shared with the host.
   */
  | {
      op: "bind";
      source: string;
      target: string;
      recursive: boolean;
      attrs: number;
      file: boolean;
      origin: string;
      propagation?: Propagation;
      early?: boolean;
      /** OCI: the bind's files through these id maps (an id-mapped mount; core/oci/idmap.ts makes it). */
      idmap?: IdmapPlan;
      /** A detached copy nsrun made already (an fd the process inherits), attached instead of copying the source. */
      tree?: number;
    }
  /**
   * Hide a path: a read-only null device over a file, an empty read-only tmpfs over a folder. A
   * missing path is left alone. `ownNull`: the null device is the box's own /dev/null (one nsrun
   * made with mknod), not the host's, so that nothing done to the mask reaches a host inode.
   */
  | { op: "mask"; target: string; origin: string; ownNull?: boolean }
  /** A character device nsrun makes with mknod(2) in the box's own /dev (a tmpfs), mode as given. */
  | { op: "node"; target: string; major: number; minor: number; mode: number; origin: string }
  /** Bind a path onto itself, read-only. A missing path is left alone. */
  | { op: "readonly"; target: string; origin: string }
  | { op: "symlink"; target: string; linkTo: string; origin: string }
  /**
   * OCI linux.devices that the host lacks: a node made with mknodat(2) (root only) in a detached
   * tmpfs of its own, without nodev, and that file bound onto the target (see emitDevice).
   */
  | { op: "device"; target: string; type: "c" | "b" | "p"; major: number; minor: number; mode: number; uid: number; gid: number; origin: string }
  /**
   * OCI's `cgroup` mount on a cgroup v1 (or hybrid) host, laid out as runc lays it: a tmpfs at the
   * target, in it a folder per host hierarchy with that hierarchy mounted (or bound) on it, and links
   * for co-mounted controllers (cpu -> cpu,cpuacct). `attrs` (MOUNT_ATTR_*) are every mount's; with
   * MOUNT_ATTR_RDONLY the tmpfs is made read-only last, once its folders and links exist.
   */
  | { op: "cgroup1"; target: string; attrs: number; hierarchies: CgroupV1Dir[]; links: Array<{ name: string; linkTo: string }>; origin: string; propagation?: Propagation };

/** One v1 hierarchy below an OCI `cgroup` mount. */
export interface CgroupV1Dir {
  /** The folder's name in the tmpfs: the host's mount point's last component ("memory", "cpu,cpuacct"). */
  name: string;
  /**
   * With a cgroup namespace: the options of a fresh `cgroup` mount of this hierarchy ("memory",
   * "name=systemd"), whose root is the namespace's (the container's cgroup). Null: bind `source`.
   */
  options: string[] | null;
  /**
   * The container's own cgroup folder of this hierarchy on the host: bound (recursively) when there
   * is no cgroup namespace, or when the kernel refuses the fresh mount (EPERM, EBUSY: a user
   * namespace may only mount a hierarchy it could see), as runc falls back on cgroup v2.
   */
  source: string;
}

/**
 * Mount propagation (mount_namespaces(7)): MS_SHARED, MS_SLAVE, MS_PRIVATE or MS_UNBINDABLE, for the
 * mount alone or, `recursive`, for every mount of its tree. Set with mount_setattr(2) once the mount
 * is attached, so that it holds whatever attaching it below a shared mount did.
 */
export interface Propagation {
  type: number;
  recursive: boolean;
}

/** An id-mapped mount's maps ("containerID hostID size": an on-disk containerID shows as hostID). */
export interface IdmapPlan {
  uidMap: IdRange[];
  gidMap: IdRange[];
  /** ridmap: every mount of the bind's tree, not only its top. */
  recursive: boolean;
}

/** How the box's mount namespace relates to the host's (OCI rootfsPropagation and mount options). */
export interface PropagationPlan {
  /**
   * The namespace's copy of the host's mounts is made MS_REC|MS_SLAVE instead of MS_REC|MS_PRIVATE,
   * so that copies of them (the rootfs, binds) can still receive the host's mount events.
   */
  fromHost: boolean;
  /** The box's root mount (recursive: with the mounts the rootfs directory has below it). */
  root: Propagation | null;
}

/** The mount options that set propagation, as runc spells them. */
export const PROPAGATION_OPTIONS: Record<string, Propagation> = {
  shared: { type: F.MS_SHARED, recursive: false },
  rshared: { type: F.MS_SHARED, recursive: true },
  slave: { type: F.MS_SLAVE, recursive: false },
  rslave: { type: F.MS_SLAVE, recursive: true },
  private: { type: F.MS_PRIVATE, recursive: false },
  rprivate: { type: F.MS_PRIVATE, recursive: true },
  unbindable: { type: F.MS_UNBINDABLE, recursive: false },
  runbindable: { type: F.MS_UNBINDABLE, recursive: true },
};

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
  /**
   * The box may have device nodes of its own: root in the initial user namespace, the box without a
   * user namespace (runc's rule). Otherwise /dev's nodes are read-only binds of the host's.
   */
  ownDevices?: boolean;
}

const A = { RO: F.MOUNT_ATTR_RDONLY, NOSUID: F.MOUNT_ATTR_NOSUID, NODEV: F.MOUNT_ATTR_NODEV, NOEXEC: F.MOUNT_ATTR_NOEXEC };
const LOCKED_DOWN = A.NOSUID | A.NODEV | A.NOEXEC;
/** The devices every box gets (runc's and podman's list): name, major, minor; mode 0666 each. */
const DEV_NODES: Array<[name: string, major: number, minor: number]> = [["null", 1, 3], ["zero", 1, 5], ["full", 1, 7], ["random", 1, 8], ["urandom", 1, 9], ["tty", 5, 0]];
/**
 * A bind of a host device node is read-only: the device still reads and writes (a read-only mount
 * does not stop writes to a device), but chmod, chown and utimes of the host's inode fail (EROFS),
 * even in a user namespace whose map holds the inode's owner.
 */
export const HOST_DEVICE_ATTRS = A.RO | A.NOSUID | A.NOEXEC;
const SPECIAL_TYPES = new Set(["proc", "sysfs", "devpts", "mqueue"]);

function fs(fstype: string, target: string, attrs: number, options: string[], origin: string, fallbackBind?: string): MountOp {
  return { op: "mount", fstype, target, attrs, options, special: SPECIAL_TYPES.has(fstype) || target === "/dev", fallbackBind, origin };
}

/** /proc, /dev, /sys and /tmp, as podman and runc give them, unless the config mounts the same target. */
export function defaultMounts(ctx: MountContext): Map<string, MountOp[]> {
  const o = (target: string) => `default ${target}`;
  const dev: MountOp[] = [
    fs("tmpfs", "/dev", A.NOSUID | F.MOUNT_ATTR_STRICTATIME, ["mode=755", "size=65536k"], o("/dev")),
    // Device nodes of the box's own where it may (a root box keeps CAP_CHOWN and CAP_FOWNER: a bind of
    // the host's would let it chmod the host's /dev/null), else read-only binds of the host's, whose
    // inodes a user namespace's root cannot change. The box itself can never make one (nodev
    // everywhere else, no CAP_MKNOD).
    ...DEV_NODES.map(([n, major, minor]): MountOp =>
      ctx.ownDevices
        ? { op: "node", target: `/dev/${n}`, major, minor, mode: 0o666, origin: o("/dev") }
        : { op: "bind", source: `/dev/${n}`, target: `/dev/${n}`, recursive: false, attrs: HOST_DEVICE_ATTRS, file: true, origin: o("/dev") },
    ),
    // A new devpts instance, so the box cannot see the host's terminals. gid=5 (tty) only where it is mapped.
    fs("devpts", "/dev/pts", A.NOSUID | A.NOEXEC, ["newinstance", "ptmxmode=0666", "mode=0620", ...(ctx.ttyGroup ? ["gid=5"] : [])], o("/dev")),
    { op: "symlink", target: "/dev/ptmx", linkTo: "pts/ptmx", origin: o("/dev") },
    fs("tmpfs", "/dev/shm", LOCKED_DOWN, ["mode=1777", "size=65536k"], o("/dev")),
    { op: "symlink", target: "/dev/fd", linkTo: "/proc/self/fd", origin: o("/dev") },
    { op: "symlink", target: "/dev/stdin", linkTo: "/proc/self/fd/0", origin: o("/dev") },
    { op: "symlink", target: "/dev/stdout", linkTo: "/proc/self/fd/1", origin: o("/dev") },
    { op: "symlink", target: "/dev/stderr", linkTo: "/proc/self/fd/2", origin: o("/dev") },
  ];
  return new Map<string, MountOp[]>([
    // Without a PID namespace of its own, a rootless box may not mount proc: it gets the host's, read-only.
    ["/proc", [fs("proc", "/proc", LOCKED_DOWN, [], o("/proc"), ctx.pidns ? undefined : "/proc")]],
    ["/dev", dev],
    // sysfs may be mounted only by the owner of the network namespace; otherwise bind the host's, read-only.
    ["/sys", [fs("sysfs", "/sys", LOCKED_DOWN | A.RO, [], o("/sys"), "/sys")]],
    ["/tmp", [fs("tmpfs", "/tmp", A.NOSUID | A.NODEV, ["mode=1777"], o("/tmp"))]],
  ]);
}

/** Mount options that are mount attributes: [set, clear]. Everything else goes to the filesystem. */
const ATTR_OPTIONS: Record<string, [set: number, clear: number]> = {
  ro: [A.RO, 0],
  rw: [0, A.RO],
  nosuid: [A.NOSUID, 0],
  suid: [0, A.NOSUID],
  nodev: [A.NODEV, 0],
  dev: [0, A.NODEV],
  noexec: [A.NOEXEC, 0],
  exec: [0, A.NOEXEC],
  noatime: [F.MOUNT_ATTR_NOATIME, F.MOUNT_ATTR_STRICTATIME],
  nodiratime: [F.MOUNT_ATTR_NODIRATIME, 0],
  relatime: [0, F.MOUNT_ATTR_NOATIME | F.MOUNT_ATTR_STRICTATIME],
  strictatime: [F.MOUNT_ATTR_STRICTATIME, F.MOUNT_ATTR_NOATIME],
};

/** Options for a bind mount; nodev always (only nsrun's own /dev has devices). */
const BIND_ATTRS: Record<string, number> = { ro: A.RO, nosuid: A.NOSUID, nodev: A.NODEV, noexec: A.NOEXEC };

const FS_DEFAULTS: Record<string, { attrs: number; options: string[] }> = {
  tmpfs: { attrs: A.NOSUID | A.NODEV, options: [] },
  proc: { attrs: LOCKED_DOWN, options: [] },
  // Read-only unless the config says "rw": a writable sysfs changes the host's devices and settings.
  sysfs: { attrs: LOCKED_DOWN | A.RO, options: [] },
  devpts: { attrs: A.NOSUID | A.NOEXEC, options: ["newinstance", "ptmxmode=0666"] },
  mqueue: { attrs: LOCKED_DOWN, options: [] },
};

/** A config error found while planning, with the key it is about. */
export class MountPlanError extends NsrunError {
  constructor(
    readonly key: string,
    problem: string,
  ) {
    super(problem);
  }
}

/** One configured [[mounts]] entry -> one operation. */
export function planMount(m: MountConfig, index: number, source: SourceFact | null, ctx: MountContext): MountOp {
  const origin = `mounts[${index}]`;
  if (m.type === "bind") {
    if (!source) throw new MountPlanError(`${origin}.source`, "missing");
    let attrs = A.NODEV | (m.readonly ? A.RO : 0);
    let recursive = true;
    m.options.forEach((opt, j) => {
      if (opt === "rbind") recursive = true;
      else if (opt === "bind") recursive = false;
      else if (opt in BIND_ATTRS) attrs |= BIND_ATTRS[opt];
      else if (opt === "rw") attrs &= ~A.RO;
      else throw new MountPlanError(`${origin}.options[${j}]`, `"${opt}" is not an option for a bind mount (ro, rw, nosuid, nodev, noexec, bind, rbind)`);
    });
    return { op: "bind", source: source.path, target: m.target, recursive, attrs, file: !source.isDir, origin };
  }
  const d = FS_DEFAULTS[m.type];
  let attrs = d.attrs | (m.readonly ? A.RO : 0);
  const options = [...d.options];
  for (const opt of m.options) {
    const attr = ATTR_OPTIONS[opt];
    if (attr) attrs = (attrs | attr[0]) & ~attr[1];
    else options.push(opt); // filesystem-specific (size=64m, mode=755); the kernel rejects what it does not know
  }
  if (m.type === "sysfs" && !(attrs & A.RO) && !ctx.netns)
    throw new MountPlanError(`${origin}.options`, 'a read-write sysfs needs a network namespace of the box\'s own ([namespaces] net = true): it would change the host\'s settings');
  return fs(m.type, m.target, attrs, options, origin);
}

/** Defaults first (minus any target the config mounts itself), then the configured mounts in order. */
export function planMounts(mounts: MountConfig[], sources: (SourceFact | null)[], ctx: MountContext): MountOp[] {
  const configured = new Set(mounts.map((m) => m.target));
  const ops: MountOp[] = [];
  for (const [target, list] of defaultMounts(ctx)) if (!configured.has(target)) ops.push(...list);
  mounts.forEach((m, i) => ops.push(planMount(m, i, sources[i], ctx)));
  return ops;
}

// ---- compiling ---------------------------------------------------------------------------------

const q = JSON.stringify;

export function describeMount(op: MountOp): string {
  switch (op.op) {
    case "mount":
      return `${op.origin}: mount ${op.fstype} on ${q(op.target)}`;
    case "bind":
      return `${op.origin}: bind ${q(op.source)} on ${q(op.target)}`;
    case "symlink":
      return `${op.origin}: symlink ${q(op.target)} -> ${q(op.linkTo)}`;
    case "mask":
      return `${op.origin}: mask ${q(op.target)}`;
    case "node":
      return `${op.origin}: make the device ${q(op.target)} (${op.major}:${op.minor})`;
    case "readonly":
      return `${op.origin}: make ${q(op.target)} read-only`;
    case "device":
      return `${op.origin}: make the device ${q(op.target)} (${op.type} ${op.major}:${op.minor})`;
    case "cgroup1":
      return `${op.origin}: mount cgroup v1 (${op.hierarchies.map((h) => h.name).join(" ")}) on ${q(op.target)}`;
  }
}

/** The deepest of `mounts` that holds `path` (the first of equals), or undefined. */
function deepest<M extends { target: string }>(mounts: M[], path: string): M | undefined {
  let best: M | undefined;
  for (const m of mounts) if ((path === m.target || path.startsWith(`${m.target}/`)) && (!best || m.target.length > best.target.length)) best = m;
  return best;
}

/** The path an op resolves through Bases.lookup: its target, or a symlink's parent. */
function lookedUp(op: MountOp): string {
  if (op.op !== "symlink") return op.target;
  return `/${components(op.target).slice(0, -1).join("/")}`;
}

/**
 * For each special mount (by op index), the index of the last op that resolves a path below it:
 * its fd is kept until then and closed after, so a box may have any number of special mounts
 * without running out of registers. A special mount no later op needs maps to its own index.
 */
export function lastUses(ops: MountOp[]): Map<number, number> {
  const last = new Map<number, number>();
  const specials: Array<{ target: string; index: number }> = [];
  ops.forEach((op, i) => {
    const base = deepest(specials, lookedUp(op));
    if (base) last.set(base.index, i);
    if (op.op === "mount" && op.special) {
      specials.push({ target: op.target, index: i });
      last.set(i, i);
    }
  });
  return last;
}

/** Where paths below a special mount are resolved from: the mount nsrun made there, not the rootfs. */
class Bases {
  private readonly mounts: Array<{ target: string; reg: Reg; index: number }> = [];
  constructor(private readonly root: Reg) {}

  keep(target: string, reg: Reg, index: number): void {
    this.mounts.push({ target, reg, index });
  }

  /** The lookup for `path`: below the deepest special mount that holds it, else in the root. */
  lookup(path: string, noSymlinks: boolean): { lookup: Lookup; rel: string } {
    const best = deepest(this.mounts, path);
    if (!best) return { lookup: { base: this.root, noSymlinks }, rel: path };
    return { lookup: { base: best.reg, beneath: true, noSymlinks: true }, rel: path.slice(best.target.length) || "/" };
  }

  /** The kept mounts that `done` says no later op needs, taken out. */
  release(done: (index: number) => boolean): Reg[] {
    const gone = this.mounts.filter((m) => done(m.index));
    for (const m of gone) this.mounts.splice(this.mounts.indexOf(m), 1);
    return gone.map((m) => m.reg);
  }
}

const HINTS = {
  special: {
    ELOOP: "nsrun mounts proc, sysfs, devpts, mqueue and /dev only on a real directory, and this path in the rootfs is a symbolic link",
    ENOTDIR: "nsrun mounts proc, sysfs, devpts, mqueue and /dev only on a real directory, and this path in the rootfs is not one",
  },
};

/**
 * Tape: every mount op, in order. `root` is the box's root mount; `early`, binds emitEarlyBinds
 * copied. With `readonlyRoot` (OCI's root.readonly) the root (and the host's mounts below the
 * rootfs) becomes read-only here, once the targets the mounts need in it exist: a target the rootfs
 * lacks is made first, as runc does, since it could not be made in a read-only root (EROFS).
 */
export function emitMounts(t: Tape, root: Reg, ops: MountOp[], early: Map<MountOp, Reg> = new Map(), readonlyRoot = false): void {
  if (readonlyRoot) emitReadonlyRoot(t, root, ops);
  const bases = new Bases(root);
  const last = lastUses(ops);
  ops.forEach((op, i) => {
    t.doing(describeMount(op), op.op === "mount" && op.special ? HINTS.special : undefined);
    switch (op.op) {
      case "mount":
        emitFilesystem(t, bases, op, i);
        break;
      case "bind":
        emitBind(t, bases, op, early.get(op));
        break;
      case "symlink":
        emitSymlink(t, bases, op);
        break;
      case "mask":
        emitMask(t, bases, op, i);
        break;
      case "node":
        emitNode(t, bases, op);
        break;
      case "device":
        emitDevice(t, bases, op);
        break;
      case "readonly":
        emitReadonly(t, bases, op, i);
        break;
      case "cgroup1":
        emitCgroupV1(t, bases, op, i);
        break;
    }
    // A special mount's fd, once the last op that resolves below it is done.
    for (const reg of bases.release((kept) => last.get(kept) === i)) close(t, reg);
  });
  for (const reg of bases.release(() => true)) close(t, reg);
}

/**
 * The targets that lie in the rootfs itself (not below another mount of the box, which is attached
 * later and stays writable) are made, each resolved in the root as its mount will be, then the root
 * tree is made read-only, recursively: nodev was set on it already.
 */
function emitReadonlyRoot(t: Tape, root: Reg, ops: MountOp[]): void {
  const bases = new Bases(root);
  const mounted: string[] = [];
  const inRootfs = (target: string) => !mounted.some((m) => target === m || target.startsWith(`${m}/`));
  for (const op of ops) {
    if (op.op !== "mount" && op.op !== "bind" && op.op !== "symlink" && op.op !== "device" && op.op !== "cgroup1") continue;
    if (inRootfs(op.target)) {
      t.doing(`${describeMount(op)}: make its target before the root is read-only`, op.op === "mount" && op.special ? HINTS.special : undefined);
      if (op.op === "symlink") emitSymlink(t, bases, op);
      else {
        const target = t.reg("target");
        const { lookup, rel } = bases.lookup(op.target, op.op === "mount" && op.special);
        openInRoot(t, lookup, rel, (op.op === "bind" && op.file) || op.op === "device" ? "file" : "dir", target);
        close(t, target);
      }
    }
    if (op.op !== "symlink") mounted.push(op.target);
  }
  t.doing("make the root read-only");
  mountSetattr(t, root, true, A.RO);
}

function emitFilesystem(t: Tape, bases: Bases, op: Extract<MountOp, { op: "mount" }>, i: number): void {
  const ctx = t.reg("ctx");
  const mnt = op.special ? t.reg(`mnt${i}`) : t.reg("mnt");
  const target = t.reg("target");
  // The kernel may refuse this filesystem here (proc without a PID namespace of the box's own, sysfs
  // without its network namespace), at any of the three calls that make it: then the host's,
  // read-only, instead.
  const eperm = op.fallbackBind ? { ok: [ERRNO.EPERM] } : {};
  const refused = t.label(`refused${i}`);
  const refusedWithCtx = t.label(`refused${i}_ctx`);
  fsopen(t, op.fstype, ctx, eperm);
  if (op.fallbackBind) t.jumpIf(ctx, "LT", 0, refused);
  // What /proc/mounts shows as the source (mount(2) took it as an argument; "none" otherwise).
  fsconfigSet(t, ctx, "source", op.fstype === "tmpfs" && op.target === "/dev/shm" ? "shm" : op.fstype);
  for (const opt of op.options) {
    const eq = opt.indexOf("=");
    fsconfigSet(t, ctx, eq === -1 ? opt : opt.slice(0, eq), eq === -1 ? null : opt.slice(eq + 1));
  }
  const created = t.reg("created");
  fsconfigCreate(t, ctx, { dst: created, ...eperm });
  if (op.fallbackBind) t.jumpIf(created, "LT", 0, refusedWithCtx);
  fsmount(t, ctx, op.attrs, { dst: mnt, ...eperm });
  close(t, ctx);
  if (op.fallbackBind) {
    const attach = t.label(`attach${i}`);
    t.jumpIf(mnt, "GE", 0, attach);
    t.jump(refused);
    t.place(refusedWithCtx);
    close(t, ctx);
    t.place(refused);
    openTree(t, F.AT_FDCWD, op.fallbackBind, F.OPEN_TREE_CLONE | F.OPEN_TREE_CLOEXEC | F.AT_RECURSIVE, { dst: mnt });
    mountSetattr(t, mnt, true, A.RO | LOCKED_DOWN);
    t.place(attach);
  }
  const { lookup, rel } = bases.lookup(op.target, op.special);
  openInRoot(t, lookup, rel, "dir", target);
  moveMount(t, mnt, target);
  close(t, target);
  if (op.propagation) emitPropagation(t, mnt, op.propagation);
  if (op.special) bases.keep(op.target, mnt, i);
  else close(t, mnt);
}

/**
 * The cgroup v1 layout (see MountOp "cgroup1"). The tmpfs is made detached, and its folders and links
 * are made in it through its fd before it is attached: nothing of the rootfs is named on the way.
 * Each hierarchy is then attached onto its folder, reached from the tmpfs's fd (RESOLVE_BENEATH, no
 * symlinks). A fresh `cgroup` mount the kernel refuses (EPERM, EBUSY) becomes a bind of the
 * container's own cgroup folder; any other failure stops the container.
 */
function emitCgroupV1(t: Tape, bases: Bases, op: Extract<MountOp, { op: "cgroup1" }>, i: number): void {
  const ctx = t.reg("ctx");
  const fsm = t.reg("cgroupfs");
  const target = t.reg("target");
  fsopen(t, "tmpfs", ctx);
  fsconfigSet(t, ctx, "source", "tmpfs");
  fsconfigSet(t, ctx, "mode", "755");
  fsconfigCreate(t, ctx);
  fsmount(t, ctx, op.attrs & ~A.RO, { dst: fsm });
  close(t, ctx);
  for (const h of op.hierarchies) mkdirat(t, fsm, h.name, 0o755);
  for (const l of op.links) symlinkat(t, l.linkTo, fsm, l.name);
  const { lookup, rel } = bases.lookup(op.target, false);
  openInRoot(t, lookup, rel, "dir", target);
  moveMount(t, fsm, target);
  close(t, target);
  op.hierarchies.forEach((h, k) => {
    const dir = t.reg("dir");
    const mnt = t.reg("mnt");
    openat2(t, fsm, h.name, F.O_PATH | F.O_DIRECTORY, F.RESOLVE_BENEATH | F.RESOLVE_NO_SYMLINKS | F.RESOLVE_NO_MAGICLINKS, { dst: dir });
    const bind = t.label(`cgroup${i}_${k}_bind`);
    const attach = t.label(`cgroup${i}_${k}_attach`);
    if (h.options) {
      const refused = { ok: [ERRNO.EPERM, ERRNO.EBUSY] };
      const refusedWithCtx = t.label(`cgroup${i}_${k}_refused`);
      fsopen(t, "cgroup", ctx, refused);
      t.jumpIf(ctx, "LT", 0, bind);
      fsconfigSet(t, ctx, "source", "cgroup");
      for (const opt of h.options) {
        const eq = opt.indexOf("=");
        fsconfigSet(t, ctx, eq === -1 ? opt : opt.slice(0, eq), eq === -1 ? null : opt.slice(eq + 1));
      }
      const created = t.reg("created");
      fsconfigCreate(t, ctx, { dst: created, ...refused });
      t.jumpIf(created, "LT", 0, refusedWithCtx);
      fsmount(t, ctx, op.attrs, { dst: mnt, ...refused });
      close(t, ctx);
      t.jumpIf(mnt, "GE", 0, attach);
      t.jump(bind);
      t.place(refusedWithCtx);
      close(t, ctx);
    }
    t.place(bind);
    const src = t.reg("src");
    // Opened once, by the path planning read from the host's mount table, no symlinks on the way.
    openat2(t, F.AT_FDCWD, h.source, F.O_PATH | F.O_DIRECTORY, F.RESOLVE_NO_SYMLINKS | F.RESOLVE_NO_MAGICLINKS, { dst: src });
    openTree(t, src, "", F.OPEN_TREE_CLONE | F.OPEN_TREE_CLOEXEC | F.AT_EMPTY_PATH | F.AT_RECURSIVE, { dst: mnt });
    close(t, src);
    mountSetattr(t, mnt, true, op.attrs);
    t.place(attach);
    moveMount(t, mnt, dir);
    close(t, mnt);
    close(t, dir);
  });
  if (op.attrs & A.RO) {
    t.doing(`${op.origin}: make the tmpfs on ${q(op.target)} read-only`);
    mountSetattr(t, fsm, false, A.RO);
  }
  if (op.propagation) emitPropagation(t, fsm, op.propagation);
  close(t, fsm);
}

function emitBind(t: Tape, bases: Bases, op: Extract<MountOp, { op: "bind" }>, early?: Reg): void {
  const tree = t.reg("tree");
  const target = t.reg("target");
  if (op.tree !== undefined) {
    // Made by nsrun with its attributes already (an id-mapped bind): its fd into the register.
    t.load(t.struct(8, String(op.tree), [[0, 8, op.tree]]), 8, tree);
  } else {
    if (early) cloneEarly(t, op, early, tree);
    else copyTree(t, op, tree);
    if (op.attrs) mountSetattr(t, tree, op.recursive, op.attrs);
  }
  const { lookup, rel } = bases.lookup(op.target, false);
  openInRoot(t, lookup, rel, op.file ? "file" : "dir", target);
  moveMount(t, tree, target);
  if (op.propagation) emitPropagation(t, tree, op.propagation);
  close(t, tree);
  close(t, target);
}

/**
 * An early copy (emitEarlyBinds) is attached as a clone of itself made now, a peer like it: Linux
 * lists a namespace's mounts in the order they were made (/proc/self/mountinfo), and the clone
 * keeps the config's order there, which runc keeps and runtime-tools checks. A kernel that cannot
 * clone a detached tree (EINVAL: older kernels refuse it) gets the early copy itself, listed first.
 */
function cloneEarly(t: Tape, op: Extract<MountOp, { op: "bind" }>, early: Reg, tree: Reg): void {
  const n = t.ops.length;
  const cloned = t.label(`early_cloned_${n}`);
  const ready = t.label(`early_ready_${n}`);
  openTree(t, early, "", F.OPEN_TREE_CLONE | F.OPEN_TREE_CLOEXEC | F.AT_EMPTY_PATH | (op.recursive ? F.AT_RECURSIVE : 0), { dst: tree, ok: [ERRNO.EINVAL] });
  t.jumpIf(tree, "GE", 0, cloned);
  const slot = t.slot(8, "early");
  t.store(early, slot, 8);
  t.load(slot, 8, tree);
  t.jump(ready);
  t.place(cloned);
  close(t, early);
  t.place(ready);
}

/** A detached copy of a bind's source tree into `tree`. */
function copyTree(t: Tape, op: Extract<MountOp, { op: "bind" }>, tree: Reg): void {
  const src = t.reg("src");
  // The source is opened once, by the path planning found (symlinks already resolved there), and
  // refused if a symlink appears on the way since: a bind can never be swapped for another tree.
  openat2(t, F.AT_FDCWD, op.source, F.O_PATH, F.RESOLVE_NO_SYMLINKS | F.RESOLVE_NO_MAGICLINKS, { dst: src });
  openTree(t, src, "", F.OPEN_TREE_CLONE | F.OPEN_TREE_CLOEXEC | F.AT_EMPTY_PATH | (op.recursive ? F.AT_RECURSIVE : 0), { dst: tree });
  close(t, src);
}

/**
 * Tape: the binds marked `early`, copied while the new mount namespace's mounts are still what
 * clone3 made them: for a shared host mount, a peer of it (root without a user namespace; a less
 * privileged namespace gets slaves, mount_namespaces(7)). A copy made then stays in that peer group,
 * so mounts below the bind propagate both ways (rshared). Held in registers until emitMounts.
 */
export function emitEarlyBinds(t: Tape, ops: MountOp[]): Map<MountOp, Reg> {
  const early = new Map<MountOp, Reg>();
  ops.forEach((op, i) => {
    if (op.op !== "bind" || !op.early || op.tree !== undefined) return;
    t.doing(`${describeMount(op)}: copy the source while it is a peer of the host's mount`);
    const tree = t.reg(`early${i}`);
    copyTree(t, op, tree);
    early.set(op, tree);
  });
  return early;
}

/**
 * Tape: the mount namespace's copy of the host's mounts becomes slaves of them, instead of private
 * (emitPrivateRoot): mounts the host makes later still reach copies of them, and nothing the box
 * mounts reaches the host. pivot_root(2) accepts slaves, as it does private mounts.
 */
export function emitSlaveRoot(t: Tape): void {
  t.doing('make "/" a slave of the host\'s mounts');
  mount(t, null, "/", null, F.MS_REC | F.MS_SLAVE, null);
}

/** Tape: set the propagation of the (attached) mount `fd` is open on. */
export function emitPropagation(t: Tape, fd: Reg, p: Propagation): void {
  mountSetattr(t, fd, p.recursive, 0, { propagation: p.type });
}

function emitNode(t: Tape, bases: Bases, op: Extract<MountOp, { op: "node" }>): void {
  const parts = components(op.target);
  const parent = t.reg("parent");
  const { lookup, rel } = bases.lookup(`/${parts.slice(0, -1).join("/")}`, true);
  openInRoot(t, lookup, rel, "dir", parent);
  const name = parts[parts.length - 1];
  mknodat(t, parent, name, F.S_IFCHR | op.mode, op.major, op.minor);
  // mknod(2) applies the umask; the node is nsrun's own, just made in a tmpfs nobody else sees yet.
  fchmodat(t, parent, name, op.mode);
  close(t, parent);
}

/**
 * A device node the host lacks (OCI linux.devices, root only): every mount of the box is nodev, so
 * the node is made in a small detached tmpfs of its own that is not, with the mode, owner and group
 * the config gives (fchmodat: the umask does not apply), and only that file is bound onto the
 * target: the tmpfs is never attached, so nothing else can be made there.
 */
function emitDevice(t: Tape, bases: Bases, op: Extract<MountOp, { op: "device" }>): void {
  const ctx = t.reg("ctx");
  const fsm = t.reg("devfs");
  const tree = t.reg("tree");
  const target = t.reg("target");
  detachedTmpfs(t, ctx, "0755", A.NOSUID | A.NOEXEC, fsm);
  const type = op.type === "c" ? F.S_IFCHR : op.type === "b" ? F.S_IFBLK : F.S_IFIFO;
  mknodat(t, fsm, "node", type | (op.mode & 0o777), op.major, op.minor);
  fchmodat(t, fsm, "node", op.mode & 0o7777);
  fchownat(t, fsm, "node", op.uid, op.gid, 0);
  openTree(t, fsm, "node", F.OPEN_TREE_CLONE | F.OPEN_TREE_CLOEXEC, { dst: tree });
  close(t, fsm);
  const { lookup, rel } = bases.lookup(op.target, false);
  openInRoot(t, lookup, rel, "file", target);
  moveMount(t, tree, target);
  close(t, tree);
  close(t, target);
}

function emitSymlink(t: Tape, bases: Bases, op: Extract<MountOp, { op: "symlink" }>): void {
  const parts = components(op.target);
  const parentPath = `/${parts.slice(0, -1).join("/")}`;
  const parent = t.reg("parent");
  const { lookup, rel } = bases.lookup(parentPath, false);
  openInRoot(t, lookup, rel, "dir", parent);
  // EEXIST: the rootfs has one already, and it is left as it is.
  symlinkat(t, op.linkTo, parent, parts[parts.length - 1], { ok: [ERRNO.EEXIST] });
  close(t, parent);
}

/**
 * How masked and read-only paths are found: below the special mount that holds them (the box's own
 * procfs or sysfs, never wherever a rootfs's symlinks would lead), else in the root.
 */
function existing(bases: Bases, target: string): { lookup: Lookup; path: string; resolve: number } {
  const { lookup, rel } = bases.lookup(target, false);
  return { lookup, path: lookup.beneath ? components(rel).join("/") || "." : rel, resolve: resolveFlags(lookup) };
}

function emitMask(t: Tape, bases: Bases, op: Extract<MountOp, { op: "mask" }>, i: number): void {
  const target = t.reg("target");
  const probe = t.reg("probe");
  const cover = t.reg("cover");
  const ctx = t.reg("ctx");
  const absent = t.label(`absent${i}`);
  const file = t.label(`file${i}`);
  const attach = t.label(`attach${i}`);
  const { lookup, path, resolve } = existing(bases, op.target);
  // Only ENOENT may skip a mask: the path does not exist, so there is nothing to hide. Any other
  // failure stops the box (a protection is never silently dropped).
  openat2(t, lookup.base, path, F.O_PATH, resolve, { dst: target, ok: [ERRNO.ENOENT] });
  t.jumpIf(target, "LT", 0, absent);
  openat2(t, lookup.base, path, F.O_PATH | F.O_DIRECTORY, resolve, { dst: probe, ok: [ERRNO.ENOTDIR] });
  t.jumpIf(probe, "LT", 0, file);
  close(t, probe);
  fsopen(t, "tmpfs", ctx);
  fsconfigSet(t, ctx, "mode", "000");
  fsconfigCreate(t, ctx);
  fsmount(t, ctx, A.RO | LOCKED_DOWN, { dst: cover });
  close(t, ctx);
  t.jump(attach);
  t.place(file);
  if (op.ownNull) {
    // The box's own null device, found below the /dev nsrun mounted (no symlinks).
    const own = existing(bases, "/dev/null");
    const node = t.reg("node");
    openat2(t, own.lookup.base, own.path, F.O_PATH, own.resolve | F.RESOLVE_NO_SYMLINKS, { dst: node });
    openTree(t, node, "", F.OPEN_TREE_CLONE | F.OPEN_TREE_CLOEXEC | F.AT_EMPTY_PATH, { dst: cover });
    close(t, node);
  } else {
    openTree(t, F.AT_FDCWD, "/dev/null", F.OPEN_TREE_CLONE | F.OPEN_TREE_CLOEXEC, { dst: cover });
  }
  // Read-only: chmod, chown and utimes of the mask fail (EROFS), whatever capabilities the box keeps.
  mountSetattr(t, cover, false, HOST_DEVICE_ATTRS);
  t.place(attach);
  moveMount(t, cover, target);
  close(t, cover);
  close(t, target);
  t.place(absent);
}

function emitReadonly(t: Tape, bases: Bases, op: Extract<MountOp, { op: "readonly" }>, i: number): void {
  const target = t.reg("target");
  const tree = t.reg("tree");
  const absent = t.label(`absent${i}`);
  const { lookup, path, resolve } = existing(bases, op.target);
  openat2(t, lookup.base, path, F.O_PATH, resolve, { dst: target, ok: [ERRNO.ENOENT] });
  t.jumpIf(target, "LT", 0, absent);
  openTree(t, target, "", F.OPEN_TREE_CLONE | F.OPEN_TREE_CLOEXEC | F.AT_EMPTY_PATH | F.AT_RECURSIVE, { dst: tree });
  mountSetattr(t, tree, true, A.RO | A.NOSUID | A.NODEV);
  moveMount(t, tree, target);
  close(t, tree);
  close(t, target);
  t.place(absent);
}
