// Applying layers to an image root: the one place that writes an image's files.
//
// Nothing here builds a host path. The image root is an fd; each entry's parent directory is
// resolved with openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS) from that fd, so a `..` or a
// symlink (`evil -> /`, `-> ../../..`) in the layer lands inside the image, as it would for the
// box itself after pivot_root. The last component is made with *at() calls on the parent fd that
// never follow a symlink there. A hard link's target is resolved the same way, inside the image.
//
// The extractor knows nothing about who runs it: it chowns only when told to keep owners (root).
// An ordinary user's extractor can instead record the owners it could not give (recordOwners):
// core/image/owners.ts then gives them inside a user namespace with the user's subordinate ids.
import { readlinkSync } from "node:fs";
import { ERRNO } from "../../ffi/errno";
import * as F from "../../ffi/flags";
import * as fs from "../../ffi/fs";
import { nameFromBytes, q } from "../../ffi/libc";
import { StageError } from "../errors";
import { decompress } from "./compression";
import { readTar, TarError, type TarEntry, type TarMember } from "./tar";

export interface ExtractOptions {
  /** chown each entry to the layer's uid/gid (root, or a user namespace with subordinate ids). */
  keepOwners: boolean;
  /** OCI/docker layer semantics: `.wh.NAME` deletes NAME, `.wh..wh..opq` empties a directory. */
  whiteouts: boolean;
  /**
   * Without keepOwners: note each entry whose owner is not 0:0, or whose file capability the kernel
   * refused, under its real path in the image (the last layer's word; removed paths dropped).
   */
  recordOwners?: boolean;
}

/** What an ordinary user's extraction could not give an entry, for core/image/owners.ts to give later. */
export interface OwnerRecord {
  uid: number;
  gid: number;
  /** The mode again, when it has setuid or setgid (chown clears them); null otherwise. */
  mode: number | null;
  /** The security.capability value the kernel refused outside a user namespace. */
  capability: Uint8Array | null;
}

/** Records by real path inside the image ("" is the root, "etc/passwd" a file). */
export type Owners = Map<string, OwnerRecord>;

export const CAPABILITY_XATTR = "security.capability";

export interface ExtractStats {
  entries: number;
  bytes: number;
  /** Character and block devices are never created in an image. */
  devicesSkipped: number;
  /** xattrs the kernel refused (security.capability as an ordinary user, trusted.*) or that nsrun drops (overlay's own). */
  xattrsSkipped: Record<string, number>;
  /** Names that were absolute or climbed with `..`, kept inside the image. */
  namesContained: number;
  whiteouts: number;
}

interface DirMeta {
  mode: number;
  mtime: fs.Time | null;
  atime: fs.Time | null;
}

const WHITEOUT = ".wh.";
const OPAQUE = ".wh..wh..opq";
/** overlayfs reads these on a lower layer; an image must not be able to set them on its own tree. */
const DROPPED_XATTRS = /^(trusted|user)\.overlay\./;
const REFUSED_XATTR_ERRNOS = [ERRNO.EPERM, ERRNO.EACCES, ERRNO.EOPNOTSUPP, ERRNO.E2BIG, ERRNO.ERANGE];

/** A layer entry's name as components inside the image: "/a/../../b/./c" -> ["b", "c"]; [] is the root. */
export function cleanName(name: string): { parts: string[]; contained: boolean } {
  const parts: string[] = [];
  let contained = name.startsWith("/");
  for (const c of name.split("/")) {
    if (c === "" || c === ".") continue;
    if (c === "..") {
      if (parts.length === 0) contained = true;
      else parts.pop();
      continue;
    }
    parts.push(c);
  }
  return { parts, contained };
}

export class Extractor {
  readonly stats: ExtractStats = { entries: 0, bytes: 0, devicesSkipped: 0, xattrsSkipped: {}, namesContained: 0, whiteouts: 0 };
  /** Directory modes and times, set last (deepest first): a 0555 directory must stay writable while layers fill it. */
  private readonly dirs = new Map<string, DirMeta>();
  /** Paths the current layer made: its whiteouts and opaque markers remove only what lower layers made. */
  private current = new Set<string>();
  /**
   * The last parent directory resolved. It stays right while entries keep that parent: an entry
   * changes only its own name, a child of the parent, never what the parent's path resolves to.
   */
  private cached: { path: string; fd: number; real: string } | null = null;
  /** With recordOwners: what core/image/owners.ts must still give, by real path inside the image. */
  readonly owners: Owners = new Map();
  /** The image root as the host names it, to turn an fd into its real path inside the image. */
  private readonly rootPath: string | null;
  /** The file capability the kernel refused on the entry being made, if any. */
  private refusedCap: Uint8Array | null = null;
  /** A hard link just made: its target's record (null: none); undefined: no link made. */
  private linked: OwnerRecord | null | undefined = undefined;

