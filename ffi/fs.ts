// The libc calls image extraction and the image store need, beyond ffi/libc.ts's table; and the
// stat(2), access(2) and realpath(3) a box's start needs without node:fs (which costs about a
// millisecond to load: core/host/cachefiles.ts, core/host/startrecord.ts).
//
// Extraction never joins strings into a host path. Every parent directory is resolved with
// openat2(2) RESOLVE_IN_ROOT from an fd of the image root, and the last component is made with an
// *at() call on that parent fd that does not follow a symlink there (O_NOFOLLOW, AT_SYMLINK_NOFOLLOW,
// linkat without AT_SYMLINK_FOLLOW). So a layer's `..` entries and its symlinks land inside the image.
import { dlopen, FFIType, ptr as addressOf } from "bun:ffi";
import { ERRNO } from "./errno";
import { EAGAIN_TRIES } from "./executor/protocol";
import * as F from "./flags";
import { check, cstr, errno, libc, nameFromBytes, q, SyscallError } from "./libc";
import { hintFor } from "./hints";
import { SYS } from "./syscalls";
import { readAt } from "./io";

const { i32, i64, u32, u64, ptr } = FFIType;

// Bound on first use (a Proxy): the box's start-up path imports this file for openat2 alone, and
// bun:ffi compiles a trampoline for each symbol it binds.
const FS_CALLS = {
  fchownat: { args: [i32, ptr, u32, u32, i32], returns: i32 },
  fchown: { args: [i32, u32, u32], returns: i32 },
  fchmod: { args: [i32, u32], returns: i32 },
  fchmodat: { args: [i32, ptr, u32, i32], returns: i32 },
  futimens: { args: [i32, ptr], returns: i32 },
  utimensat: { args: [i32, ptr, ptr, i32], returns: i32 },
  linkat: { args: [i32, ptr, i32, ptr, i32], returns: i32 },
  unlinkat: { args: [i32, ptr, i32], returns: i32 },
  mknodat: { args: [i32, ptr, u32, u64], returns: i32 },
  fsetxattr: { args: [i32, ptr, ptr, u64, i32], returns: i32 },
  lgetxattr: { args: [ptr, ptr, ptr, u64], returns: i64 },
  flock: { args: [i32, i32], returns: i32 },
  write: { args: [i32, ptr, u64], returns: i64 },
} as const;
const bindFs = () => dlopen("libc.so.6", FS_CALLS).symbols;
let fsSymbols: ReturnType<typeof bindFs> | null = null;
const fsLibc = new Proxy({} as ReturnType<typeof bindFs>, {
  get: (_, name: string) => (fsSymbols ??= bindFs())[name as keyof typeof FS_CALLS],
});

// <fcntl.h>, <linux/stat.h>, <sys/file.h>, <sys/stat.h>: constants beyond ffi/flags.ts
export const AT_SYMLINK_NOFOLLOW = 0x100;
export const AT_REMOVEDIR = 0x200;
export const STATX_TYPE = 0x1;
export const STATX_MODE = 0x2;
export const LOCK_SH = 1;
export const LOCK_EX = 2;
export const LOCK_NB = 4;
export const S_IFMT = 0o170000;
export const S_IFDIR = 0o040000;

/** Resolve flags for every lookup inside an image: the image fd is "/", and /proc magic links are refused. */
export const IN_ROOT = F.RESOLVE_IN_ROOT | F.RESOLVE_NO_MAGICLINKS;

export function isErrno(e: unknown, ...codes: number[]): boolean {
  return e instanceof SyscallError && codes.includes(e.errno);
}

function fail(syscall: string, call: string): never {
  const code = errno();
  throw new SyscallError(syscall, call, code, hintFor(syscall, code));
}

/** openat2(2): `path` resolved under `dirfd` with `resolve` flags. `shown` is how errors name the path. */
export function openat2(dirfd: number, path: string, flags: number, resolve: number, shown = path, mode = 0): number {
  // struct open_how: flags, mode, resolve (u64 each).
  const how = new BigUint64Array([BigInt(flags | F.O_CLOEXEC), BigInt(mode), BigInt(resolve)]);
  const p = cstr(path);
  // Scoped to a root, EAGAIN: a mount or rename anywhere on the host raced the walk of "..". Again,
  // as the tape's openat2 does (protocol.h NSRUN_OP_RETRY_EAGAIN).
  const scoped = (resolve & (F.RESOLVE_IN_ROOT | F.RESOLVE_BENEATH)) !== 0;
  let ret: number;
  let tries = 0;
  do ret = libc.syscall(SYS.openat2, dirfd, ptrOf(p), ptrOf(how), 24, 0, 0);
  while (ret < 0 && scoped && ++tries < EAGAIN_TRIES && errno() === ERRNO.EAGAIN);
  return check("openat2", ret, `openat2(${q(shown)})`);
}

