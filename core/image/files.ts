// The files of an image archive, read the same way whether it is a directory (an OCI layout as
// `skopeo copy ... oci:DIR` writes it, an unpacked docker-archive) or an uncompressed tar of one.
// A tar is indexed once (names -> offsets) and its members are then read in place, never copied.
import { existsSync, statSync } from "node:fs";
import { join, posix } from "node:path";
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

export function dirFiles(dir: string): FileSet {
  const where = q(dir);
  const path = (rel: string) => join(dir, safeRel(rel, where));
  const missing = (rel: string) => new StageError("image", `${where}: ${q(rel)} is missing`);
  return {
    where,
    has: (rel) => existsSync(path(rel)),
    open(rel) {
      const p = path(rel);
      if (!existsSync(p) || !statSync(p).isFile()) throw missing(rel);
      return Bun.file(p).stream();
    },
    async readText(rel) {
      const p = path(rel);
      if (!existsSync(p)) throw missing(rel);
      return Bun.file(p).text();
    },
  };
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