  constructor(
    private readonly rootfd: number,
    private readonly opts: ExtractOptions,
  ) {
    this.rootPath = opts.recordOwners && !opts.keepOwners ? nameFromBytes(readlinkSync(`/proc/self/fd/${rootfd}`, { encoding: "buffer" })) : null;
  }

  /** Apply one layer's (decompressed) tar stream. `label` names it in errors. */
  async apply(members: AsyncIterable<TarMember>, label: string): Promise<void> {
    this.current = new Set();
    const it = members[Symbol.asyncIterator]();
    try {
      for (;;) {
        let next: IteratorResult<TarMember>;
        try {
          next = await it.next();
        } catch (e) {
          // The stream itself failed (its digest, its compression, its tar headers): those errors
          // name the layer already, and no entry is to blame.
          if (e instanceof StageError) throw e;
          if (e instanceof TarError) throw new StageError("image", `${label}: ${e.message}`);
          throw new StageError("image", `${label}: ${(e as Error).message}`);
        }
        if (next.done) break;
        const name = next.value.entry.path;
        this.stats.entries++;
        try {
          await this.entry(next.value);
        } catch (e) {
          const what = `${label}: ${q(name)}`;
          if (e instanceof InputError) throw e; // the stream failed while this entry's content was read
          if (e instanceof StageError) throw new StageError(e.stage, `${what}: ${e.message}`, e.hint);
          if (e instanceof TarError) throw new StageError("image", `${label}: ${e.message}`);
          throw new StageError("image", `${what}: ${(e as Error).message}`, (e as { hint?: string }).hint);
        }
      }
    } finally {
      this.dropCache();
    }
  }

  /** Set the directories' deferred modes and times, deepest first. Call once, after the last layer. */
  finish(): void {
    const paths = [...this.dirs.keys()].sort((a, b) => depth(b) - depth(a));
    for (const path of paths) {
      const meta = this.dirs.get(path) as DirMeta;
      let fd: number;
      try {
        fd = fs.openat2(this.rootfd, path === "" ? "." : path, F.O_RDONLY | F.O_DIRECTORY | F.O_NOFOLLOW, fs.IN_ROOT, `/${path}`);
      } catch (e) {
        if (fs.isErrno(e, ERRNO.ENOENT, ERRNO.ENOTDIR, ERRNO.ELOOP)) continue; // removed or replaced by a later layer
        throw e;
      }
      try {
        fs.fchmod(fd, meta.mode, `/${path}`);
        if (meta.mtime) fs.futimens(fd, meta.atime ?? meta.mtime, meta.mtime, `/${path}`);
      } finally {
        fs.close(fd);
      }
    }
    this.dirs.clear();
  }

  private async entry(m: TarMember): Promise<void> {
    const e = m.entry;
    if (e.path.includes("\0") || e.linkname.includes("\0")) throw new StageError("image", "a name contains NUL");
    const { parts, contained } = cleanName(e.path);
    if (contained) this.stats.namesContained++;
    const path = parts.join("/");
    if (parts.length === 0) return this.rootEntry(e);
    const base = parts[parts.length - 1];
    const parentPath = parts.slice(0, -1).join("/");
    if (this.opts.whiteouts && base.startsWith(WHITEOUT)) return this.whiteout(parentPath, base);
    const pfd = this.parent(parentPath);
    this.current.add(path);
    const existing = fs.typeAt(pfd, base, path);
    const key = this.childKey(this.cached?.real ?? "", base);
    this.refusedCap = null;
    this.linked = undefined;
    await this.make(m, pfd, base, path, existing);
    if (this.rootPath !== null) this.note(key, e, existing);
  }

