// `nsrun image pull REF`: manifest (an index resolved to this host's platform), config and layers
// from a registry into STORE/blobs, each checked against its digest, then unpacked like an import.
//
// Blobs are cached by digest and shared between images. A download goes to HEX.partial, flock'd by
// its downloader (a second nsrun pulling the same blob waits, then finds it done); when the
// connection drops, the download goes on from where the file ends (HTTP Range), in this run or the
// next. A blob becomes HEX only once its sha256 matches.
import { closeSync, existsSync, fstatSync, ftruncateSync, openSync, readSync, renameSync, statSync, unlinkSync, writeSync } from "node:fs";
import { join } from "node:path";
import * as fs from "../../ffi/fs";
import { q } from "../../ffi/libc";
import { StageError } from "../errors";
import { type ImportOptions, unpackImage } from "./import";
import { blobPath, isIndex, type ImageSpec, type Manifest, parseImageConfig, parseManifest, platformText, hostPlatform, selectPlatform, type Descriptor } from "./oci-layout";
import { formatBytes, Progress, type Task } from "./progress";
import { MAX_JSON } from "./files";
import { parseReference, referenceText, RegistryClient, RegistryTimeout } from "./registry";
import { type ImageRecord, ImageStore } from "./store";

export interface PullOptions extends ImportOptions {
  tlsVerify?: boolean;
  /** Layers downloaded at once. */
  parallel?: number;
  /** Attempts per blob when the connection drops; each resumes where the last one stopped. */
  attempts?: number;
}

export async function pullImage(text: string, opts: PullOptions = {}): Promise<ImageRecord> {
  const ref = parseReference(text);
  const store = opts.store ?? new ImageStore();
  const progress = opts.progress ?? new Progress();
  store.ensure();
  const client = new RegistryClient(ref, { tlsVerify: opts.tlsVerify });
  const what = `image pull ${q(text)}`;

  let m = await client.manifest(ref.digest ?? (ref.tag as string));
  let parsed = JSON.parse(m.body.toString("utf8")) as { manifests?: Descriptor[] };
  if (isIndex(m.mediaType, parsed)) {
    const chosen = selectPlatform(parsed.manifests ?? [], `${what}: the index`);
    progress.line(`${referenceText(ref)}: ${platformText(chosen.platform ?? hostPlatform())} manifest ${chosen.digest.slice(0, 19)}`);
    m = await client.manifest(chosen.digest);
    parsed = JSON.parse(m.body.toString("utf8"));
    if (isIndex(m.mediaType, parsed)) throw new StageError("image", `${what}: the index points at another index; nsrun follows one level`);
  }
  const manifest: Manifest = parseManifest(m.body.toString("utf8"), `${what}: manifest ${m.digest.slice(0, 19)}`);

  // A config is JSON read whole: capped like a manifest before anything is downloaded.
  if (!Number.isSafeInteger(manifest.config.size) || manifest.config.size > MAX_JSON) throw new StageError("image", `${what}: config ${manifest.config.digest.slice(0, 19)}: its size ${manifest.config.size} is over 4 MiB; refused`);
  const configPath = await fetchBlob(client, store, manifest.config, `config ${manifest.config.digest.slice(7, 19)}`, null, opts);
  const cfg = parseImageConfig(await Bun.file(configPath).text(), `${what}: config`);
  if (cfg.diffIds.length !== manifest.layers.length) throw new StageError("image", `${what}: the manifest lists ${manifest.layers.length} layers, the config ${cfg.diffIds.length} diff ids`);

  // Download the layers, a few at once, each with its own progress bar.
  const paths: string[] = new Array(manifest.layers.length);
  let next = 0;
  const worker = async () => {
    while (next < manifest.layers.length) {
      const i = next++;
      const d = manifest.layers[i];
      paths[i] = await fetchBlob(client, store, d, `layer ${i + 1}/${manifest.layers.length} ${d.digest.slice(7, 19)}`, progress, opts);
    }
  };
  await Promise.all(Array.from({ length: Math.min(opts.parallel ?? 3, manifest.layers.length) }, worker));

  const spec: ImageSpec = {
    id: manifest.config.digest,
    config: cfg.config,
    architecture: cfg.architecture,
    os: cfg.os,
    created: cfg.created,
    layers: manifest.layers.map((d, i) => ({ digest: d.digest, diffId: cfg.diffIds[i], size: d.size, open: () => Bun.file(paths[i]).stream() })),
  };
  const blobs = [manifest.config.digest, ...manifest.layers.map((d) => d.digest)];
  return unpackImage(store, opts.name ?? referenceText(ref), { kind: "registry", ref: referenceText(ref) }, spec, { ...opts, progress, blobs });
}