/** open_tree(2) of `fd` itself (AT_EMPTY_PATH): with OPEN_TREE_CLONE, a detached copy of its mount. */
export function openTree(fd: number, flags: number, shown: string): number {
  const ret = libc.syscall(SYS.open_tree, fd, ptrOf(cstr("")), flags | F.AT_EMPTY_PATH, 0, 0, 0);
  return check("open_tree", ret, `open_tree(${q(shown)})`);
}

/** mount_setattr(2) on the mount `fd` is (AT_EMPTY_PATH): set `attrSet`, `propagation`, and an id map from `userns`. */
export function mountSetattr(fd: number, recursive: boolean, attrSet: number, propagation: number, userns: number, shown: string): void {
  // struct mount_attr { u64 attr_set, attr_clr, propagation, userns_fd; }
  const attr = Buffer.alloc(32);
  attr.writeBigUInt64LE(BigInt(attrSet), 0);
  attr.writeBigUInt64LE(BigInt(propagation), 16);
  attr.writeBigUInt64LE(BigInt(userns), 24);
  const at = F.AT_EMPTY_PATH | (recursive ? F.AT_RECURSIVE : 0);
  check("mount_setattr", libc.syscall(SYS.mount_setattr, fd, ptrOf(cstr("")), at, ptrOf(attr), 32, 0), `mount_setattr(${q(shown)})`);
}

// libc.syscall takes i64 arguments, so buffers go in as their addresses.
function ptrOf(buf: Uint8Array | BigUint64Array): number {
  return addressOf(buf) as unknown as number;
}

export function openat(dirfd: number, name: string, flags: number, mode: number, shown = name): number {
  return check("openat", libc.openat(dirfd, cstr(name), flags | F.O_CLOEXEC, mode), `openat(${q(shown)})`);
}

/** renameat2(2) within or between two directory fds (flags 0: replaces `newname` atomically). */
export function renameat(olddirfd: number, oldname: string, newdirfd: number, newname: string, shown = newname): void {
  check("renameat2", libc.syscall(SYS.renameat2, olddirfd, ptrOf(cstr(oldname)), newdirfd, ptrOf(cstr(newname)), 0, 0), `renameat2(${q(shown)})`);
}

export function mkdirat(dirfd: number, name: string, mode: number, shown = name): void {
  check("mkdirat", libc.mkdirat(dirfd, cstr(name), mode), `mkdirat(${q(shown)})`);
}

export function symlinkat(target: string, dirfd: number, name: string, shown = name): void {
  check("symlinkat", libc.symlinkat(cstr(target), dirfd, cstr(name)), `symlinkat(${q(target)}, ${q(shown)})`);
}

/** A hard link; without AT_SYMLINK_FOLLOW a symlink at the old name is linked itself, never followed. */
export function linkat(olddirfd: number, oldname: string, newdirfd: number, newname: string, shown: string): void {
  check("linkat", fsLibc.linkat(olddirfd, cstr(oldname), newdirfd, cstr(newname), 0), shown);
}

export function unlinkat(dirfd: number, name: string, removeDir: boolean, shown = name): void {
  check("unlinkat", fsLibc.unlinkat(dirfd, cstr(name), removeDir ? AT_REMOVEDIR : 0), `unlinkat(${q(shown)}${removeDir ? ", AT_REMOVEDIR" : ""})`);
}

export function mkfifoat(dirfd: number, name: string, mode: number, shown = name): void {
  check("mknodat", fsLibc.mknodat(dirfd, cstr(name), F.S_IFIFO | (mode & 0o7777), 0), `mknodat(${q(shown)}, S_IFIFO)`);
}

export function fchown(fd: number, uid: number, gid: number, shown: string): void {
  check("fchown", fsLibc.fchown(fd, uid, gid), `fchown(${q(shown)}, ${uid}, ${gid})`);
}

/** chown of the entry `name` itself (a symlink is not followed). */
export function lchownat(dirfd: number, name: string, uid: number, gid: number, shown = name): void {
  check("fchownat", fsLibc.fchownat(dirfd, cstr(name), uid, gid, AT_SYMLINK_NOFOLLOW), `fchownat(${q(shown)}, ${uid}, ${gid}, AT_SYMLINK_NOFOLLOW)`);
}

export function fchmod(fd: number, mode: number, shown: string): void {
  check("fchmod", fsLibc.fchmod(fd, mode & 0o7777), `fchmod(${q(shown)}, 0${(mode & 0o7777).toString(8)})`);
}

