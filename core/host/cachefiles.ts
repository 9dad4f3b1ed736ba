// The tape cache's files (core/host/tapecache.ts): private to the caller, read and written only
// through checked fds. An entry decides the code a box runs, as the caller (as root for root): a folder
// only the caller can write, opened without following any symlink, and the folder and every file
// checked on the opened fd (owner the caller, no access for group or others, a regular file with one
// link). Files are written under a temporary name and renamed into place. Any doubt means "no entry";
// the reason goes to the tracer (--trace).
//
// Reading goes through ffi/ alone (no node:fs, about a millisecond to load): a cached box's start
// reads here (core/host/startrecord.ts).
import * as F from "../../ffi/flags";
import { AT_SYMLINK_NOFOLLOW, close as closeFd, type FileStat, listDir, openat, openat2, renameat, S_IFDIR, S_IFMT, statAt, unlinkat, writeAll } from "../../ffi/fs";
import { readAt } from "../../ffi/io";
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
  const s = statAt(F.AT_FDCWD, "/proc/self/exe", 0);
  return (buildId = [s.dev, s.ino, s.size, s.mtimeNs, s.ctimeNs].join(":"));
}

export const sha256 = (data: string | Uint8Array): string => new Bun.CryptoHasher("sha256").update(data).digest("hex");

/** A JSON cache file's bytes: the SHA-256 of the JSON in hex, a newline, then the JSON. */
export function sealedJson(value: unknown): Uint8Array {
  const body = JSON.stringify(value);
  return new TextEncoder().encode(`${sha256(body)}\n${body}`);
}

/**
 * What a JSON cache file of one command line holds: null when its sum does not match (corrupt,
 * truncated), it is no JSON, or it names another format or key (a file of another layout, or
 * renamed from another line's).
 */
export function unsealFor(bytes: Uint8Array, format: string, key: string): { format: string; key: string } | null {
  const text = new TextDecoder().decode(bytes);
  const nl = text.indexOf("\n");
  if (nl !== 64 || sha256(text.slice(nl + 1)) !== text.slice(0, nl)) return null;
  let value: { format?: unknown; key?: unknown } | null;
  try {
    value = JSON.parse(text.slice(nl + 1));
  } catch {
    return null;
  }
  return value?.format === format && value.key === key ? (value as { format: string; key: string }) : null;
}

/**
 * Where the cache file of one command line lives ("PREFIX-KEY" in the cache folder), null without
 * one (run from source, or no cache folder). The key is a SHA-256 of the file's format, nsrun's
 * build, the command line (after `run`), the cwd, and the caller's ids and groups.
 */
export function commandLineFile(prefix: string, format: string, args: string[], cwd: string): { folder: string; name: string; key: string } | null {
  const id = build();
  const folder = id === null ? null : cacheFolder();
  if (id === null || folder === null) return null;
  const ids = [process.getuid?.(), process.getgid?.(), process.geteuid?.(), process.getegid?.(), process.getgroups?.()];
  const key = sha256(JSON.stringify([format, id, process.arch, args, cwd, ids]));
  return { folder, name: `${prefix}-${key}`, key };
}

/** The cache folder, opened without following a symlink and checked on the fd: null when it may not be used. */
function openFolder(folder: string, create: boolean, trace: Tracer, what: string): number | null {
  let fd: number;
  try {
    if (create) (require("node:fs") as typeof import("node:fs")).mkdirSync(folder, { recursive: true, mode: 0o700 });
    fd = openat2(F.AT_FDCWD, folder, F.O_PATH | F.O_DIRECTORY, F.RESOLVE_NO_SYMLINKS | F.RESOLVE_NO_MAGICLINKS);
  } catch (e) {
    if (!create && (e as { errno?: number }).errno === 2) trace?.(`${what}: miss: no cache folder ${JSON.stringify(folder)}`);
    else trace?.(`${what}: not used: ${(e as Error).message}`);
    return null;
  }
  const problem = ownProblem(fd, true);
  if (problem) {
    closeFd(fd);
    trace?.(`${what}: not used: the folder ${JSON.stringify(folder)} ${problem}`);
    return null;
  }
  return fd;
}

/** Why an opened cache folder or file may not be trusted, or null. */
function ownProblem(fd: number, folder: boolean, s = statAt(fd, "", F.AT_EMPTY_PATH, "cache")): string | null {
  const uid = process.geteuid?.() ?? 0;
  if ((s.mode & S_IFMT) !== (folder ? S_IFDIR : F.S_IFREG)) return `is not a ${folder ? "folder" : "regular file"}`;
  if (s.uid !== uid) return `is owned by uid ${s.uid}, not by you (${uid})`;
  if (s.mode & 0o077) return `has mode ${(s.mode & 0o7777).toString(8).padStart(4, "0")}: group or others have access (want ${folder ? "0700" : "0600"})`;
  if (!folder && s.nlink !== 1) return `has ${s.nlink} links`;
  return null;
}

/** A cache file's bytes, or null (missing, or not to be trusted: the tracer says why). `what` names it in the trace. */
export function readCacheFile(folder: string, name: string, trace: Tracer, what = "cache"): Uint8Array | null {
  const dir = openFolder(folder, false, trace, what);
  if (dir === null) return null;
  let fd = -1;
  try {
    try {
      fd = openat2(dir, name, F.O_RDONLY | F.O_NOFOLLOW, F.RESOLVE_BENEATH | F.RESOLVE_NO_SYMLINKS | F.RESOLVE_NO_MAGICLINKS);
    } catch (e) {
      trace?.((e as { errno?: number }).errno === 2 ? `${what}: miss` : `${what}: not used: ${(e as Error).message}`);
      return null;
    }
    const stat: FileStat = statAt(fd, "", F.AT_EMPTY_PATH, `${folder}/${name}`);
    const problem = ownProblem(fd, false, stat);
    if (problem) {
      trace?.(`${what}: not used: ${JSON.stringify(`${folder}/${name}`)} ${problem}`);
      return null;
    }
    const bytes = new Uint8Array(stat.size);
    return bytes.subarray(0, readAt(fd, bytes, 0));
  } finally {
    if (fd >= 0) closeFd(fd);
    closeFd(dir);
  }
}

/** Write a cache file atomically (a private temporary file renamed into place), then keep at most `keep` files matching `kind`. */
export function writeCacheFile(folder: string, name: string, bytes: Uint8Array, trace: Tracer, kind: RegExp, keep: number, what = "cache"): boolean {
  const dir = openFolder(folder, true, trace, what);
  if (dir === null) return false;
  const tmp = `.${name}.${process.pid}.tmp`;
  let fd = -1;
  try {
    fd = openat(dir, tmp, F.O_WRONLY | F.O_CREAT | F.O_EXCL | F.O_NOFOLLOW, 0o600, `${folder}/${tmp}`);
    writeAll(fd, bytes, `${folder}/${tmp}`);
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
  const names = listDir(dir, folder).filter((f) => kind.test(f));
  if (names.length <= keep) return;
  const age = (f: string) => {
    try {
      return statAt(dir, f, AT_SYMLINK_NOFOLLOW).mtimeNs;
    } catch {
      return 0n;
    }
  };
  const oldest = names.map((f) => [age(f), f] as const).sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  for (const [, f] of oldest.slice(0, names.length - keep)) {
    try {
      unlinkat(dir, f, false);
    } catch {
      // gone already (another nsrun pruned it)
    }
  }
}
