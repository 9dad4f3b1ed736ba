// The local image store: unpacked images by name, and blobs by digest.
//
//   STORE/lock                     flock'd (exclusive) by whoever changes the store, briefly
//   STORE/blobs/sha256/HEX         pulled blobs (layers, configs), shared between images
//   STORE/blobs/sha256/HEX.partial a download in progress or interrupted; flock'd by its downloader
//   STORE/images/ID/image.json     one image: its name, source, config and layers (ID: hash of the name)
//   STORE/images/ID/rootfs/        its unpacked root filesystem, every layer applied
//   STORE/images/ID/in-use         flock'd (shared) by each box that runs on the image
//   STORE/tmp/X/, STORE/tmp/X.lock work in progress, flock'd by its owner; stale ones are removed
//
// An import or pull builds the image in tmp/ and renames it into images/ only when complete, so an
// interrupted one leaves nothing half-visible. STORE is $NSRUN_STORE, else /var/lib/nsrun for root,
// else $XDG_DATA_HOME/nsrun (~/.local/share/nsrun).
import { closeSync, existsSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmdirSync, statSync, chmodSync, unlinkSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import * as fs from "../../ffi/fs";
import { q } from "../../ffi/libc";
import { ConfigError, StageError } from "../errors";
import type { IdMapPlan, IdRange } from "../stages/userns";
import type { OwnersRecord } from "./owners";

export interface ImageConfig {
  env: string[];
  entrypoint: string[];
  cmd: string[];
  workingDir?: string;
  user?: string;
}

export interface LayerRecord {
  /** The blob's digest (compressed, as the manifest lists it); for a rootfs tarball, its file's sha256. */
  digest: string;
  /** sha256 of the uncompressed tar. */
  diffId: string;
  size: number;
}

export interface ImageRecord {
  name: string;
  /** The config blob's digest, or for a rootfs tarball the tarball's. */
  id: string;
  source: { kind: "rootfs" | "oci" | "docker-archive" | "registry"; ref: string };
  architecture: string;
  os: string;
  /** When the image was made (its config's `created`), if it says. */
  created?: string;
  /** When it came into this store. */
  added: string;
  config: ImageConfig;
  layers: LayerRecord[];
  /** Blobs of this image kept in STORE/blobs (pulled images), which prune leaves alone. */
  blobs: string[];
  /**
   * "kept": the layers' owners (root's import); { uid }: that user owns every file; { map:
   * "subordinate" }: the layers' owners through the user's subordinate ids, as these maps say (the
   * maps of a rootless box with [user_namespace] mode = "auto").
   */
  owners: OwnersRecord;
  /** Bytes of file content unpacked. */
  size: number;
  devicesSkipped: number;
  xattrsSkipped: Record<string, number>;
  /** Entries whose names were absolute or climbed with `..`, kept inside the image. */
  namesContained: number;
}

export interface ResolvedImage {
  /** Absolute directory of the unpacked tree, usable as a box's rootfs. */
  rootfs: string;
  /** The directories to stack as overlay lower layers, bottom first: the one merged tree (see docs/images.md). */
  layers: string[];
  config: ImageConfig;
  name: string;
  id: string;
  /** What the tree's host owners mean (see ImageRecord.owners). */
  owners: OwnersRecord;
}

/**
 * A warning when a rootless box maps ids otherwise than the image's files were given them: files of
 * subordinate ids the box does not map show as 65534 (nobody) inside, and setuid programs fail.
 */
export function ownersWarning(name: string, owners: OwnersRecord, idMap: IdMapPlan | null): string | null {
  if (typeof owners !== "object" || !("map" in owners)) return null;
  const same = (a: IdRange[], b: IdRange[]) => JSON.stringify(a) === JSON.stringify(b);
  if (idMap && same(owners.uidMap, idMap.uidMap) && same(owners.gidMap, idMap.gidMap)) return null;
  return `image ${q(name)}: its files belong to your subordinate ids as [user_namespace] mode = "auto" maps them, and this box maps ids otherwise: files it does not map show as nobody (65534); use mode = "auto"`;
}

export function defaultStoreRoot(): string {
  if (process.env.NSRUN_STORE) return process.env.NSRUN_STORE;
  if (process.getuid?.() === 0) return "/var/lib/nsrun";
  const data = process.env.XDG_DATA_HOME || join(process.env.HOME || homedir(), ".local/share");
  return join(data, "nsrun");
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._\-/:@+]*$/;

/** A name as the store keys it: a name without a tag or digest gets ":latest" (busybox -> busybox:latest). */
export function normalizeName(name: string): string {
  if (!NAME_RE.test(name) || name.length > 255 || name.split("/").some((c) => c === "" || c === "." || c === "..")) {
    throw new StageError("image", `image name ${q(name)}: expected letters, digits and . _ - / : @ (at most 255, no empty or .. parts)`);
  }
  const last = name.slice(name.lastIndexOf("/") + 1);
  return last.includes(":") || name.includes("@") ? name : `${name}:latest`;
}

const hex = (text: string) => new Bun.CryptoHasher("sha256").update(text).digest("hex");

/** Remove a tree we made, even where its directories are read-only (0555) to us. */
export function removeTree(path: string): void {
  let st: ReturnType<typeof lstatSync>;
  try {
    st = lstatSync(path);
  } catch {
    return;
  }
  if (!st.isDirectory()) return unlinkSync(path);
  if ((st.mode & 0o700) !== 0o700) {
    try {
      chmodSync(path, 0o700);
    } catch {
      // not ours to chmod (root's tree, read by a user): rmdir says so below
    }
  }
  for (const name of readdirSync(path)) removeTree(join(path, name));
  rmdirSync(path);
}

/**
 * Remove a tree of the store's. An ordinary user's tree may hold files of the user's subordinate
 * ids (an image given its layers' owners, or written by a rootless box), which the user may not
 * list or unlink: what removeTree cannot remove goes in a user namespace with those ids.
 */
export async function removeStoreTree(path: string): Promise<void> {
  try {
    removeTree(path);
    return;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== "EACCES" && code !== "EPERM") throw e;
    const { ownerPlan, removeAsNamespaceRoot } = await import("./owners");
    const plan = ownerPlan();
    if (plan.kind !== "subordinate") throw new StageError("image", `remove ${q(path)}: ${(e as Error).message}`);
    await removeAsNamespaceRoot(path, plan.map);
  }
}