/** One blob into STORE/blobs/sha256/HEX, resumed from HEX.partial, checked against its digest. */
export async function fetchBlob(client: RegistryClient, store: ImageStore, d: Descriptor, label: string, progress: Progress | null, opts: PullOptions): Promise<string> {
  const what = `image pull ${q(referenceText(client.ref))}: ${label}`;
  const final = join(store.root, blobPath(d.digest, what));
  if (existsSync(final)) {
    // A cached blob is checked again before it is used: the store is only files, and a file can change.
    if (await cachedIntact(final, d.digest)) {
      progress?.line(`${label}: already in the store`);
      return final;
    }
    const line = `${label}: the copy in the store is not its digest any more; downloading it again`;
    if (progress) progress.line(line);
    else opts.log?.(line);
    closeAndDrop(final);
  }
  const partial = `${final}.partial`;
  const fd = lockPartial(partial, label, progress);
  try {
    if (existsSync(final)) {
      // Another nsrun finished it while we waited; the .partial we locked is a new, empty one: ours to drop.
      closeAndDrop(partial);
      return final;
    }
    const task = progress?.start(`${label}`, d.size) ?? null;
    try {
      await download(client, d, fd, partial, task, what, opts.attempts ?? 5, (l) => progress?.line(l));
    } catch (e) {
      task?.fail("failed");
      // Nothing came: no empty .partial is left (a later pull makes its own).
      if (fstatSync(fd).size === 0) closeAndDrop(partial);
      throw e;
    }
    renameSync(partial, final);
    task?.done(`${formatBytes(d.size)} done`);
    return final;
  } finally {
    closeSync(fd);
  }
}

/** Whether a blob file's sha256 is its digest. */
async function cachedIntact(path: string, digest: string): Promise<boolean> {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch {
    return false;
  }
  try {
    return `sha256:${(await hashFile(fd, fstatSync(fd).size)).digest("hex")}` === digest;
  } finally {
    closeSync(fd);
  }
}

/** Open and flock HEX.partial; if the file we locked was dropped meanwhile (a bad blob), lock the new one. */
function lockPartial(partial: string, label: string, progress: Progress | null): number {
  for (;;) {
    const fd = openSync(partial, "a+", 0o600);
    if (!fs.flock(fd, fs.LOCK_EX | fs.LOCK_NB, partial)) {
      progress?.line(`${label}: waiting for another nsrun that is downloading it`);
      fs.flock(fd, fs.LOCK_EX, partial);
    }
    try {
      if (fs.inodeOf(fd, partial) === BigInt(statSync(partial, { bigint: true }).ino)) return fd;
    } catch {
      // gone: open it again
    }
    closeSync(fd);
  }
}

async function hashFile(fd: number, size: number): Promise<Bun.CryptoHasher> {
  const hash = new Bun.CryptoHasher("sha256");
  const buf = Buffer.alloc(1 << 20);
  let off = 0;
  while (off < size) {
    const n = readSync(fd, buf, 0, Math.min(buf.length, size - off), off);
    if (n <= 0) break;
    hash.update(buf.subarray(0, n));
    off += n;
  }
  return hash;
}

