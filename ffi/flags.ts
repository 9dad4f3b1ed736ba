// Named constants for the syscalls nsrun makes, with the header each comes from.
// Values are Linux ABI and never change; the few that differ between x86-64 and arm64 say so.
const ARM64 = process.arch === "arm64";

// <linux/sched.h>: namespace flags for unshare(2) and setns(2)
export const CLONE_NEWTIME = 0x00000080;
export const CLONE_NEWNS = 0x00020000;
export const CLONE_NEWCGROUP = 0x02000000;
export const CLONE_NEWUTS = 0x04000000;
export const CLONE_NEWIPC = 0x08000000;
export const CLONE_NEWUSER = 0x10000000;
export const CLONE_NEWPID = 0x20000000;
export const CLONE_NEWNET = 0x40000000;
/** clone(2): the child's parent is the caller's parent (a sibling, not a child). */
export const CLONE_PARENT = 0x00008000;
/** clone(2): a pidfd of the child, stored where the parent_tid argument points. */
export const CLONE_PIDFD = 0x00001000;

// <linux/mount.h>: mount(2) flags
export const MS_RDONLY = 0x1;
export const MS_NOSUID = 0x2;
export const MS_NODEV = 0x4;
export const MS_NOEXEC = 0x8;
export const MS_SYNCHRONOUS = 0x10;
export const MS_REMOUNT = 0x20;
export const MS_NOATIME = 0x400;
export const MS_NODIRATIME = 0x800;
export const MS_BIND = 0x1000;
export const MS_REC = 0x4000;
export const MS_SILENT = 0x8000;
export const MS_UNBINDABLE = 0x20000;
export const MS_PRIVATE = 0x40000;
export const MS_SLAVE = 0x80000;
export const MS_SHARED = 0x100000;
export const MS_RELATIME = 0x200000;
export const MS_STRICTATIME = 0x1000000;

// <linux/mount.h>: mount attributes, for fsmount(2) and mount_setattr(2)
export const MOUNT_ATTR_RDONLY = 0x1;
export const MOUNT_ATTR_NOSUID = 0x2;
export const MOUNT_ATTR_NODEV = 0x4;
export const MOUNT_ATTR_NOEXEC = 0x8;
export const MOUNT_ATTR_NOATIME = 0x10;
export const MOUNT_ATTR_STRICTATIME = 0x20;
export const MOUNT_ATTR_NODIRATIME = 0x80;
export const MOUNT_ATTR_IDMAP = 0x100000;

// <linux/mount.h>: the new mount API (Linux 5.2): open_tree(2), move_mount(2), fsopen(2), fsconfig(2), fsmount(2)
export const OPEN_TREE_CLONE = 0x1;
export const OPEN_TREE_CLOEXEC = 0x80000;
export const MOVE_MOUNT_F_EMPTY_PATH = 0x4;
export const MOVE_MOUNT_T_EMPTY_PATH = 0x40;
export const FSOPEN_CLOEXEC = 0x1;
export const FSMOUNT_CLOEXEC = 0x1;
export const FSCONFIG_SET_FLAG = 0;
export const FSCONFIG_SET_STRING = 1;
export const FSCONFIG_CMD_CREATE = 6;


// <sys/mount.h>: umount2(2)
export const MNT_DETACH = 0x2;

// <fcntl.h>
export const AT_FDCWD = -100;
// <unistd.h>: access(2)'s mode
export const X_OK = 1;
export const AT_EMPTY_PATH = 0x1000;
export const AT_RECURSIVE = 0x8000;
export const O_RDONLY = 0x0;
export const O_WRONLY = 0x1;
export const O_RDWR = 0x2;
export const O_CREAT = 0x40;
export const O_EXCL = 0x80;
export const O_NOCTTY = 0x100;
export const O_NONBLOCK = 0x800;
export const O_DIRECTORY = ARM64 ? 0x4000 : 0x10000;
export const O_NOFOLLOW = ARM64 ? 0x8000 : 0x20000;
export const O_CLOEXEC = 0x80000;
export const O_PATH = 0x200000;
export const F_GETFD = 1;
export const F_ADD_SEALS = 1033;
export const F_SEAL_SEAL = 0x1;
export const F_SEAL_SHRINK = 0x2;
export const F_SEAL_GROW = 0x4;
export const F_SEAL_WRITE = 0x8;
export const F_SETFD = 2;
export const F_DUPFD_CLOEXEC = 1030;
export const F_SETPIPE_SZ = 1031;
export const F_GETFL = 3;
export const F_SETFL = 4;
export const FD_CLOEXEC = 1;

