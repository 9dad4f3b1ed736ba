// Host paths a box is made from (its rootfs, bind sources): resolved once, at planning, into a path
// without symlinks, which the box's first process then opens with RESOLVE_NO_SYMLINKS. So between
// the two nothing can be redirected: a symlink swapped in meanwhile makes the open fail (ELOOP).
//
// The one resolution follows only symlinks that root owns (the system's own: /var/run, /lib -> usr/lib).
// A symlink owned by anyone else could have been planted by a box of that user in a folder it can
// write, to make nsrun mount the host's /etc or / instead: it is refused, with the path to give instead.
import { lstatSync, readlinkSync, readSync } from "node:fs";
import { O_DIRECTORY, O_PATH, O_RDONLY, RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS } from "../ffi/flags";
import { close as closeFd, openat2 } from "../ffi/fs";
import { posix } from "node:path";
import { NsrunError } from "../ffi/error";

export class HostPathError extends NsrunError {}

const MAX_LINKS = 40; // as the kernel's own limit (ELOOP)

/** The symlink-free path that `path` (absolute) names, following root's symlinks only. */
export function canonicalHostPath(path: string): string {
  let rest = path.split("/").filter(Boolean);
  let done = "";
  let links = 0;
  while (rest.length) {
    const name = rest.shift() as string;
    if (name === ".") continue;
    if (name === "..") {
      done = posix.dirname(done || "/") === "/" ? "" : posix.dirname(done);
      continue;
    }
    const here = `${done}/${name}`;
    const st = lstatSync(here); // ENOENT and friends go to the caller
    if (!st.isSymbolicLink()) {
      done = here;
      continue;
    }
    if (st.uid !== 0)
      throw new HostPathError(`${JSON.stringify(here)} is a symbolic link owned by uid ${st.uid}; nsrun follows only root's links here (a box could have planted one): give the path it points to, ${JSON.stringify(posix.resolve(done || "/", readlinkSync(here)))}`);
    if (++links > MAX_LINKS) throw new HostPathError(`${JSON.stringify(path)}: too many levels of symbolic links`);
    const target = readlinkSync(here);
    if (target.startsWith("/")) done = "";
    rest = [...target.split("/").filter(Boolean), ...rest];
  }
  return done || "/";
}

/**
 * A small file of the rootfs (its /etc/passwd, /etc/resolv.conf), read the way the box would see it:
 * resolved inside the rootfs (RESOLVE_IN_ROOT), so that a rootfs's symlink cannot make nsrun read a
 * file of the host's. null when it is missing or unreadable.
 */
export function readInRootfs(rootfs: string, path: string, limit = 65536): string | null {
  let root = -1;
  let fd = -1;
  try {
    root = openat2(-100, rootfs, O_PATH | O_DIRECTORY, RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
    fd = openat2(root, path, O_RDONLY, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS);
    const buf = Buffer.alloc(limit);
    const n = readSync(fd, buf, 0, limit, 0);
    return buf.subarray(0, n).toString("utf8");
  } catch {
    return null;
  } finally {
    if (fd >= 0) closeFd(fd);
    if (root >= 0) closeFd(root);
  }
}