/** chmod of `name` under `dirfd`: only for entries that are not symlinks (fchmodat cannot refuse to follow). */
export function fchmodat(dirfd: number, name: string, mode: number, shown = name): void {
  check("fchmodat", fsLibc.fchmodat(dirfd, cstr(name), mode & 0o7777, 0), `fchmodat(${q(shown)}, 0${(mode & 0o7777).toString(8)})`);
}

/** Two struct timespec: atime then mtime. Times are (seconds, nanoseconds). */
function timespecs(atime: Time, mtime: Time): Buffer {
  const b = Buffer.alloc(32);
  b.writeBigInt64LE(BigInt(atime.sec), 0);
  b.writeBigInt64LE(BigInt(atime.nsec), 8);
  b.writeBigInt64LE(BigInt(mtime.sec), 16);
  b.writeBigInt64LE(BigInt(mtime.nsec), 24);
  return b;
}

export interface Time {
  sec: number;
  nsec: number;
}

export function futimens(fd: number, atime: Time, mtime: Time, shown: string): void {
  check("futimens", fsLibc.futimens(fd, timespecs(atime, mtime)), `futimens(${q(shown)})`);
}

/** Times of the entry `name` itself (a symlink's own times). */
export function lutimensat(dirfd: number, name: string, atime: Time, mtime: Time, shown = name): void {
  check("utimensat", fsLibc.utimensat(dirfd, cstr(name), timespecs(atime, mtime), AT_SYMLINK_NOFOLLOW), `utimensat(${q(shown)}, AT_SYMLINK_NOFOLLOW)`);
}

export function fsetxattr(fd: number, name: string, value: Uint8Array, shown: string): void {
  const ret = fsLibc.fsetxattr(fd, cstr(name), value.length ? value : Buffer.alloc(1), value.length, 0);
  if (ret < 0) fail("fsetxattr", `fsetxattr(${q(shown)}, ${q(name)})`);
}

/** An xattr of a path (not following a final symlink), or null when it has none of that name. For tests and inspection. */
export function lgetxattr(path: string, name: string): Buffer | null {
  const buf = Buffer.alloc(65536);
  const n = Number(fsLibc.lgetxattr(cstr(path), cstr(name), buf, buf.length));
  if (n < 0) {
    if (errno() === ERRNO.ENODATA) return null;
    fail("lgetxattr", `lgetxattr(${q(path)}, ${q(name)})`);
  }
  return buf.subarray(0, n);
}

/** The file type bits (S_IFMT) of `name` under `dirfd` without following a symlink, or null when it does not exist. */
export function typeAt(dirfd: number, name: string, shown = name): number | null {
  // Only the type: image extraction asks this of every entry, so no FileStat is made (statAt).
  const buf = Buffer.alloc(256);
  const ret = libc.syscall(SYS.statx, dirfd, cstr(name), AT_SYMLINK_NOFOLLOW, STATX_TYPE | STATX_MODE, buf);
  if (ret < 0) {
    if (errno() === ERRNO.ENOENT) return null;
    fail("statx", `statx(${q(shown)}, AT_SYMLINK_NOFOLLOW)`);
  }
  return buf.readUInt16LE(28) & S_IFMT;
}

/** mkfifo(3) at a host path (mknodat AT_FDCWD): the OCI runtime's exec.fifo. */
export function mkfifo(path: string, mode = 0o600): void {
  check("mknodat", fsLibc.mknodat(F.AT_FDCWD, cstr(path), F.S_IFIFO | (mode & 0o7777), 0), `mknodat(${q(path)}, S_IFIFO)`);
}

/** Inode number of an fd (AT_EMPTY_PATH), to tell whether a path still names the file an fd holds. */
export function inodeOf(fd: number, shown: string): bigint {
  return statAt(fd, "", F.AT_EMPTY_PATH, shown).ino;
}

/** What statx(2) says of a file: the fields nsrun's caches check. */
export interface FileStat {
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  size: number;
  ino: bigint;
  /** major:minor of the device the file is on. */
  dev: string;
  mtimeNs: bigint;
  ctimeNs: bigint;
}

const STATX_BASIC_STATS = 0x7ff;

/** statx(2) of `path` under `dirfd` ("" with AT_EMPTY_PATH: the fd itself); `flags` AT_SYMLINK_NOFOLLOW or AT_EMPTY_PATH. */
export function statAt(dirfd: number, path: string, flags: number, shown = path): FileStat {
  const buf = new Uint8Array(256);
  check("statx", libc.syscall(SYS.statx, dirfd, cstr(path), flags, STATX_BASIC_STATS, buf), `statx(${q(shown)})`);
  const v = new DataView(buf.buffer);
  const ns = (at: number) => v.getBigInt64(at, true) * 1_000_000_000n + BigInt(v.getUint32(at + 8, true));
  return {
    nlink: v.getUint32(16, true),
    uid: v.getUint32(20, true),
    gid: v.getUint32(24, true),
    mode: v.getUint16(28, true),
    ino: v.getBigUint64(32, true),
    size: Number(v.getBigUint64(40, true)),
    ctimeNs: ns(96),
    mtimeNs: ns(112),
    dev: `${v.getUint32(136, true)}:${v.getUint32(140, true)}`,
  };
}