/** A folder of tmp/ claimed for removal: its lock is ours until it is gone. */
interface Claim {
  path: string;
  lockPath: string;
  fd: number;
}

/** Remove claimed folders, then their locks; outside the store lock (this may take a while). */
async function removeClaims(claims: Claim[]): Promise<void> {
  let failure: unknown = null;
  for (const c of claims) {
    try {
      await removeStoreTree(c.path);
      unlinkSync(c.lockPath);
    } catch (e) {
      failure ??= e; // left with its lock file, for the next run to try again
    } finally {
      closeSync(c.fd);
    }
  }
  if (failure !== null) throw failure;
}

export class ImageStore {
  readonly blobDir: string;
  readonly imageDir: string;
  readonly tmpDir: string;

  constructor(readonly root = defaultStoreRoot()) {
    this.blobDir = join(root, "blobs/sha256");
    this.imageDir = join(root, "images");
    this.tmpDir = join(root, "tmp");
  }

  /** Make the store's folders (private to their owner). */
  ensure(): void {
    for (const d of [this.root, this.blobDir, this.imageDir, this.tmpDir]) {
      try {
        mkdirSync(d, { recursive: true, mode: 0o700 });
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code ?? "";
        throw new StageError("image", `cannot make the image store ${q(d)}: ${fsProblem(e)}`, storeHint(code));
      }
    }
  }

  /** Run `fn` holding the store lock. Waits (and says so) while another nsrun holds it. */
  withLock<T>(fn: () => T, log?: (line: string) => void): T {
    this.ensure();
    const path = join(this.root, "lock");
    let fd: number;
    try {
      fd = openSync(path, "a", 0o600);
    } catch (e) {
      throw new StageError("image", `cannot open the image store's lock ${q(path)}: ${fsProblem(e)}`, storeHint((e as NodeJS.ErrnoException).code ?? ""));
    }
    try {
      if (!fs.flock(fd, fs.LOCK_EX | fs.LOCK_NB, path)) {
        log?.(`waiting for the image store lock ${q(path)}, held by another nsrun`);
        fs.flock(fd, fs.LOCK_EX, path);
      }
      return fn();
    } finally {
      closeSync(fd); // closing drops the lock
    }
  }

