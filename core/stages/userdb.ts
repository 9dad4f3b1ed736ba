// A box's user as names or numbers ("app", "1000", "app:staff", "1000:100"), looked up in the
// rootfs's own /etc/passwd and /etc/group: an image's `User`, `-u NAME`, box.toml's user = "name".
//
// The files are read through an fd of the rootfs (openat2 RESOLVE_IN_ROOT): a rootfs's symlink
// `/etc/passwd -> /etc/shadow` is the rootfs's own /etc/shadow, never the host's. They must be
// regular files of a bounded size (a FIFO would hang, /dev/zero would never end). Fail closed: a
// name the rootfs does not list, or an id out of range, is an error; never a fallback to uid 0.
import { fstatSync, readSync } from "node:fs";
import { NsrunError } from "../../ffi/error";
import * as F from "../../ffi/flags";
import { close, isErrno, openat2 } from "../../ffi/fs";
import { MAX_ID } from "./ids";

export { MAX_ID };
/** /etc/passwd and /etc/group larger than this are refused (glibc reads any size; 4 MiB is tens of thousands of users). */
const MAX_DB = 4 * 1024 * 1024;

export class UserDbError extends NsrunError {}

export interface BoxUser {
  uid: number;
  gid: number;
}

/** A decimal id in range, or null when `text` is not all digits; throws when it is digits but too large. */
export function parseId(text: string, what: string): number | null {
  if (!/^\d+$/.test(text)) return null;
  const n = Number(text);
  if (text.length > 10 || n > MAX_ID) throw new UserDbError(`${what} ${JSON.stringify(text)} is out of range (0-${MAX_ID})`);
  return n;
}

/** One of the rootfs's databases as lines of fields; null when the file is missing. */
export function readDb(rootfd: number, path: "/etc/passwd" | "/etc/group", whose = "the rootfs's"): string[][] | null {
  let fd: number;
  try {
    // O_NONBLOCK: a FIFO planted at the name opens without waiting for a writer, and is refused below.
    fd = openat2(rootfd, path, F.O_RDONLY | F.O_NONBLOCK, F.RESOLVE_IN_ROOT | F.RESOLVE_NO_MAGICLINKS, path);
  } catch (e) {
    if (isErrno(e, 2)) return null; // ENOENT
    throw new UserDbError(`cannot open ${whose} ${path}: ${(e as Error).message}`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new UserDbError(`${whose} ${path} is not a regular file`);
    if (st.size > MAX_DB) throw new UserDbError(`${whose} ${path} is larger than 4 MiB`);
    const buf = Buffer.alloc(st.size + 1);
    let n = 0;
    for (;;) {
      const k = readSync(fd, buf, n, buf.length - n, n);
      if (k <= 0) break;
      n += k;
      if (n > st.size) throw new UserDbError(`${whose} ${path} grew while it was read`);
    }
    return buf
      .subarray(0, n)
      .toString("utf8")
      .split("\n")
      .filter((l) => l && !l.startsWith("#"))
      .map((l) => l.split(":"));
  } finally {
    close(fd);
  }
}

/** The uid and gid of a user spec ("USER" or "USER:GROUP", each a name or a decimal id), from the rootfs fd's passwd and group. */
export function lookupUser(rootfd: number, spec: string, whose = "the rootfs's"): BoxUser {
  const colon = spec.indexOf(":");
  const u = colon === -1 ? spec : spec.slice(0, colon);
  const g = colon === -1 ? undefined : spec.slice(colon + 1);
  if (u === "" || g === "" || spec.includes("\0")) throw new UserDbError(`user ${JSON.stringify(spec)}: expected USER or USER:GROUP, each a name or a number`);
  let passwd: string[][] | null | undefined;
  const db = () => (passwd === undefined ? (passwd = readDb(rootfd, "/etc/passwd", whose)) : passwd);
  let uid = parseId(u, "uid");
  let entry: string[] | undefined;
  if (uid === null) {
    const rows = db();
    if (rows === null) throw new UserDbError(`unable to find user ${JSON.stringify(u)}: ${whose} /etc/passwd is missing`);
    entry = rows.find((r) => r[0] === u);
    if (!entry) throw new UserDbError(`unable to find user ${JSON.stringify(u)}: no matching entry in ${whose} /etc/passwd`);
    const id = parseId(entry[2] ?? "", `/etc/passwd: user ${JSON.stringify(u)}: uid`);
    if (id === null) throw new UserDbError(`/etc/passwd: user ${JSON.stringify(u)} has no valid uid (${JSON.stringify(entry[2] ?? "")})`);
    uid = id;
  }
  let gid: number;
  if (g !== undefined) {
    const numeric = parseId(g, "gid");
    if (numeric !== null) gid = numeric;
    else {
      const groups = readDb(rootfd, "/etc/group", whose);
      if (groups === null) throw new UserDbError(`unable to find group ${JSON.stringify(g)}: ${whose} /etc/group is missing`);
      const row = groups.find((r) => r[0] === g);
      if (!row) throw new UserDbError(`unable to find group ${JSON.stringify(g)}: no matching entry in ${whose} /etc/group`);
      const id = parseId(row[2] ?? "", `/etc/group: group ${JSON.stringify(g)}: gid`);
      if (id === null) throw new UserDbError(`/etc/group: group ${JSON.stringify(g)} has no valid gid (${JSON.stringify(row[2] ?? "")})`);
      gid = id;
    }
  } else {
    // No group: the user's primary group from passwd (found by name, or by uid for a number); a uid
    // the file does not list keeps its own number as the gid (never root's group by default).
    entry ??= db()?.find((r) => r[2] === String(uid));
    const primary = entry ? parseId(entry[3] ?? "", `/etc/passwd: user ${JSON.stringify(entry[0])}: gid`) : null;
    gid = primary ?? uid;
  }
  return { uid, gid };
}

/** lookupUser with the rootfs given as a host directory: opened once without following symlinks, then only the fd is used. */
export function lookupUserIn(rootfs: string, spec: string, whose = "the rootfs's"): BoxUser {
  let rootfd: number;
  try {
    rootfd = openat2(F.AT_FDCWD, rootfs, F.O_PATH | F.O_DIRECTORY, F.RESOLVE_NO_SYMLINKS | F.RESOLVE_NO_MAGICLINKS, rootfs);
  } catch (e) {
    throw new UserDbError(`cannot open the rootfs ${JSON.stringify(rootfs)} to look up user ${JSON.stringify(spec)}: ${(e as Error).message}`);
  }
  try {
    return lookupUser(rootfd, spec, whose);
  } finally {
    close(rootfd);
  }
}
