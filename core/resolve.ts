// Paths inside the rootfs are resolved by the kernel, never by joining strings.
//
// openat2(2) with RESOLVE_IN_ROOT treats the rootfs fd as "/" for the whole walk: an absolute
// symlink (`/evil -> /etc`) or a `..` chain (`../../../etc`) lands inside the rootfs, not on the
// host. The result is an O_PATH fd, and mounts go onto that fd (through /proc/self/fd), so a rootfs
// that changes between resolving and mounting cannot redirect the mount.
import * as F from "../ffi/flags";
import { SyscallError } from "../ffi/libc";
import type { Sys } from "../ffi/sys";

const ENOENT = 2;
const EEXIST = 17;
const RESOLVE = F.RESOLVE_IN_ROOT | F.RESOLVE_NO_MAGICLINKS;

export type CreateAs = "dir" | "file" | null;

/** The components of an absolute box path: "/dev/pts" -> ["dev", "pts"]. */
export function components(path: string): string[] {
  return path.split("/").filter((c) => c !== "" && c !== ".");
}

/** Open `path` inside the root `rootfd` as O_PATH, creating it (and missing parents) when asked. */
export function openInRoot(sys: Sys, rootfd: number, path: string, create: CreateAs): number {
  try {
    return sys.openat2(rootfd, path, F.O_PATH, RESOLVE);
  } catch (e) {
    if (!create || !isErrno(e, ENOENT)) throw e;
  }
  const parts = components(path);
  let dirfd = sys.openat2(rootfd, "/", F.O_PATH | F.O_DIRECTORY, RESOLVE);
  try {
    for (let i = 0; i < parts.length; i++) {
      const last = i === parts.length - 1;
      const name = parts[i];
      try {
        if (last && create === "file") {
          const fd = sys.openat(dirfd, name, F.O_WRONLY | F.O_CREAT | F.O_EXCL | F.O_NOFOLLOW | F.O_NOCTTY, 0o644);
          sys.close(fd);
        } else {
          sys.mkdirat(dirfd, name, 0o755);
        }
      } catch (e) {
        // Already there (a directory, or a symlink that the next openat2 resolves inside the root).
        if (!isErrno(e, EEXIST)) throw e;
      }
      const next = sys.openat2(rootfd, `/${parts.slice(0, i + 1).join("/")}`, F.O_PATH | (last ? 0 : F.O_DIRECTORY), RESOLVE);
      sys.close(dirfd);
      dirfd = next;
    }
    return dirfd;
  } catch (e) {
    sys.close(dirfd);
    throw e;
  }
}

export function isErrno(e: unknown, code: number): boolean {
  return e instanceof SyscallError && e.errno === code;
}