/** access(2) with X_OK: whether this process may execute `path`. */
export function executable(path: string): boolean {
  return libc.syscall(SYS.faccessat, F.AT_FDCWD, cstr(path), F.X_OK) === 0;
}

/** Where `path` leads, every symlink followed (realpath(3): an O_PATH open, then its /proc/self/fd link), or null when it leads nowhere. */
export function realpathOrNull(path: string): string | null {
  const fd = libc.openat(F.AT_FDCWD, cstr(path), F.O_PATH | F.O_CLOEXEC, 0);
  if (fd < 0) return null;
  try {
    const buf = new Uint8Array(4097);
    const n = libc.syscall(SYS.readlinkat, F.AT_FDCWD, cstr(`/proc/self/fd/${fd}`), buf, buf.length);
    return n > 0 && n < buf.length ? nameFromBytes(buf.subarray(0, n)) : null;
  } finally {
    libc.close(fd);
  }
}

/**
 * A small regular file as a process chrooted at `root` (a symlink-free host path) would read it:
 * opened with RESOLVE_IN_ROOT, so its symlinks and `..` stay inside. At most `limit` bytes; null
 * when it is missing, unreadable or not a regular file. The rootfs is hostile: O_NONBLOCK so that a
 * FIFO planted at the name opens without waiting for a writer (it would hang nsrun), O_NOCTTY so
 * that a terminal cannot become nsrun's; then anything but a regular file is refused (as
 * core/stages/userdb.ts readDb does).
 */
export function readInRoot(root: string, path: string, limit = 65536): string | null {
  let rootFd = -1;
  let fd = -1;
  try {
    rootFd = openat2(F.AT_FDCWD, root, F.O_PATH | F.O_DIRECTORY | F.O_CLOEXEC, F.RESOLVE_NO_SYMLINKS | F.RESOLVE_NO_MAGICLINKS);
    fd = openat2(rootFd, path, F.O_RDONLY | F.O_NONBLOCK | F.O_NOCTTY | F.O_CLOEXEC, F.RESOLVE_IN_ROOT | F.RESOLVE_NO_MAGICLINKS);
    if ((statAt(fd, "", F.AT_EMPTY_PATH, path).mode & S_IFMT) !== F.S_IFREG) return null;
    const buf = new Uint8Array(limit);
    return new TextDecoder().decode(buf.subarray(0, readAt(fd, buf, 0)));
  } catch {
    return null;
  } finally {
    if (fd >= 0) libc.close(fd);
    if (rootFd >= 0) libc.close(rootFd);
  }
}

/** flock(2). With LOCK_NB, returns false when another holder has it instead of throwing. */
export function flock(fd: number, op: number, shown: string): boolean {
  if (fsLibc.flock(fd, op) === 0) return true;
  const code = errno();
  if (op & LOCK_NB && code === ERRNO.EAGAIN) return false; // EWOULDBLOCK
  throw new SyscallError("flock", `flock(${q(shown)})`, code, hintFor("flock", code));
}

/**
 * The names in the directory `dirfd` (without . and ..), read with getdents64(2) from an open file
 * description of its own: "." opened O_RDONLY under `dirfd`, which also works when `dirfd` is an
 * O_PATH fd (the cache folder's), where a dup would be unreadable (readdir(3) then reads as an empty
 * folder) and a readable one's dup would share its offset. A failed read throws, never ends the list.
 */
export function listDir(dirfd: number, shown: string): string[] {
  const fd = check("openat", libc.openat(dirfd, cstr("."), F.O_RDONLY | F.O_DIRECTORY | F.O_CLOEXEC, 0), `openat(${q(shown)}, O_DIRECTORY)`);
  const buf = new Uint8Array(32768);
  const view = new DataView(buf.buffer);
  const names: string[] = [];
  try {
    for (;;) {
      const n = check("getdents64", libc.syscall(SYS.getdents64, fd, buf, buf.length), `getdents64(${q(shown)})`);
      if (n === 0) return names;
      // struct linux_dirent64: d_ino u64, d_off s64, d_reclen u16, d_type u8, then d_name (NUL-terminated).
      for (let at = 0; at < n; at += view.getUint16(at + 16, true)) {
        const end = buf.indexOf(0, at + 19);
        const name = nameFromBytes(buf.subarray(at + 19, end));
        if (name !== "." && name !== "..") names.push(name);
      }
    }
  } finally {
    libc.close(fd);
  }
}

export { close, writeAll } from "./io";