// <sys/stat.h>: mode bits that chown(2) clears on a regular file
export const S_ISUID = 0o4000;
export const S_ISGID = 0o2000;

// <linux/xattr.h>: setxattr(2) flags
export const XATTR_CREATE = 0x1;
export const XATTR_REPLACE = 0x2;

// <linux/openat2.h>: resolve flags
export const RESOLVE_NO_XDEV = 0x01;
export const RESOLVE_NO_MAGICLINKS = 0x02;
export const RESOLVE_NO_SYMLINKS = 0x04;
export const RESOLVE_BENEATH = 0x08;
export const RESOLVE_IN_ROOT = 0x10;

// <linux/memfd.h>
export const MFD_CLOEXEC = 0x1;
export const MFD_ALLOW_SEALING = 0x2;
export const MFD_EXEC = 0x10;

// <linux/close_range.h>
export const CLOSE_RANGE_CLOEXEC = 0x4;

// <sys/stat.h>: file types (S_IFMT bits), for mknodat(2) and fstat(2)
export const S_IFCHR = 0o020000;
export const S_IFBLK = 0o060000;
export const S_IFIFO = 0o010000;
export const S_IFREG = 0o100000;
export const S_IFLNK = 0o120000;

// <sys/prctl.h>
export const PR_SET_PDEATHSIG = 1;
export const PR_SET_DUMPABLE = 4;
export const PR_SET_KEEPCAPS = 8;
export const PR_CAPBSET_DROP = 24;
export const PR_SET_CHILD_SUBREAPER = 36;
export const PR_SET_NO_NEW_PRIVS = 38;
export const PR_CAP_AMBIENT = 47;
export const PR_CAP_AMBIENT_RAISE = 2;
export const PR_CAP_AMBIENT_CLEAR_ALL = 4;

export const PR_NAMES: Record<number, string> = {
  [PR_SET_PDEATHSIG]: "PR_SET_PDEATHSIG",
  [PR_SET_DUMPABLE]: "PR_SET_DUMPABLE",
  [PR_SET_KEEPCAPS]: "PR_SET_KEEPCAPS",
  [PR_CAPBSET_DROP]: "PR_CAPBSET_DROP",
  [PR_SET_CHILD_SUBREAPER]: "PR_SET_CHILD_SUBREAPER",
  [PR_SET_NO_NEW_PRIVS]: "PR_SET_NO_NEW_PRIVS",
  [PR_CAP_AMBIENT]: "PR_CAP_AMBIENT",
};

// <linux/capability.h>: capset(2) header version with two 32-bit data words
export const LINUX_CAPABILITY_VERSION_3 = 0x20080522;

// <linux/seccomp.h>
export const SECCOMP_SET_MODE_FILTER = 1;
export const SECCOMP_FILTER_FLAG_TSYNC = 1;

// <sys/resource.h>
export const RLIMIT = { cpu: 0, fsize: 1, stack: 3, core: 4, nproc: 6, nofile: 7, as: 9 } as const;

// <signal.h>
export const SIGKILL = 9;
export const SIGXCPU = 24;
export const SIGXFSZ = 25;
export const SIGTERM = 15;
export const SIGCHLD = 17;

// <sys/wait.h>: waitid(2)
export const P_PID = 1;
export const P_PIDFD = 3;
export const WNOHANG = 1;
export const WEXITED = 4;
export const WNOWAIT = 0x01000000;
/** siginfo_t's si_code for a child that exited (others: killed, dumped, ...). */
export const CLD_EXITED = 1;