  /** Make one entry (neither the root nor a whiteout) as `base` in the directory `pfd`, replacing what is there. */
  private async make(m: TarMember, pfd: number, base: string, path: string, existing: number | null): Promise<void> {
    const e = m.entry;
    switch (e.type) {
      case "dir": {
        if (existing !== null && existing !== fs.S_IFDIR) this.remove(pfd, base, existing, path);
        if (existing !== fs.S_IFDIR) fs.mkdirat(pfd, base, 0o700, path);
        const fd = fs.openat(pfd, base, F.O_RDONLY | F.O_DIRECTORY | F.O_NOFOLLOW, 0, path);
        try {
          if (this.opts.keepOwners) fs.fchown(fd, e.uid, e.gid, path);
          this.xattrs(fd, e, path);
        } finally {
          fs.close(fd);
        }
        this.dirs.set(path, { mode: e.mode, mtime: e.mtime, atime: e.atime });
        return;
      }
      case "file": {
        if (existing !== null) this.remove(pfd, base, existing, path);
        const fd = fs.openat(pfd, base, F.O_WRONLY | F.O_CREAT | F.O_EXCL | F.O_NOFOLLOW | F.O_NOCTTY, 0o600, path);
        try {
          for await (const piece of m.body()) {
            fs.writeAll(fd, piece, path);
            this.stats.bytes += piece.length;
          }
          // This order matters: chown clears setuid bits and security.capability, so mode and xattrs come after it.
          if (this.opts.keepOwners) fs.fchown(fd, e.uid, e.gid, path);
          fs.fchmod(fd, e.mode, path);
          this.xattrs(fd, e, path);
          fs.futimens(fd, e.atime ?? e.mtime, e.mtime, path);
        } finally {
          fs.close(fd);
        }
        return;
      }
      case "symlink": {
        if (existing !== null) this.remove(pfd, base, existing, path);
        fs.symlinkat(e.linkname, pfd, base, path);
        if (this.opts.keepOwners) fs.lchownat(pfd, base, e.uid, e.gid, path);
        if (e.xattrs.size) this.skipXattr("(on a symlink)", e.xattrs.size);
        fs.lutimensat(pfd, base, e.atime ?? e.mtime, e.mtime, path);
        return;
      }
      case "hardlink": {
        const target = cleanName(e.linkname).parts;
        if (target.length === 0) throw new StageError("image", `hard link to ${q(e.linkname)}: not a file`);
        if (target.join("/") === path) return; // a link to itself: already there
        if (existing !== null) this.remove(pfd, base, existing, path);
        try {
          const tfd = fs.openat2(this.rootfd, `/${target.slice(0, -1).join("/")}`, F.O_PATH | F.O_DIRECTORY, fs.IN_ROOT, `/${target.join("/")}`);
          try {
            fs.linkat(tfd, target[target.length - 1], pfd, base, `linkat(${q(`/${target.join("/")}`)}, ${q(path)})`);
            // The link is the target's file: what owners.ts must give the target, it gives this name too.
            if (this.rootPath !== null) this.linked = this.owners.get(this.childKey(this.realOf(tfd), target[target.length - 1])) ?? null;
          } finally {
            fs.close(tfd);
          }
        } catch (err) {
          // The target is looked up inside the image: a link to a file outside finds nothing there.
          throw new StageError("image", `hard link to ${q(e.linkname)}: ${(err as Error).message}`, (err as { hint?: string }).hint);
        }
        return;
      }
      case "fifo": {
        if (existing !== null) this.remove(pfd, base, existing, path);
        fs.mkfifoat(pfd, base, 0o600, path);
        if (this.opts.keepOwners) fs.lchownat(pfd, base, e.uid, e.gid, path);
        fs.fchmodat(pfd, base, e.mode, path);
        fs.lutimensat(pfd, base, e.atime ?? e.mtime, e.mtime, path);
        return;
      }
      case "chardev":
      case "blockdev":
        // Never created: a box gets its own /dev. What the layer replaced is gone all the same.
        if (existing !== null) this.remove(pfd, base, existing, path);
        this.stats.devicesSkipped++;
        return;
    }
  }

  /** "./" in a layer: the image root's own owner, mode and times. */
  private rootEntry(e: TarEntry): void {
    if (e.type !== "dir") throw new StageError("image", `the image root must be a directory, not a ${e.type}`);
    const fd = fs.openat2(this.rootfd, ".", F.O_RDONLY | F.O_DIRECTORY, fs.IN_ROOT, "/");
    this.refusedCap = null;
    try {
      if (this.opts.keepOwners) fs.fchown(fd, e.uid, e.gid, "/");
      this.xattrs(fd, e, "/");
    } finally {
      fs.close(fd);
    }
    this.dirs.set("", { mode: e.mode, mtime: e.mtime, atime: e.atime });
    if (this.rootPath !== null) this.note("", e, fs.S_IFDIR);
  }

