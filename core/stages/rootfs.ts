// Stages: make `/` private, then put the box's root together as a mount of its own.
//
// The rootfs directory is opened once, by the path planning found (with symlinks resolved), and a
// symlink appearing on the way since is refused (RESOLVE_NO_SYMLINKS): another user who can write a
// parent folder cannot swap it for the host's `/` between the check and the mount. From that fd:
//   plain:      open_tree(OPEN_TREE_CLONE|AT_RECURSIVE) copies its mount tree, detached;
//   ephemeral:  an overlay whose upper and work dirs live in a detached tmpfs, so they vanish with it;
//   layer:      an overlay whose upper and work dirs are DIR/upper and DIR/work, kept after the box;
// then mount attributes are set while the tree is still detached (nodev always, read-only when asked),
// and move_mount attaches it on top of the rootfs directory itself: a mount point to pivot into.
import { ERRNO } from "../../ffi/errno";
import * as F from "../../ffi/flags";
import { close, detachedTmpfs, fsconfigCreate, fsconfigSet, fsmount, fsopen, mkdirat, mount, moveMount, mountSetattr, openat2, openTree, umount2 } from "../tape/calls";
import type { Ptr, Reg, Tape } from "../tape/tape";

export interface RootfsPlan {
  /** Absolute, symlink-free host path of the rootfs directory. */
  hostPath: string;
  readonly: boolean;
  /**
   * OCI (runc's order): with `readonly`, the mounts' targets the rootfs lacks are made first and the
   * root becomes read-only after (emitMounts). A box's read-only root is read-only from the start:
   * nsrun writes nothing into it, and a missing target is an error (EROFS).
   */
  targetsFirst?: boolean;
  /** OCI: set up (and pivoted into) inside a mount namespace joined by path, as runc does; else a joined one is used as it is. */
  inJoinedNamespace?: boolean;
  ephemeral: boolean;
  /** Absolute, symlink-free host path of a folder that keeps the box's writable layer (config key `layer`): implies an overlay. */
  layer?: string;
  /** The box has a user namespace: overlayfs keeps its metadata in user.* xattrs (userxattr). */
  userns: boolean;
}

/** Characters overlayfs would read as separators in a lowerdir= path. */
export function overlayUnsafe(path: string): boolean {
  return /[,:\\]/.test(path);
}

/** Tape: make every mount in the box's copy of the host's tree private. */
export function emitPrivateRoot(t: Tape): void {
  // The box's mount namespace starts as a copy of the host's, with the same propagation: while `/` is
  // shared, a mount below would appear on the host too, and pivot_root refuses with EINVAL.
  t.doing('make "/" private');
  mount(t, null, "/", null, F.MS_REC | F.MS_PRIVATE, null);
}

const EPHEMERAL_HINTS = {
  EINVAL: "overlayfs refused this rootfs as a lower layer (it may itself be an overlay, or have mounts below it): use a plain directory, or ephemeral = false",
  EPERM: "overlayfs refused this rootfs as a lower layer (it may itself be an overlay, or have mounts below it): use a plain directory, or ephemeral = false",
};

