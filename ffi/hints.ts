// One sentence of advice for the errnos people meet at each step, like bubblewrap's per-errno messages.
// Keyed by syscall, then errno name; "*" matches any syscall.
import { errnoName } from "./errno";

const HINTS: Record<string, Record<string, string>> = {
  unshare: {
    EPERM:
      "creating namespaces needs CAP_SYS_ADMIN, or a user namespace first; check `sysctl kernel.unprivileged_userns_clone` (Debian) and `kernel.apparmor_restrict_unprivileged_userns` (Ubuntu 23.10+)",
    ENOSPC: "the per-user namespace limit is reached: raise `sysctl user.max_user_namespaces`",
    EUSERS: "the namespace nesting limit is reached",
    EINVAL:
      "the kernel refused these namespace flags: it was built without one of the namespaces (CONFIG_USER_NS, CONFIG_TIME_NS, ...), or a flag is newer than it (CLONE_NEWTIME: Linux 5.6, CLONE_INTO_CGROUP: 5.7)",
  },
  write: {
    EPERM:
      "writing uid_map/gid_map was refused; on Ubuntu 23.10+ this is AppArmor's `kernel.apparmor_restrict_unprivileged_userns`: allow nsrun with an AppArmor profile, or set that sysctl to 0",
  },
  mount: {
    EPERM:
      "mount(2) needs CAP_SYS_ADMIN in the user namespace that owns the mount namespace; an ordinary user has it only inside a user namespace of their own, which nsrun creates by default (do not set [namespaces] user = false)",
    EBUSY: "something is already mounted there in a way that conflicts, or the target is in use",
    EINVAL: "the kernel refused the options or flags for this filesystem; check [[mounts]] options",
    ENOENT: "the source or target does not exist",
    ENODEV: "the kernel has no such filesystem type",
    EACCES: "a directory on the way is not searchable by the caller, or the source is on a nodev/noexec mount",
  },
  pivot_root: {
    EINVAL:
      "the new root must be a mount point and `/` must not be shared; nsrun binds the rootfs and makes `/` private first",
    EPERM: "pivot_root needs CAP_SYS_ADMIN in the mount namespace's owner; use a user namespace",
  },
  chroot: {
    EPERM: "chroot(2) needs CAP_SYS_CHROOT in the caller's user namespace: an ordinary user has it only inside a user namespace of their own (what the classic fork + chroot attempt lacks, and nsrun creates by default)",
  },
  mkdirat: {
    EROFS: "the rootfs is read-only: create the mount target in the rootfs, or set ephemeral = true",
    EACCES: "the box's root may not write there (a rootless box cannot write to directories owned by other host users): create the mount target in the rootfs, or use a rootfs you own",
    EPERM: "the box's root may not write there: create the mount target in the rootfs, or use a rootfs you own",
  },
  openat: {
    EROFS: "the rootfs is read-only: create the mount target in the rootfs, or set ephemeral = true",
    EACCES: "the box's root may not write there (a rootless box cannot write to directories owned by other host users): create the mount target in the rootfs, or use a rootfs you own",
  },
  openat2: {
    EXDEV: "the path leaves the rootfs",
    ELOOP: "the path has too many symbolic links, or a magic link",
    ENOSYS: "openat2(2) needs Linux 5.6 or later; nsrun resolves paths in the rootfs with it",
    ENOENT: "the path does not exist in the rootfs (a symlink on the way may point at something missing)",
  },
  mount_setattr: {
    ENOSYS: "mount_setattr(2) needs Linux 5.12 or later",
    EPERM: "the mount's flags are locked by the host (a rootless box cannot clear them), or CAP_SYS_ADMIN is missing",
  },
  close_range: {
    ENOSYS: "close_range(2) needs Linux 5.9 or later",
    EPERM: "close_range(2) never fails with EPERM by itself: a seccomp filter refuses it (a profile older than Linux 5.9, loaded on nsrun or on the container: linux.seccomp)",
  },
  open: {
    EACCES: "permission denied: for /proc/self/uid_map this is AppArmor or a sysctl; for a cgroup file, the cgroup is not delegated to you",
    ENOENT: "the file does not exist; for a cgroup this means the controller is not enabled there",
  },
  seccomp: {
    EACCES: "loading a seccomp filter needs no_new_privileges = true, or CAP_SYS_ADMIN",
    EINVAL: "the kernel rejected the filter; check the seccomp profile",
  },
  capset: {
    EPERM: "a capability can be kept only if the process still has it; the box's user namespace or the bounding set lacks it",
  },
  prlimit: {
    EPERM: "raising a hard limit above the caller's needs CAP_SYS_RESOURCE in the initial user namespace; a rootless box can only lower limits",
  },
  ioctl: {
    EPERM: "configuring a network interface needs CAP_NET_ADMIN in the network namespace's owner",
  },
  sethostname: {
    EPERM: "setting the hostname needs a UTS namespace: set [namespaces] uts = true",
  },
  setresuid: {
    EINVAL: "the uid is not mapped in the box's user namespace; a rootless box maps only uid 0",
  },
  setresgid: {
    EINVAL: "the gid is not mapped in the box's user namespace; a rootless box maps only gid 0",
  },
};

/** The kernel's release (uname -r); node:os is loaded only when a hint needs it. */
const release = (): string => (require("node:os") as typeof import("node:os")).release();

export function hintFor(syscall: string, errno: number, kernel?: string): string | undefined {
  const name = errnoName(errno);
  const hint = HINTS[syscall]?.[name] ?? HINTS["*"]?.[name];
  // "needs Linux X.Y" is advice only on an older kernel; on a newer one ENOSYS comes from a seccomp
  // filter (a profile that predates the call, which podman's makes ENOSYS), not from the kernel.
  const needs = hint?.match(/needs Linux (\d+)\.(\d+)/);
  if (name === "ENOSYS" && needs && kernelAtLeast((kernel ??= release()), Number(needs[1]), Number(needs[2])))
    return `this kernel (${kernel.split("-")[0]}) has ${syscall}(2): a seccomp filter refuses it (a profile older than the call, loaded on nsrun or on the box: [security] seccomp, or OCI linux.seccomp)`;
  return hint;
}

/** `release` (uname -r, "6.18.44-...") is at least major.minor. */
export function kernelAtLeast(release: string, major: number, minor: number): boolean {
  const [a, b] = release.split(/[.-]/).map(Number);
  return a > major || (a === major && b >= minor);
}
