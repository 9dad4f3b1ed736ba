// Host paths a box is made from (its rootfs, bind sources): resolved once, at planning, into a path
// without symlinks, which the box's first process then opens with RESOLVE_NO_SYMLINKS. So between
// the two nothing can be redirected: a symlink swapped in meanwhile makes the open fail (ELOOP).
//
// The one resolution follows only symlinks that root owns (the system's own: /var/run, /lib -> usr/lib).
// A symlink owned by anyone else could have been planted by a box of that user in a folder it can
// write, to make nsrun mount the host's /etc or / instead: it is refused, with the path to give instead.
// In a user namespace of the caller's own (rootless podman runs nsrun as uid 0 there) see
// trustedOwner: the ids mapped there are the caller's, and root's files show as the overflow uid.
import { lstatSync, readFileSync, readlinkSync } from "node:fs";
import { closeNs, nsOwnerUid, openNs } from "../../ffi/nsfs";
import { posix } from "node:path";
import { NsrunError } from "../../ffi/error";

export class HostPathError extends NsrunError {}

/** Where a path leads (every symlink followed), or null when it leads nowhere. */
export { realpathOrNull } from "../../ffi/fs";

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
    if (st.uid !== 0 && !trustedOwner(st.uid, here))
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
export { readInRoot as readInRootfs } from "../../ffi/fs";

interface UsernsFacts {
  /** nsrun runs in a user namespace that is not the initial one, and its own uid created it. */
  callerOwned: boolean;
  mapped: Array<[inside: number, count: number]>;
  overflow: number;
}

let facts: UsernsFacts | null = null;

function usernsFacts(): UsernsFacts {
  if (facts) return facts;
  const lines = readFileSync("/proc/self/uid_map", "utf8").trim().split("\n").map((l) => l.trim().split(/\s+/).map(Number));
  const initial = lines.length === 1 && lines[0][0] === 0 && lines[0][1] === 0 && lines[0][2] === 4294967295;
  let callerOwned = false;
  if (!initial) {
    const fd = openNs("/proc/self/ns/user");
    try {
      callerOwned = nsOwnerUid(fd) === process.getuid?.();
    } finally {
      closeNs(fd);
    }
  }
  const overflow = Number(readFileSync("/proc/sys/kernel/overflowuid", "utf8").trim());
  facts = { callerOwned, mapped: lines.map(([inside, , count]) => [inside, count]), overflow };
  return facts;
}

/**
 * Besides root's, whose symlinks nsrun may follow. Only in a user namespace the caller made (rootless
 * podman's, where nsrun runs as its uid 0; never for the host's root or in the initial namespace):
 * - an id mapped there is the caller's own (its uid or subordinate ids newuidmap granted it), so its
 *   links are the caller's: following them gives the caller nothing it did not have;
 * - the overflow uid (65534) is what every unmapped owner shows as: the host's root (podman's
 *   /usr/libexec/podman/catatonit, a system symlink), but also any other host user. Such a link is
 *   followed only in a folder that neither group nor others may write (the kernel's
 *   protected_symlinks rule): there only the folder's owner could have placed it, and a path
 *   through another user's folder trusts that user already. In /tmp, another user's link is refused.
 * nsrun there holds no privilege over the host: what a followed link reaches, the caller could open.
 */
function trustedOwner(uid: number, link: string): boolean {
  const u = usernsFacts();
  if (!u.callerOwned) return false;
  if (uid === u.overflow) {
    try {
      return (lstatSync(posix.dirname(link)).mode & 0o022) === 0;
    } catch {
      return false;
    }
  }
  return u.mapped.some(([inside, count]) => uid >= inside && uid < inside + count);
}