// <asm-generic/ioctls.h>: terminal ioctls, the same numbers on x86-64 and arm64
export const TCGETS = 0x5401;
export const TIOCSCTTY = 0x540e;
export const TIOCSTI = 0x5412;
export const TIOCGWINSZ = 0x5413;
export const FIONREAD = 0x541b;
export const TIOCSWINSZ = 0x5414;
export const TIOCLINUX = 0x541c;
export const TIOCGPTPEER = 0x5441;
export const TIOCSPTLCK = 0x40045431;

// <poll.h>
export const POLLIN = 0x1;
export const POLLOUT = 0x4;
export const POLLERR = 0x8;
export const POLLHUP = 0x10;

// <sys/socket.h>, <linux/sockios.h>, <net/if.h>
export const AF_UNIX = 1;
export const AF_INET = 2;
export const SOCK_STREAM = 1;
export const SOCK_DGRAM = 2;
export const SOCK_CLOEXEC = 0x80000;
export const SIOCGIFFLAGS = 0x8913;
export const SIOCSIFFLAGS = 0x8914;
export const IFF_UP = 0x1;
export const IFF_LOOPBACK = 0x8;
export const IFNAMSIZ = 16;

/** Names for the bits of a flags word, so traces and errors read `MS_BIND|MS_REC`, not 20480. */
export function flagNames(value: number, table: Record<string, number>): string {
  const names: string[] = [];
  let rest = value;
  for (const [name, bit] of Object.entries(table)) {
    if (bit !== 0 && (value & bit) === bit) {
      names.push(name);
      rest &= ~bit;
    }
  }
  if (rest !== 0) names.push(`0x${rest.toString(16)}`);
  return names.length ? names.join("|") : "0";
}

export const CLONE_FLAGS = {
  CLONE_NEWUSER,
  CLONE_NEWNS,
  CLONE_NEWPID,
  CLONE_NEWUTS,
  CLONE_NEWIPC,
  CLONE_NEWNET,
  CLONE_NEWCGROUP,
  CLONE_NEWTIME,
};

export const MS_FLAGS = {
  MS_RDONLY,
  MS_NOSUID,
  MS_NODEV,
  MS_NOEXEC,
  MS_SYNCHRONOUS,
  MS_REMOUNT,
  MS_NOATIME,
  MS_NODIRATIME,
  MS_BIND,
  MS_REC,
  MS_SILENT,
  MS_UNBINDABLE,
  MS_PRIVATE,
  MS_SLAVE,
  MS_SHARED,
  MS_RELATIME,
  MS_STRICTATIME,
};

export const MOUNT_ATTR_FLAGS = {
  MOUNT_ATTR_RDONLY,
  MOUNT_ATTR_NOSUID,
  MOUNT_ATTR_NODEV,
  MOUNT_ATTR_NOEXEC,
  MOUNT_ATTR_NOATIME,
  MOUNT_ATTR_STRICTATIME,
  MOUNT_ATTR_NODIRATIME,
  MOUNT_ATTR_IDMAP,
};

export const O_FLAGS = {
  O_WRONLY,
  O_RDWR,
  O_CREAT,
  O_EXCL,
  O_NOCTTY,
  O_DIRECTORY,
  O_NOFOLLOW,
  O_CLOEXEC,
  O_PATH,
};

export const RESOLVE_FLAGS = {
  RESOLVE_NO_XDEV,
  RESOLVE_NO_MAGICLINKS,
  RESOLVE_NO_SYMLINKS,
  RESOLVE_BENEATH,
  RESOLVE_IN_ROOT,
};

export const XATTR_FLAGS = {
  XATTR_CREATE,
  XATTR_REPLACE,
};

export const AT_FLAGS = {
  AT_EMPTY_PATH,
  AT_RECURSIVE,
  OPEN_TREE_CLONE,
  OPEN_TREE_CLOEXEC,
};