async function download(client: RegistryClient, d: Descriptor, fd: number, partial: string, task: Task | null, what: string, attempts: number, note: (line: string) => void): Promise<void> {
  let have = fstatSync(fd).size;
  if (have > d.size) {
    ftruncateSync(fd, 0);
    have = 0;
  }
  // What an interrupted run left counts toward the digest: hash it first.
  let hash = await hashFile(fd, have);
  if (have > 0) note(`${what.split(": ").pop()}: resuming at ${formatBytes(have)} of ${formatBytes(d.size)}`);
  task?.set(have);
  for (let attempt = 1; ; attempt++) {
    let res: Response;
    try {
      res = have >= d.size ? (null as unknown as Response) : await client.blob(d.digest, have);
    } catch (e) {
      if (attempt >= attempts || e instanceof StageError) throw e;
      note(`${what.split(": ").pop()}: ${(e as Error).message}; trying again`);
      continue;
    }
    if (res) {
      if (res.status === 200 && have > 0) {
        // The registry ignored the Range: start over.
        ftruncateSync(fd, 0);
        have = 0;
        hash = new Bun.CryptoHasher("sha256");
        task?.set(0);
      } else if (res.status === 206) {
        const start = Number(/bytes (\d+)-/.exec(res.headers.get("content-range") ?? "")?.[1] ?? -1);
        if (start !== have) {
          await res.body?.cancel();
          throw new StageError("image", `${what}: asked for bytes from ${have}, the registry sent a range from ${start}`);
        }
      } else await client.check(res, `GET blob ${d.digest}`);
      try {
        for await (const chunk of res.body as ReadableStream<Uint8Array>) {
          if (have + chunk.length > d.size) throw new StageError("image", `${what}: the registry sent more than the ${d.size} bytes the manifest says`);
          let off = 0;
          try {
            while (off < chunk.length) off += writeSync(fd, chunk, off, chunk.length - off, have + off);
          } catch (e) {
            // The store's disk, not the network: name it, and leave no partial file taking the space.
            const code = (e as NodeJS.ErrnoException).code ?? "EIO";
            const why = code === "ENOSPC" ? "no space left on the device" : code === "EDQUOT" ? "disk quota exceeded" : code === "EROFS" ? "the store is on a read-only file system" : (e as Error).message;
            throw new StageError("image", `${what}: cannot write ${q(partial)}: ${why} (${code})`, code === "EROFS" ? "set NSRUN_STORE to a folder on a writable file system" : "free some space (nsrun image prune removes unused blobs) or set NSRUN_STORE to another disk");
          }
          hash.update(chunk);
          have += chunk.length;
          task?.add(chunk.length);
        }
      } catch (e) {
        if (e instanceof RegistryTimeout) throw e; // what came so far stays, for the next pull to continue
        if (e instanceof StageError) {
          closeAndDrop(partial);
          throw e;
        }
        if (attempt >= attempts) throw new StageError("image", `${what}: the connection dropped at ${formatBytes(have)} of ${formatBytes(d.size)} (${(e as Error).message}); run the pull again to resume`);
        note(`${what.split(": ").pop()}: the connection dropped at ${formatBytes(have)}; resuming`);
        continue;
      }
    }
    if (have < d.size) {
      if (attempt >= attempts) throw new StageError("image", `${what}: the registry sent ${have} of ${d.size} bytes; run the pull again to resume`);
      note(`${what.split(": ").pop()}: the transfer stopped at ${formatBytes(have)}; resuming`);
      continue;
    }
    const got = `sha256:${hash.digest("hex")}`;
    if (got !== d.digest) {
      closeAndDrop(partial);
      throw new StageError("image", `${what}: digest mismatch: expected ${d.digest}, the registry sent content with digest ${got}`);
    }
    return;
  }
}

/** A blob that can never become right (wrong digest, too long) is dropped, not resumed. */
function closeAndDrop(partial: string): void {
  try {
    unlinkSync(partial);
  } catch {
    // already gone
  }
}
