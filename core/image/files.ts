// The files of an image archive, read the same way whether it is a directory (an OCI layout as
// `skopeo copy ... oci:DIR` writes it, an unpacked docker-archive) or an uncompressed tar of one.
// A tar is indexed once (names -> offsets) and its members are then read in place, never copied.
import { fstatSync, readSync } from "node:fs";
import { posix } from "node:path";
import * as F from "../../ffi/flags";
import { ERRNO } from "../../ffi/errno";
import * as fs from "../../ffi/fs";
import { q } from "../../ffi/libc";
import { StageError } from "../errors";
import { readTar } from "./tar";

export interface FileSet {
  /** The archive, as errors name it. */
  readonly where: string;
  has(rel: string): boolean;
  open(rel: string): AsyncIterable<Uint8Array>;
  readText(rel: string): Promise<string>;
}

/** A path inside an archive, as the archive's own JSON gives it: relative, and without `..`. */
export function safeRel(rel: string, where: string): string {
  const clean = posix.normalize(rel).replace(/^\.\//, "");
  if (rel.startsWith("/") || clean.startsWith("../") || clean === ".." || clean.includes("\0")) {
    throw new StageError("image", `${where}: refers to ${q(rel)}, outside the archive`);
  }
  return clean;
}

/** Manifests, indexes, configs and the archive's other JSON are refused beyond this (containers/image's limit for manifests). */
export const MAX_JSON = 4 * 1024 * 1024;

/**
 * The files of an archive folder (one given, or the work folder a compressed archive was unpacked
 * into). Every file is opened beneath the folder (openat2 RESOLVE_BENEATH): an absolute symlink or
 * one that climbs out (`cfg.json -> /etc/shadow`, `-> ../../x`) fails to open, a symlink that stays
 * inside (old `docker save` shares layers so) works. It must be a regular file (a FIFO would hang,
 * a device never end), and JSON is read up to MAX_JSON.
 */
export function dirFiles(dir: string): FileSet {
  const where = q(dir);
  const openFile = (rel: string): number | null => {
    const clean = safeRel(rel, where);
    let root = -1;
    let fd = -1;
    try {
      root = fs.openat2(F.AT_FDCWD, dir, F.O_PATH | F.O_DIRECTORY, 0, dir);
      fd = fs.openat2(root, clean, F.O_RDONLY | F.O_NONBLOCK, F.RESOLVE_BENEATH | F.RESOLVE_NO_MAGICLINKS, clean);
    } catch (e) {
      if (fs.isErrno(e, ERRNO.ENOENT)) return null;
      if (fs.isErrno(e, ERRNO.EXDEV, ERRNO.ELOOP)) throw new StageError("image", `${where}: ${q(rel)} is a symbolic link that leads out of the archive; refused`);
      throw new StageError("image", `${where}: ${q(rel)}: ${(e as Error).message}`);
    } finally {
      if (root >= 0) fs.close(root);
    }
    if (!fstatSync(fd).isFile()) {
      fs.close(fd);
      throw new StageError("image", `${where}: ${q(rel)} is not a regular file`);
    }
    return fd;
  };
  const must = (rel: string): number => {
    const fd = openFile(rel);
    if (fd === null) throw new StageError("image", `${where}: ${q(rel)} is missing`);
    return fd;
  };
  return {
    where,
    has(rel) {
      try {
        const fd = openFile(rel);
        if (fd !== null) fs.close(fd);
        return fd !== null;
      } catch {
        return false;
      }
    },
    open: (rel) => fdChunks(must(rel)),
    async readText(rel) {
      const fd = must(rel);
      try {
        const size = fstatSync(fd).size;
        if (size > MAX_JSON) throw new StageError("image", `${where}: ${q(rel)} is larger than 4 MiB; refused`);
        const buf = Buffer.alloc(size);
        let n = 0;
        while (n < size) {
          const k = readSync(fd, buf, n, size - n, n);
          if (k <= 0) break;
          n += k;
        }
        return buf.subarray(0, n).toString("utf8");
      } finally {
        fs.close(fd);
      }
    },
  };
}

/** A regular file's content in 1 MiB chunks, read through its fd, which is closed at the end (or when the reader stops). */
async function* fdChunks(fd: number): AsyncGenerator<Uint8Array> {
  try {
    let off = 0;
    for (;;) {
      const buf = Buffer.allocUnsafe(1 << 20);
      const n = readSync(fd, buf, 0, buf.length, off);
      if (n <= 0) return;
      off += n;
      yield buf.subarray(0, n);
    }
  } finally {
    fs.close(fd);
  }
}

interface Member {
  offset: number;
  size: number;
  symlink?: string;
}

/** Index an uncompressed tar's regular files and symlinks (old `docker save` links shared layers). */
export async function tarFiles(file: string): Promise<FileSet> {
  const where = q(file);
  const index = new Map<string, Member>();
  for await (const m of readTar(Bun.file(file).stream())) {
    const name = posix.normalize(m.entry.path).replace(/^\.\//, "").replace(/\/$/, "");
    if (m.entry.type === "file") index.set(name, { offset: m.offset, size: m.entry.size });
    else if (m.entry.type === "symlink") index.set(name, { offset: 0, size: 0, symlink: m.entry.linkname });
    else if (m.entry.type === "hardlink") {
      const target = index.get(posix.normalize(m.entry.linkname).replace(/^\.\//, ""));
      if (target) index.set(name, target);
    }
  }
  const lookup = (rel: string): Member => {
    let name = safeRel(rel, where);
    for (let hops = 0; hops < 16; hops++) {
      const m = index.get(name);
      if (!m) break;
      if (!m.symlink) return m;
      name = safeRel(posix.join(posix.dirname(name), m.symlink), where);
    }
    throw new StageError("image", `${where}: ${q(rel)} is missing`);
  };
  return {
    where,
    has(rel) {
      try {
        lookup(rel);
        return true;
      } catch {
        return false;
      }
    },
    open(rel) {
      const m = lookup(rel);
      return Bun.file(file).slice(m.offset, m.offset + m.size).stream();
    },
    async readText(rel) {
      const m = lookup(rel);
      if (m.size > MAX_JSON) throw new StageError("image", `${where}: ${q(rel)} is larger than 4 MiB; refused`);
      return Bun.file(file).slice(m.offset, m.offset + m.size).text();
    },
  };
}

/** Passes a blob through while hashing it, and fails at its end when the digest is not the one named. */
export async function* verified(input: AsyncIterable<Uint8Array>, digest: string, what: string): AsyncGenerator<Uint8Array> {
  const [alg, want] = digest.split(":");
  if (alg !== "sha256" || !/^[a-f0-9]{64}$/.test(want ?? "")) throw new StageError("image", `${what}: unsupported digest ${q(digest)} (expected sha256:<64 hex digits>)`);
  const hash = new Bun.CryptoHasher("sha256");
  for await (const chunk of input) {
    hash.update(chunk);
    yield chunk;
  }
  const got = hash.digest("hex");
  if (got !== want) throw new StageError("image", `${what}: digest mismatch: expected ${digest}, got sha256:${got}`);
}