  private whiteout(parentPath: string, base: string): void {
    this.stats.whiteouts++;
    let pfd: number;
    try {
      pfd = this.parent(parentPath, false);
    } catch (e) {
      if (fs.isErrno(e, ERRNO.ENOENT, ERRNO.ENOTDIR)) return; // nothing below to hide
      throw e;
    }
    const prefix = parentPath ? `${parentPath}/` : "";
    if (base === OPAQUE) {
      const dirfd = fs.openat(pfd, ".", F.O_RDONLY | F.O_DIRECTORY, 0, parentPath || "/");
      let names: string[];
      try {
        names = fs.listDir(dirfd, parentPath || "/");
      } finally {
        fs.close(dirfd);
      }
      for (const name of names) {
        if (this.current.has(prefix + name)) continue; // this layer's own entries stay
        const t = fs.typeAt(pfd, name, prefix + name);
        if (t !== null) this.remove(pfd, name, t, prefix + name);
        if (t !== null) this.forget(name, t);
      }
      return;
    }
    const name = base.slice(WHITEOUT.length);
    // ".wh..wh.plnk" and the like are aufs's own bookkeeping, not whiteouts of a file.
    if (name === "" || name === "." || name === ".." || name.startsWith(WHITEOUT)) return;
    if (this.current.has(prefix + name)) return;
    const t = fs.typeAt(pfd, name, prefix + name);
    if (t !== null) this.remove(pfd, name, t, prefix + name);
    if (t !== null) this.forget(name, t);
  }

  /** The parent directory of an entry as an O_PATH fd, made (0755) where the layer did not list it. */
  private parent(path: string, create = true): number {
    if (this.cached?.path === path) return this.cached.fd;
    this.dropCache();
    let fd: number;
    try {
      fd = fs.openat2(this.rootfd, `/${path}`, F.O_PATH | F.O_DIRECTORY, fs.IN_ROOT, `/${path}`);
    } catch (e) {
      if (!create || !fs.isErrno(e, ERRNO.ENOENT)) throw e;
      fd = this.makeParents(path);
    }
    this.cached = { path, fd, real: this.rootPath === null ? path : this.realOf(fd) };
    return fd;
  }

  // ---- owners to give later (recordOwners) ------------------------------------------------

  /**
   * Where an fd really is inside the image, "" for the root. A name's parent may have been reached
   * through a symlink that a later layer points elsewhere: owners.ts must find this very file, so
   * records are keyed by real paths, never by the names the layer used.
   */
  private realOf(fd: number): string {
    const at = nameFromBytes(readlinkSync(`/proc/self/fd/${fd}`, { encoding: "buffer" }));
    const root = this.rootPath as string;
    if (at === root) return "";
    if (!at.startsWith(`${root}/`)) throw new StageError("image", `${q(at)} is not inside the image ${q(root)}`);
    return at.slice(root.length + 1);
  }

  private childKey(parentKey: string, name: string): string {
    return parentKey ? `${parentKey}/${name}` : name;
  }

  /** After an entry is made: what owners.ts must give it, the last layer's word (nothing when 0:0 and every xattr kept). */
  private note(key: string, e: TarEntry, existing: number | null): void {
    if (e.type === "hardlink" && this.linked === undefined) return; // a link to itself: unchanged
    // What the entry replaced is gone, a directory with everything under it.
    if (existing !== null && !(e.type === "dir" && existing === fs.S_IFDIR)) this.forgetKey(key, existing);
    if (e.type === "chardev" || e.type === "blockdev") return;
    if (e.type === "hardlink") {
      if (this.linked) this.owners.set(key, this.linked);
      return;
    }
    if (e.uid === 0 && e.gid === 0 && this.refusedCap === null) {
      this.owners.delete(key);
      return;
    }
    const setid = e.type !== "symlink" && (e.mode & (F.S_ISUID | F.S_ISGID)) !== 0;
    this.owners.set(key, { uid: e.uid, gid: e.gid, mode: setid ? e.mode : null, capability: this.refusedCap });
  }

  /** A whiteout removed `name` of the cached parent. */
  private forget(name: string, type: number): void {
    if (this.rootPath !== null) this.forgetKey(this.childKey(this.cached?.real ?? "", name), type);
  }

  private forgetKey(key: string, type: number): void {
    this.owners.delete(key);
    if (type !== fs.S_IFDIR) return;
    const below = `${key}/`;
    for (const k of this.owners.keys()) if (k.startsWith(below)) this.owners.delete(k);
  }

  private makeParents(path: string): number {
    const parts = path.split("/");
    let fd = fs.openat2(this.rootfd, "/", F.O_PATH | F.O_DIRECTORY, fs.IN_ROOT, "/");
    try {
      for (let i = 0; i < parts.length; i++) {
        const sub = parts.slice(0, i + 1).join("/");
        try {
          fs.mkdirat(fd, parts[i], 0o700, sub);
          this.dirs.set(sub, { mode: 0o755, mtime: null, atime: null });
          this.current.add(sub);
        } catch (e) {
          if (!fs.isErrno(e, ERRNO.EEXIST)) throw e; // there already (maybe a symlink, which the next openat2 resolves inside)
        }
        const next = fs.openat2(this.rootfd, `/${sub}`, F.O_PATH | F.O_DIRECTORY, fs.IN_ROOT, `/${sub}`);
        fs.close(fd);
        fd = next;
      }
      return fd;
    } catch (e) {
      fs.close(fd);
      throw e;
    }
  }

