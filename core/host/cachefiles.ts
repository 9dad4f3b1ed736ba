// The tape cache's files (core/host/tapecache.ts): private to the caller, read and written only
// through checked fds. An entry decides the code a box runs, as the caller (as root for root): a folder
// only the caller can write, opened without following any symlink, and the folder and every file
// checked on the opened fd (owner the caller, no access for group or others, a regular file with one
// link). Files are written under a temporary name and renamed into place. Any doubt means "no entry";
// the reason goes to the tracer (--trace).
import { fstatSync, lstatSync, mkdirSync, readdirSync, readSync, statSync, writeSync } from "node:fs";
import * as F from "../../ffi/flags";
import { close as closeFd, openat, openat2, renameat, unlinkat } from "../../ffi/fs";
import type { Tracer } from "../pipeline";


/** The cache folder of this user: null when there is none to use. */
export function cacheFolder(env = process.env, uid = process.geteuid?.() ?? 0): string | null {
  const xdg = env.XDG_CACHE_HOME;
  if (xdg?.startsWith("/")) return `${xdg}/nsrun`;
  if (uid === 0) return "/run/nsrun-cache";
  return env.HOME?.startsWith("/") ? `${env.HOME}/.cache/nsrun` : null;
}

let buildId: string | null | undefined;

/**
 * nsrun's build: the identity of its executable (device, inode, size, mtime, ctime). Any new build
 * is a new file, or the same file with a new ctime. null when running from source (no executable
 * of nsrun's own to identify): then only a process's memory caches.
 */
export function build(): string | null {
  if (buildId !== undefined) return buildId;
  if (!Bun.main.startsWith("/$bunfs/")) return (buildId = null);
  const s = statSync("/proc/self/exe", { bigint: true });
  return (buildId = [s.dev, s.ino, s.size, s.mtimeNs, s.ctimeNs].join(":"));
}

export const sha256 = (data: string | Uint8Array): string => new Bun.CryptoHasher("sha256").update(data).digest("hex");

/** The cache folder, opened without following a symlink and checked on the fd: null when it may not be used. */
function openFolder(folder: string, create: boolean, trace: Tracer): number | null {
  let fd: number;
  try {
    if (create) mkdirSync(folder, { recursive: true, mode: 0o700 });
    fd = openat2(F.AT_FDCWD, folder, F.O_PATH | F.O_DIRECTORY, F.RESOLVE_NO_SYMLINKS | F.RESOLVE_NO_MAGICLINKS);
  } catch (e) {
    if (!create && (e as { errno?: number }).errno === 2) trace?.(`cache: miss: no cache folder ${JSON.stringify(folder)}`);
    else trace?.(`cache: not used: ${(e as Error).message}`);
    return null;
  }
  const problem = ownProblem(fd, true);
  if (problem) {
    closeFd(fd);
    trace?.(`cache: not used: the folder ${JSON.stringify(folder)} ${problem}`);
    return null;
  }
  return fd;
}

/** Why an opened cache folder or file may not be trusted, or null. */
function ownProblem(fd: number, folder: boolean, s = fstatSync(fd)): string | null {
  const uid = process.geteuid?.() ?? 0;
  if (folder ? !s.isDirectory() : !s.isFile()) return `is not a ${folder ? "folder" : "regular file"}`;
  if (s.uid !== uid) return `is owned by uid ${s.uid}, not by you (${uid})`;
  if (s.mode & 0o077) return `has mode ${(s.mode & 0o7777).toString(8).padStart(4, "0")}: group or others have access (want ${folder ? "0700" : "0600"})`;
  if (!folder && s.nlink !== 1) return `has ${s.nlink} links`;
  return null;
}

/** A cache file's bytes, or null (missing, or not to be trusted: the tracer says why). `what` names it in the trace. */
export function readCacheFile(folder: string, name: string, trace: Tracer, what = "cache"): Uint8Array | null {
  const dir = openFolder(folder, false, trace);
  if (dir === null) return null;
  let fd = -1;
  try {
    try {
      fd = openat2(dir, name, F.O_RDONLY | F.O_NOFOLLOW, F.RESOLVE_BENEATH | F.RESOLVE_NO_SYMLINKS | F.RESOLVE_NO_MAGICLINKS);
    } catch (e) {
      trace?.((e as { errno?: number }).errno === 2 ? `${what}: miss` : `${what}: not used: ${(e as Error).message}`);
      return null;
    }
    const stat = fstatSync(fd);
    const problem = ownProblem(fd, false, stat);
    if (problem) {
      trace?.(`${what}: not used: ${JSON.stringify(`${folder}/${name}`)} ${problem}`);
      return null;
    }
    const size = stat.size;
    const bytes = new Uint8Array(size);
    let got = 0;
    while (got < size) {
      const n = readSync(fd, bytes, got, size - got, got);
      if (n <= 0) break;
      got += n;
    }
    return got === size ? bytes : bytes.subarray(0, got);
  } finally {
    if (fd >= 0) closeFd(fd);
    closeFd(dir);
  }
}

/** Write a cache file atomically (a private temporary file renamed into place), then keep at most `keep` files matching `kind`. */
export function writeCacheFile(folder: string, name: string, bytes: Uint8Array, trace: Tracer, kind: RegExp, keep: number, what = "cache"): boolean {
  const dir = openFolder(folder, true, trace);
  if (dir === null) return false;
  const tmp = `.${name}.${process.pid}.tmp`;
  let fd = -1;
  try {
    fd = openat(dir, tmp, F.O_WRONLY | F.O_CREAT | F.O_EXCL | F.O_NOFOLLOW, 0o600, `${folder}/${tmp}`);
    let off = 0;
    while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off);
    closeFd(fd);
    fd = -1;
    renameat(dir, tmp, dir, name, `${folder}/${name}`);
    trace?.(`${what}: stored ${folder}/${name}`);
    prune(dir, folder, kind, keep);
    return true;
  } catch (e) {
    trace?.(`${what}: not stored: ${(e as Error).message}`);
    if (fd >= 0) closeFd(fd);
    try {
      unlinkat(dir, tmp, false);
    } catch {
      // not made, or renamed already
    }
    return false;
  } finally {
    closeFd(dir);
  }
}

/** At most `keep` files of one kind: beyond, the least recently written go. */
function prune(dir: number, folder: string, kind: RegExp, keep: number): void {
  const names = readdirSync(folder).filter((f) => kind.test(f));
  if (names.length <= keep) return;
  const age = (f: string) => {
    try {
      return lstatSync(`${folder}/${f}`).mtimeMs;
    } catch {
      return 0;
    }
  };
  const oldest = names.map((f) => [age(f), f] as const).sort((a, b) => a[0] - b[0]);
  for (const [, f] of oldest.slice(0, names.length - keep)) {
    try {
      unlinkat(dir, f, false);
    } catch {
      // gone already (another nsrun pruned it)
    }
  }
}