  /**
   * A private work folder in STORE/tmp, flock'd until release(). An import builds the image there;
   * if nsrun dies, the lock goes with it and the next run's cleanStale() removes the folder.
   */
  async tempDir(): Promise<{ path: string; release(): Promise<void> }> {
    let stale: Claim[] = [];
    const work = this.withLock(() => {
      stale = this.claimStaleLocked();
      const name = `${process.pid}-${crypto.randomUUID().slice(0, 8)}`;
      const lockPath = join(this.tmpDir, `${name}.lock`);
      const fd = openSync(lockPath, "wx", 0o600);
      fs.flock(fd, fs.LOCK_EX, lockPath);
      const path = join(this.tmpDir, name);
      mkdirSync(path, { mode: 0o700 });
      let released = false;
      return {
        path,
        release: async () => {
          if (released) return;
          released = true;
          await removeClaims([{ path, lockPath, fd }]);
        },
      };
    });
    await removeClaims(stale);
    return work;
  }

  /**
   * Claim the work folders whose owner is gone (their lock is free), by taking their locks: the
   * caller removes them after the store lock (removeClaims). Call with the store lock held.
   */
  private claimStaleLocked(): Claim[] {
    const claims: Claim[] = [];
    let names: string[];
    try {
      names = readdirSync(this.tmpDir);
    } catch {
      return claims;
    }
    for (const name of names) {
      if (name.endsWith(".lock")) continue;
      const lockPath = join(this.tmpDir, `${name}.lock`);
      // No lock file: left by a run that died before taking it, or a trash folder; make one to hold.
      const fd = openSync(lockPath, "a", 0o600);
      if (!fs.flock(fd, fs.LOCK_EX | fs.LOCK_NB, lockPath)) {
        closeSync(fd); // alive
        continue;
      }
      claims.push({ path: join(this.tmpDir, name), lockPath, fd });
    }
    // Lock files whose folder is gone (a run that died between the two).
    for (const name of names) {
      if (!name.endsWith(".lock") || existsSync(join(this.tmpDir, name.slice(0, -5)))) continue;
      const lockPath = join(this.tmpDir, name);
      let fd: number;
      try {
        fd = openSync(lockPath, "r+");
      } catch {
        continue; // removed with its folder above
      }
      if (fs.flock(fd, fs.LOCK_EX | fs.LOCK_NB, lockPath)) unlinkSync(lockPath);
      closeSync(fd);
    }
    return claims;
  }

  /** Remove work folders whose owner is gone; how many. */
  async cleanStale(): Promise<number> {
    const claims = this.withLock(() => this.claimStaleLocked());
    await removeClaims(claims);
    return claims.length;
  }

  dirOf(name: string): string {
    return join(this.imageDir, hex(normalizeName(name)).slice(0, 32));
  }

  /** The image of that name; null when the store has none; throws naming the file when its record is broken. */
  read(name: string): ImageRecord | null {
    const dir = this.dirOf(name);
    if (!existsSync(dir)) return null;
    const r = this.readDir(dir);
    if ("problem" in r) throw new StageError("image", `image ${q(normalizeName(name))}: ${r.problem}`, `remove it with nsrun image rm ${normalizeName(name)}, then import or pull it again`);
    return r;
  }

  /** An image folder's record, or what is wrong with it (a record is checked, not trusted: the store is only files). */
  private readDir(dir: string): ImageRecord | { problem: string } {
    const path = join(dir, "image.json");
    let r: ImageRecord;
    try {
      r = JSON.parse(readFileSync(path, "utf8"));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      return { problem: `its record ${q(path)} is ${code ? `unreadable (${code})` : "not valid JSON"}` };
    }
    const c = r?.config;
    const strings = (x: unknown) => Array.isArray(x) && x.every((s) => typeof s === "string" && !s.includes("\0"));
    if (typeof r?.name !== "string" || typeof r.id !== "string" || !c || !strings(c.env) || !strings(c.entrypoint) || !strings(c.cmd) || !Array.isArray(r.layers) || !Array.isArray(r.blobs) || r.owners === undefined) {
      return { problem: `its record ${q(path)} is broken (a field is missing or of the wrong type)` };
    }
    try {
      if (this.dirOf(r.name) !== dir) return { problem: `its record ${q(path)} names another image (${q(r.name)})` };
    } catch {
      return { problem: `its record ${q(path)} names no valid image` };
    }
    return r;
  }

