// `nsrun image import SOURCE`: a rootfs tarball (plain, gzip, xz, zstd), a docker-archive, or an OCI
// image layout (a directory, or a tar of one), unpacked into the store under a name.
import { existsSync, mkdirSync, openSync, readSync, closeSync, renameSync, statSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import * as F from "../../ffi/flags";
import * as fs from "../../ffi/fs";
import { q } from "../../ffi/libc";
import { StageError } from "../errors";
import { sniffCompression } from "./compression";
import { readDockerArchive } from "./docker-archive";
import { dirFiles, type FileSet, tarFiles } from "./files";
import { CAPABILITY_XATTR, type ExtractOptions, extractLayers, type ExtractStats, type LayerSource, tap } from "./layers";
import { hostPlatform, type ImageSpec, readOciLayout } from "./oci-layout";
import { giveOwners, type OwnerPlan, ownerPlan, ownersRecord } from "./owners";
import { formatBytes, Progress } from "./progress";
import { type ImageRecord, ImageStore, normalizeName, removeTree } from "./store";

export interface UnpackOptions {
  store?: ImageStore;
  /** Status lines ("nsrun: ..." is added by the caller's printer). */
  log?: (line: string) => void;
  progress?: Progress;
  /**
   * Keep the layers' owners (chown). Default: as root; as an ordinary user with subordinate ids
   * and newuidmap/newgidmap, through those ids in a user namespace; false: everything the caller's.
   */
  keepOwners?: boolean;
}

export interface ImportOptions extends UnpackOptions {
  name?: string;
}

/** SOURCE, or SOURCE:TAG where SOURCE exists and names an archive with several images. */
function splitSource(source: string): { path: string; tag?: string } {
  if (source === "-") return { path: "-" };
  if (existsSync(source)) return { path: resolve(source) };
  const colon = source.lastIndexOf(":");
  if (colon > 0 && existsSync(source.slice(0, colon))) return { path: resolve(source.slice(0, colon)), tag: source.slice(colon + 1) };
  throw new StageError("image", `image import ${q(source)}: no such file or directory`);
}

type Detected = { kind: "oci" | "docker-archive"; files: FileSet } | { kind: "rootfs"; stream?: boolean };

async function detect(path: string): Promise<Detected> {
  if (path === "-") return { kind: "rootfs", stream: true };
  const st = statSync(path);
  // A pipe (`-`, `<(curl ...)`) can be read once: a rootfs tarball, found out while unpacking.
  if (st.isFIFO() || st.isCharacterDevice() || st.isSocket()) return { kind: "rootfs", stream: true };
  if (st.isDirectory()) {
    const files = dirFiles(path);
    if (files.has("oci-layout")) return { kind: "oci", files };
    if (files.has("manifest.json")) return { kind: "docker-archive", files };
    throw new StageError("image", `image import ${q(path)}: a directory, but neither an OCI image layout (oci-layout, index.json) nor a docker-archive (manifest.json)`);
  }
  const head = Buffer.alloc(512);
  const fd = openSync(path, "r");
  const n = readSync(fd, head, 0, 512, 0);
  closeSync(fd);
  // An uncompressed tar may be an image archive: index it (headers only are used) and look.
  if (sniffCompression(head.subarray(0, n)) === "none" && n === 512) {
    try {
      const files = await tarFiles(path);
      if (files.has("oci-layout") && files.has("index.json")) return { kind: "oci", files };
      if (files.has("manifest.json")) return { kind: "docker-archive", files };
    } catch {
      // not a tar we can index: the rootfs path reports why
    }
  }
  return { kind: "rootfs" };
}

/** A default name from the source: the archive's own tag, else the file name without its extensions. */
function defaultName(path: string, refName?: string): string {
  const base = basename(path).replace(/\.(tar|tgz|tzst|txz|gz|xz|zst|zstd|oci)$/g, "").replace(/\.tar$/, "") || "image";
  if (refName && /[/:]/.test(refName)) return refName;
  const clean = base.toLowerCase().replace(/[^a-z0-9._-]/g, "-").replace(/^[^a-z0-9]+/, "") || "image";
  return refName ? `${clean}:${refName}` : clean;
}

export async function importImage(source: string, opts: ImportOptions = {}): Promise<ImageRecord> {
  const { path, tag } = splitSource(source);
  if (opts.name !== undefined) normalizeName(opts.name); // a bad --name fails before any work
  const store = opts.store ?? new ImageStore();
  const found = await detect(path);
  if (found.kind !== "rootfs") {
    const spec = found.kind === "oci" ? await readOciLayout(found.files, tag) : await readDockerArchive(found.files, tag);
    const name = opts.name ?? defaultName(path, spec.refName);
    return unpackImage(store, name, { kind: found.kind, ref: tag === undefined ? path : `${path}:${tag}` }, spec, opts);
  }
  if (tag !== undefined) throw new StageError("image", `image import ${q(source)}: a tag names one image of an archive; ${q(path)} is a rootfs tarball`);
  const size = found.stream ? 0 : statSync(path).size;
  const fileHash = new Bun.CryptoHasher("sha256");
  const input = () => (path === "-" ? Bun.stdin.stream() : Bun.file(path).stream());
  const spec: ImageSpec = {
    id: "",
    config: { env: [], entrypoint: [], cmd: [] },
    architecture: hostPlatform().architecture,
    os: "linux",
    layers: [{ digest: "", diffId: "", size, open: () => tap(input(), fileHash) }],
  };
  if (path === "-" && !opts.name) throw new StageError("image", "image import -: a tarball on standard input needs --name NAME");
  const name = opts.name ?? defaultName(path);
  return unpackImage(store, name, { kind: "rootfs", ref: path }, spec, { ...opts, rootfsFile: path, fileHash });
}

/**
 * Unpack an image's layers into a work folder of the store, then put it in place under `name`.
 * Shared by import and pull. Nothing is visible under `name` until every layer is in.
 */
export async function unpackImage(
  store: ImageStore,
  name: string,
  source: ImageRecord["source"],
  spec: ImageSpec,
  opts: ImportOptions & { blobs?: string[]; rootfsFile?: string; fileHash?: Bun.CryptoHasher },
): Promise<ImageRecord> {
  name = normalizeName(name);
  const log = opts.log ?? (() => {});
  const progress = opts.progress ?? new Progress();
  const owners = ownerPlan(opts.keepOwners);
  const extract = { keepOwners: owners.kind === "kept", recordOwners: owners.kind === "subordinate" };
  const host = hostPlatform();
  if (spec.architecture && spec.architecture !== host.architecture) log(`warning: ${name} is built for ${spec.architecture}, this host is ${host.architecture}; its programs may not run`);
  const work = await store.tempDir();
  let failed = false;
  try {
    let rootfs = join(work.path, "rootfs");
    mkdirSync(rootfs, { mode: 0o755 });
    const tasks: ReturnType<Progress["start"]>[] = [];
    const layers: LayerSource[] = spec.layers.map((l, i) => ({
      label: opts.rootfsFile ? q(opts.rootfsFile) : `layer ${i + 1}/${spec.layers.length} ${l.digest.slice(7, 19) || l.diffId.slice(7, 19)}`,
      diffId: l.diffId || undefined,
      open: () => {
        const task = progress.start(`unpacking ${opts.rootfsFile ? basename(opts.rootfsFile) : `layer ${i + 1}/${spec.layers.length} ${l.digest.slice(7, 19)}`}`, l.size);
        tasks.push(task);
        return tap(l.open(), null, (n) => task.add(n));
      },
    }));
    let before = 0;
    const onLayer = (_: string, s: ExtractStats) => {
      tasks[tasks.length - 1]?.done(`done: ${s.entries - before} entries`);
      before = s.entries;
    };
    let result = await extractInto(rootfs, layers, { ...extract, whiteouts: source.kind !== "rootfs" }, onLayer);
    let final = spec;
    // A compressed file that held an image archive (`docker save | gzip`): now unpacked, read it as one.
    if (source.kind === "rootfs") {
      const inner = existsSync(join(rootfs, "oci-layout")) ? "oci" : existsSync(join(rootfs, "manifest.json")) ? "docker-archive" : null;
      if (inner) {
        const archive = join(work.path, "archive");
        renameSync(rootfs, archive);
        rootfs = join(work.path, "rootfs");
        mkdirSync(rootfs, { mode: 0o755 });
        final = inner === "oci" ? await readOciLayout(dirFiles(archive)) : await readDockerArchive(dirFiles(archive));
        if (!opts.name && final.refName) name = normalizeName(defaultName(opts.rootfsFile ?? "image", final.refName));
        source = { kind: inner, ref: source.ref };
        const innerLayers: LayerSource[] = final.layers.map((l, i) => ({ label: `layer ${i + 1}/${final.layers.length}`, diffId: l.diffId, open: l.open }));
        result = await extractInto(rootfs, innerLayers, { ...extract, whiteouts: true });
        removeTree(archive); // only rootfs/ goes into the store
      }
    }
    // Last, on the whole tree: a later layer may have removed or replaced what an earlier one owned.
    if (owners.kind === "subordinate" && result.owners.size) {
      await giveOwners(rootfs, result.owners, owners.map, name);
      // The file capabilities refused outside the namespace are now set (a hard link shares its record).
      const given = new Set([...result.owners.values()].filter((r) => r.capability)).size;
      const skipped = (result.stats.xattrsSkipped[CAPABILITY_XATTR] ?? 0) - given;
      if (skipped > 0) result.stats.xattrsSkipped[CAPABILITY_XATTR] = skipped;
      else delete result.stats.xattrsSkipped[CAPABILITY_XATTR];
    }
    const fileDigest = opts.fileHash ? `sha256:${opts.fileHash.digest("hex")}` : "";
    const record: ImageRecord = {
      name,
      id: final.id || fileDigest,
      source,
      architecture: final.architecture,
      os: final.os,
      ...(final.created ? { created: final.created } : {}),
      added: new Date().toISOString(),
      config: final.config,
      layers: final.layers.map((l, i) => ({ digest: l.digest || fileDigest, diffId: result.diffIds[i], size: l.size })),
      blobs: opts.blobs ?? [],
      owners: ownersRecord(owners),
      size: result.stats.bytes,
      devicesSkipped: result.stats.devicesSkipped,
      xattrsSkipped: result.stats.xattrsSkipped,
      namesContained: result.stats.namesContained,
    };
    await store.commit(work.path, record, log);
    logOwners(log, name, owners, result.owners.size);
    if (result.stats.devicesSkipped) log(`${name}: skipped ${result.stats.devicesSkipped} device node${result.stats.devicesSkipped === 1 ? "" : "s"} (a box gets its own /dev)`);
    const xs = Object.entries(result.stats.xattrsSkipped);
    if (xs.length) log(`${name}: skipped xattrs the kernel refused or nsrun drops: ${xs.map(([k, n]) => `${k} (${n})`).join(", ")}`);
    if (result.stats.namesContained) log(`${name}: ${result.stats.namesContained} entries named paths outside the image (absolute or ..); they were kept inside it`);
    log(`${name}: ${final.layers.length} layer${final.layers.length === 1 ? "" : "s"}, ${formatBytes(result.stats.bytes)}, id ${record.id.slice(0, 19)}`);
    return record;
  } catch (e) {
    failed = true;
    throw e;
  } finally {
    // After a failure, that failure is what to report: a work folder left behind goes at the next run.
    await work.release().catch((e) => {
      if (!failed) throw e;
    });
  }
}

function logOwners(log: (line: string) => void, name: string, owners: OwnerPlan, given: number): void {
  if (owners.kind === "user") log(`${name}: unpacked without subordinate ids, so every file is owned by you (uid ${owners.uid}); the layers' owners are not kept`);
  if (owners.kind !== "subordinate") return;
  const [you, sub] = owners.map.uidMap;
  const range = sub ? `, uids 1-${sub.count} are ${sub.outside}-${sub.outside + sub.count - 1}` : "";
  log(`${name}: the layers' owners are kept through your subordinate ids (uid 0 is you, uid ${you.outside}${range}): ${given} entr${given === 1 ? "y" : "ies"} given an owner in a user namespace`);
}

async function extractInto(rootfs: string, layers: LayerSource[], opts: ExtractOptions, onLayer?: (label: string, s: ExtractStats) => void) {
  const rootfd = fs.openat2(F.AT_FDCWD, rootfs, F.O_PATH | F.O_DIRECTORY, 0, rootfs);
  try {
    return await extractLayers(rootfd, layers, opts, onLayer);
  } finally {
    fs.close(rootfd);
  }
}