  private dropCache(): void {
    if (this.cached) fs.close(this.cached.fd);
    this.cached = null;
  }

  /** Remove `name` under `pfd`, a whole tree if it is a directory. */
  private remove(pfd: number, name: string, type: number, shown: string): void {
    if (type !== fs.S_IFDIR) return fs.unlinkat(pfd, name, false, shown);
    const dirfd = fs.openat(pfd, name, F.O_RDONLY | F.O_DIRECTORY | F.O_NOFOLLOW, 0, shown);
    try {
      for (const child of fs.listDir(dirfd, shown)) {
        const t = fs.typeAt(dirfd, child, `${shown}/${child}`);
        if (t !== null) this.remove(dirfd, child, t, `${shown}/${child}`);
      }
    } finally {
      fs.close(dirfd);
    }
    fs.unlinkat(pfd, name, true, shown);
  }

  private xattrs(fd: number, e: TarEntry, shown: string): void {
    for (const [name, value] of e.xattrs) {
      if (DROPPED_XATTRS.test(name)) {
        this.skipXattr(name, 1);
        continue;
      }
      try {
        fs.fsetxattr(fd, name, value, shown);
      } catch (err) {
        if (!fs.isErrno(err, ...REFUSED_XATTR_ERRNOS)) throw err;
        this.skipXattr(name, 1);
        // A user namespace of the user's may set it (a v3 capability, bound to that namespace's root).
        if (name === CAPABILITY_XATTR && this.rootPath !== null) this.refusedCap = value;
      }
    }
  }

  private skipXattr(name: string, n: number): void {
    this.stats.xattrsSkipped[name] = (this.stats.xattrsSkipped[name] ?? 0) + n;
  }
}

const depth = (path: string) => (path === "" ? 0 : path.split("/").length);

/** A pass-through that feeds every chunk to a hash and a byte counter. */
export async function* tap(input: AsyncIterable<Uint8Array>, hash: Bun.CryptoHasher | null, onBytes?: (n: number) => void): AsyncGenerator<Uint8Array> {
  for await (const chunk of input) {
    hash?.update(chunk);
    onBytes?.(chunk.length);
    yield chunk;
  }
}

export interface LayerSource {
  /** How errors and progress name it: `layer 2/3 sha256:ab12...` or `"rootfs.tar.xz"`. */
  label: string;
  /** The (maybe compressed) bytes. */
  open(): AsyncIterable<Uint8Array>;
  /** sha256 of the uncompressed tar that the image config lists (rootfs.diff_ids), checked when given. */
  diffId?: string;
}

/**
 * Apply layers in order to the image root `rootfd`, bottom first, and set directory metadata last.
 * This is the whole of an unpack: it can run unchanged in a user namespace with mapped owners.
 */
export async function extractLayers(
  rootfd: number,
  layers: LayerSource[],
  opts: ExtractOptions,
  onLayer?: (label: string, stats: ExtractStats) => void,
): Promise<{ stats: ExtractStats; diffIds: string[]; owners: Owners }> {
  const x = new Extractor(rootfd, opts);
  const diffIds: string[] = [];
  for (const layer of layers) {
    const hash = new Bun.CryptoHasher("sha256");
    await x.apply(readTar(tap(asInput(decompress(layer.open(), layer.label), layer.label), hash)), layer.label);
    const got = `sha256:${hash.digest("hex")}`;
    if (layer.diffId && got !== layer.diffId) throw new StageError("image", `${layer.label}: its uncompressed content is ${got}, but the image config says ${layer.diffId}`);
    diffIds.push(got);
    onLayer?.(layer.label, x.stats);
  }
  x.finish();
  return { stats: x.stats, diffIds, owners: x.owners };
}

/** An error of a layer's input stream (digest, compression, a dropped read): it names the layer already. */
class InputError extends StageError {}

/** The layer's bytes, with their errors marked as the input's (InputError), so none is blamed on the entry being read. */
async function* asInput(input: AsyncIterable<Uint8Array>, label: string): AsyncGenerator<Uint8Array> {
  try {
    yield* input;
  } catch (e) {
    if (e instanceof StageError) throw new InputError(e.stage, e.message, e.hint);
    throw new InputError("image", `${label}: ${(e as Error).message}`);
  }
}