  list(): ImageRecord[] {
    return this.scan()
      .flatMap((e) => ("record" in e ? [e.record] : []))
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  /** Every folder of images/: its record, or why it is broken (shown by `image ls`, removed by `rm ID` and `prune`). */
  scan(): Array<{ id: string; record: ImageRecord } | { id: string; problem: string }> {
    let ids: string[];
    try {
      ids = readdirSync(this.imageDir);
    } catch {
      return [];
    }
    return ids.map((id) => {
      const r = this.readDir(join(this.imageDir, id));
      return "problem" in r ? { id, problem: r.problem } : { id, record: r };
    });
  }

  /**
   * Put a finished image in place: `work` holds rootfs/; its image.json is written here. An image
   * of the same name is replaced, unless a box is using it.
   */
  async commit(work: string, record: ImageRecord, log?: (line: string) => void): Promise<void> {
    writeFileSync(join(work, "image.json"), `${JSON.stringify(record, null, 2)}\n`);
    writeFileSync(join(work, "in-use"), "");
    const dir = this.dirOf(record.name);
    const trash = this.withLock(() => {
      const old = this.takeOutLocked(record.name, dir, "replace it");
      renameSync(work, dir);
      return old;
    }, log);
    await trash?.release();
  }

  /** Move an image out of images/ into a work folder (to delete). Refused while a box uses it. */
  private takeOutLocked(name: string, dir: string, doing: string): { release(): Promise<void> } | null {
    if (!existsSync(dir)) return null;
    const usePath = join(dir, "in-use");
    const fd = openSync(usePath, "a", 0o600);
    try {
      if (!fs.flock(fd, fs.LOCK_EX | fs.LOCK_NB, usePath)) {
        throw new StageError("image", `image ${q(name)} is in use by a running box; stop the box first to ${doing}`);
      }
      const name2 = `${process.pid}-trash-${crypto.randomUUID().slice(0, 8)}`;
      const lockPath = join(this.tmpDir, `${name2}.lock`);
      const lockFd = openSync(lockPath, "wx", 0o600);
      fs.flock(lockFd, fs.LOCK_EX, lockPath);
      const trashPath = join(this.tmpDir, name2);
      renameSync(dir, trashPath);
      return { release: () => removeClaims([{ path: trashPath, lockPath, fd: lockFd }]) };
    } finally {
      closeSync(fd);
    }
  }

  /** Remove an image by name, or a broken one by the folder id `image ls` shows for it. Returns the name removed. */
  async remove(name: string, log?: (line: string) => void): Promise<{ name: string }> {
    const broken = /^[a-f0-9]{32}$/.test(name) ? this.scan().find((e) => e.id === name && "problem" in e) : undefined;
    let dir: string;
    let shown: string;
    if (broken) {
      dir = join(this.imageDir, name);
      shown = name;
    } else {
      dir = this.dirOf(name);
      if (!existsSync(dir)) throw notFound(name, this.root);
      const r = this.readDir(dir);
      shown = "problem" in r ? normalizeName(name) : r.name;
    }
    const trash = this.withLock(() => this.takeOutLocked(shown, dir, "remove it"), log);
    await trash?.release();
    return { name: shown };
  }

  /** Remove blobs no image lists, interrupted downloads and stale work folders. */
  async prune(log?: (line: string) => void): Promise<{ blobs: number; bytes: number; temporaries: number }> {
    let stale: Claim[] = [];
    const trash: Array<{ release(): Promise<void> }> = [];
    const r = this.withLock(() => {
      stale = this.claimStaleLocked();
      // A broken image (its record unreadable) can never run: its folder goes like a leftover.
      for (const e of this.scan()) {
        if (!("problem" in e)) continue;
        log?.(`removing broken image ${e.id}: ${e.problem}`);
        const t = this.takeOutLocked(e.id, join(this.imageDir, e.id), "remove it");
        if (t) trash.push(t);
      }
      const used = new Set(this.list().flatMap((r) => r.blobs.map((d) => d.replace(/^sha256:/, ""))));
      let blobs = 0;
      let bytes = 0;
      let names: string[] = [];
      try {
        names = readdirSync(this.blobDir);
      } catch {
        // no blobs
      }
      for (const name of names) {
        const path = join(this.blobDir, name);
        if (name.endsWith(".partial")) {
          const fd = openSync(path, "r+");
          try {
            if (!fs.flock(fd, fs.LOCK_EX | fs.LOCK_NB, path)) continue; // a pull is downloading it
            bytes += statSync(path).size;
            unlinkSync(path);
            blobs++;
          } finally {
            closeSync(fd);
          }
          continue;
        }
        if (used.has(name)) continue;
        bytes += statSync(path).size;
        unlinkSync(path);
        blobs++;
      }
      return { blobs, bytes, temporaries: stale.length + trash.length };
    }, log);
    await removeClaims(stale);
    for (const t of trash) await t.release();
    return r;
  }
}

/** A Node file error as "read-only file system (EROFS)": the code, without Node's repeat of the call and path. */
export function fsProblem(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  const text = String(err.message ?? e).replace(/^[A-Z]+: /, "").replace(/, \w+ '.*'$/, "");
  return err.code ? `${text} (${err.code})` : text;
}

function storeHint(code: string): string {
  if (code === "EROFS") return "the image store is on a read-only file system: set NSRUN_STORE to a folder on a writable one";
  if (code === "ENOSPC" || code === "EDQUOT") return "the image store's disk is full: free some space (nsrun image prune) or set NSRUN_STORE to another disk";
  return "set NSRUN_STORE to a folder you can write";
}

export function notFound(name: string, root: string): ConfigError {
  return new ConfigError(`image ${q(name)}`, null, `not in the image store ${q(root)}; add it with \`nsrun image import\` or \`nsrun image pull\` (see \`nsrun image ls\`)`);
}

/**
 * The image a box runs on: its unpacked root filesystem and its config (the box's defaults).
 * Throws a ConfigError naming the image when the store has no such image.
 */
export function resolveImage(name: string, store = new ImageStore()): ResolvedImage {
  let record: ImageRecord | null;
  try {
    record = store.read(name);
  } catch (e) {
    throw new ConfigError(`image ${q(name)}`, null, (e as Error).message);
  }
  if (!record) throw notFound(name, store.root);
  const rootfs = join(store.dirOf(name), "rootfs");
  return { rootfs, layers: [rootfs], config: record.config, name: record.name, id: record.id, owners: record.owners };
}

/**
 * Mark an image as used by a running box until release(): `nsrun image rm` and a re-import of the
 * same name refuse while any box holds it. A shared flock on STORE/images/ID/in-use, so a box that
 * dies releases it with its fds. The fd is close-on-exec: the box's own processes never see it.
 */
export function acquireImageUse(name: string, store = new ImageStore()): (() => void) & { fd: number } {
  for (let attempt = 0; ; attempt++) {
    if (attempt === 10) throw new StageError("image", `image ${q(name)}: cannot hold its in-use marker; is another nsrun replacing it in a loop?`);
    if (!store.read(name)) throw notFound(name, store.root);
    const path = join(store.dirOf(name), "in-use");
    let fd: number;
    try {
      fd = openSync(path, "r");
    } catch {
      continue; // replaced between the read and the open: look again
    }
    fs.flock(fd, fs.LOCK_SH, path);
    // An rm or re-import may have moved the image away while we waited: hold the file that is there now.
    let same = false;
    try {
      same = fs.inodeOf(fd, path) === BigInt(statSync(path, { bigint: true }).ino);
    } catch {
      same = false;
    }
    if (same) {
      let released = false;
      // The fd too: a box's supervisor keeps it open across its execve, and so holds the lock to the end.
      return Object.assign(
        () => {
          if (released) return;
          released = true;
          closeSync(fd);
        },
        { fd },
      );
    }
    closeSync(fd);
  }
}
