// Stage: make `/` private and assemble the box's root at /newroot, inside a scratch tmpfs.
//
// The layout follows bubblewrap: a tmpfs is mounted (in our private mount namespace only) and
// pivot_root(2) moves us into it, so the host's root is reachable at /oldroot while the box's root
// is put together at /newroot. nsrun's own mount points live in the scratch tmpfs, and an ephemeral
// box's overlay upper and work dirs too, so they vanish with the namespace. (A mount target missing
// from a writable, non-ephemeral rootfs is created in that directory, as bubblewrap does.)
import * as F from "../ffi/flags";
import type { Sys } from "../ffi/sys";
import { during } from "./errors";

/** Where the scratch tmpfs is mounted before we pivot into it. Any directory would do; /tmp exists everywhere. */
export const SCRATCH_MOUNTPOINT = "/tmp";
export const OLDROOT = "/oldroot";
export const NEWROOT = "/newroot";
const UPPER = "/upper";
const EPERM = 1;
const EINVAL = 22;
const WORK = "/work";

export interface RootfsPlan {
  /** Absolute, symlink-free host path of the rootfs directory. */
  hostPath: string;
  readonly: boolean;
  ephemeral: boolean;
}

/** Characters overlayfs would read as separators in lowerdir=. */
export function overlayUnsafe(path: string): boolean {
  return /[,:\\]/.test(path);
}

export function hostPathInScratch(hostPath: string): string {
  return hostPath === "/" ? OLDROOT : `${OLDROOT}${hostPath}`;
}

/** Make `/` private and move into a scratch tmpfs, with the host's root at /oldroot. */
export function applyPrivateRoot(sys: Sys): void {
  // The box's mount namespace starts as a copy of the host's, with the same propagation: while `/` is
  // shared, every mount below would appear on the host too, and pivot_root refuses with EINVAL.
  during("rootfs", 'make "/" private', () => sys.mount(null, "/", null, F.MS_REC | F.MS_PRIVATE, null));
  during("rootfs", `mount the scratch tmpfs on "${SCRATCH_MOUNTPOINT}"`, () =>
    sys.mount("nsrun", SCRATCH_MOUNTPOINT, "tmpfs", F.MS_NOSUID | F.MS_NODEV, "mode=0700"),
  );
  during("rootfs", "pivot_root into the scratch tmpfs", () => {
    for (const dir of [OLDROOT, NEWROOT]) sys.mkdirat(F.AT_FDCWD, `${SCRATCH_MOUNTPOINT}${dir}`, 0o700);
    sys.pivotRoot(SCRATCH_MOUNTPOINT, `${SCRATCH_MOUNTPOINT}${OLDROOT}`);
    sys.chdir("/");
  });
}

/** Put the box's root together at /newroot: a bind of the rootfs, or an overlay on it. */
export function applyRootfs(sys: Sys, plan: RootfsPlan): void {
  const lower = hostPathInScratch(plan.hostPath);
  if (plan.ephemeral) {
    const data = `lowerdir=${lower},upperdir=${UPPER},workdir=${WORK}`;
    during("rootfs", `mount an overlay on ${JSON.stringify(plan.hostPath)} (ephemeral)`, () => {
      sys.mkdirat(F.AT_FDCWD, UPPER, 0o755);
      sys.mkdirat(F.AT_FDCWD, WORK, 0o700);
      try {
        sys.mount("overlay", NEWROOT, "overlay", 0, data);
      } catch (first) {
        // Inside a user namespace overlayfs may refuse trusted.* xattrs; userxattr uses user.* instead.
        const code = (first as { errno?: number }).errno;
        if (code !== EPERM && code !== EINVAL) throw first;
        try {
          sys.mount("overlay", NEWROOT, "overlay", 0, `${data},userxattr`);
        } catch {
          throw first;
        }
      }
    });
  } else {
    during("rootfs", `bind ${JSON.stringify(plan.hostPath)} as the box's root`, () =>
      sys.mount(lower, NEWROOT, null, F.MS_BIND | F.MS_REC, null),
    );
  }
  if (plan.readonly) {
    // Recursive, so host mounts below the rootfs are read-only too; the box's own /proc, /dev,
    // /tmp are mounted afterwards and stay writable. Missing mount targets can no longer be created.
    during("rootfs", "make the rootfs read-only", () =>
      sys.mountSetattr(F.AT_FDCWD, NEWROOT, F.AT_RECURSIVE, F.MOUNT_ATTR_RDONLY),
    );
  }
}