/** Tape: the box's root, attached on top of the rootfs directory; its fd ends up in `root`. */
export function emitRootfs(t: Tape, plan: RootfsPlan, root: Reg): void {
  const dir = t.reg("rootfs_dir");
  t.doing(`open the rootfs ${JSON.stringify(plan.hostPath)}`, {
    ELOOP: "a symbolic link appeared in the rootfs's path after nsrun checked it; nsrun refuses to follow it",
  });
  openat2(t, F.AT_FDCWD, plan.hostPath, F.O_PATH | F.O_DIRECTORY, F.RESOLVE_NO_SYMLINKS | F.RESOLVE_NO_MAGICLINKS, { dst: dir });
  // nodev: a device node shipped in the rootfs opens nothing; the box's devices are nsrun's own /dev.
  // With targetsFirst, read-only comes later (emitMounts), once the mounts' targets exist in the root.
  const attrs = F.MOUNT_ATTR_NODEV | (plan.readonly && !plan.targetsFirst ? F.MOUNT_ATTR_RDONLY : 0);
  if (plan.ephemeral || plan.layer !== undefined) {
    const ctx = t.reg("ctx");
    const scratch = t.reg("scratch");
    let upper: Ptr;
    let work: Ptr;
    if (plan.layer !== undefined) {
      // The layer's folder is opened like the rootfs, and upper/ and work/ below it without any
      // symlink: the overlay then gets them by fd (/proc/self/fd/N), never by a path to re-resolve.
      t.doing(`open the box's layer ${JSON.stringify(plan.layer)} (layer)`, { ELOOP: "a symbolic link appeared in the layer's path, or upper/ or work/ in it is one; nsrun refuses to follow it" });
      openat2(t, F.AT_FDCWD, plan.layer, F.O_PATH | F.O_DIRECTORY, F.RESOLVE_NO_SYMLINKS | F.RESOLVE_NO_MAGICLINKS, { dst: scratch });
      const upperFd = t.reg("layer_upper");
      const workFd = t.reg("layer_work");
      mkdirat(t, scratch, "upper", 0o755, { ok: [ERRNO.EEXIST] });
      mkdirat(t, scratch, "work", 0o700, { ok: [ERRNO.EEXIST] });
      openat2(t, scratch, "upper", F.O_PATH | F.O_DIRECTORY, F.RESOLVE_BENEATH | F.RESOLVE_NO_SYMLINKS, { dst: upperFd });
      openat2(t, scratch, "work", F.O_PATH | F.O_DIRECTORY, F.RESOLVE_BENEATH | F.RESOLVE_NO_SYMLINKS, { dst: workFd });
      close(t, scratch);
      const lower = t.fdpath(dir, "");
      upper = t.fdpath(upperFd, "");
      work = t.fdpath(workFd, "");
      t.doing(`mount an overlay on ${JSON.stringify(plan.hostPath)} (layer ${JSON.stringify(plan.layer)})`, EPHEMERAL_HINTS);
      mountOverlay(t, plan, lower, upper, work, ctx, attrs, root);
      close(t, upperFd);
      close(t, workFd);
    } else {
      t.doing(`mount an overlay on ${JSON.stringify(plan.hostPath)} (ephemeral)`, EPHEMERAL_HINTS);
      const anchor = t.reg("anchor");
      detachedTmpfs(t, ctx, "0700", F.MOUNT_ATTR_NOSUID | F.MOUNT_ATTR_NODEV, scratch);
      // Before Linux 6.15 or so overlayfs takes its upper layer only from a mount attached in the
      // caller's namespace ("failed to clone upperpath"): attach the scratch tmpfs for the moment, on
      // the host's /dev of this private copy of the mount tree, and detach it once the overlay holds it.
      openat2(t, F.AT_FDCWD, "/dev", F.O_PATH | F.O_DIRECTORY, F.RESOLVE_NO_SYMLINKS | F.RESOLVE_NO_MAGICLINKS, { dst: anchor });
      moveMount(t, scratch, anchor);
      close(t, anchor);
      mkdirat(t, scratch, "upper", 0o755);
      mkdirat(t, scratch, "work", 0o700);
      const lower = t.fdpath(dir, "");
      upper = t.fdpath(scratch, "/upper");
      work = t.fdpath(scratch, "/work");
      mountOverlay(t, plan, lower, upper, work, ctx, attrs, root);
      umount2(t, t.fdpath(scratch, ""), F.MNT_DETACH); // the overlay keeps its upper layer alive
      close(t, scratch);
    }
  } else {
    t.doing(`bind ${JSON.stringify(plan.hostPath)} as the box's root`);
    openTree(t, dir, "", F.OPEN_TREE_CLONE | F.OPEN_TREE_CLOEXEC | F.AT_EMPTY_PATH | F.AT_RECURSIVE, { dst: root });
    // Recursive, so host mounts below the rootfs are read-only too; the box's own /proc, /dev, /tmp
    // are attached afterwards and stay writable.
    mountSetattr(t, root, true, attrs);
  }
  t.doing(`attach the box's root on ${JSON.stringify(plan.hostPath)}`);
  moveMount(t, root, dir);
  close(t, dir);
}

/** Tape: the overlay of `lower` (the rootfs fd's path) under `upper` and `work` (paths through /proc/self/fd), detached, its fd in `root`. */
function mountOverlay(t: Tape, plan: RootfsPlan, lower: Ptr, upper: Ptr, work: Ptr, ctx: Reg, attrs: number, root: Reg): void {
  // overlayfs takes only paths: the fds named through /proc/self/fd (no commas, no colons).
  fsopen(t, "overlay", ctx);
  fsconfigSet(t, ctx, "lowerdir", lower);
  fsconfigSet(t, ctx, "upperdir", upper);
  fsconfigSet(t, ctx, "workdir", work);
  // In a user namespace overlayfs may not use trusted.* xattrs; user.* instead.
  if (plan.userns) fsconfigSet(t, ctx, "userxattr", null);
  fsconfigCreate(t, ctx);
  fsmount(t, ctx, attrs, { dst: root });
  close(t, ctx);
}
