// docker-archive: what `docker save` and `podman save` write. manifest.json lists, per image, its
// config file, its tags and its layer tars (bottom first), all as paths inside the archive.
import { q } from "../../ffi/libc";
import { StageError } from "../errors";
import type { FileSet } from "./files";
import { verified } from "./files";
import { type ImageSpec, parseImageConfig } from "./oci-layout";

interface ArchiveEntry {
  Config?: string;
  RepoTags?: string[] | null;
  Layers?: string[];
}

/** One image of a docker-archive: the one tagged `tag` if given, else the only one. */
export async function readDockerArchive(files: FileSet, tag?: string): Promise<ImageSpec> {
  const where = files.where;
  let entries: ArchiveEntry[];
  try {
    entries = JSON.parse(await files.readText("manifest.json"));
  } catch (e) {
    throw new StageError("image", `${where}: manifest.json: not valid JSON: ${(e as Error).message}`);
  }
  if (!Array.isArray(entries) || entries.length === 0) throw new StageError("image", `${where}: manifest.json lists no images`);
  const tags = entries.flatMap((e) => e.RepoTags ?? []);
  let entry: ArchiveEntry | undefined;
  if (tag !== undefined) {
    entry = entries.find((e) => (e.RepoTags ?? []).some((t) => t === tag || t === `${tag}:latest` || t.endsWith(`/${tag}`)));
    if (!entry) throw new StageError("image", `${where}: has no image tagged ${q(tag)}; it has ${tags.map((t) => q(t)).join(", ") || "no tags"}`);
  } else if (entries.length === 1) entry = entries[0];
  else throw new StageError("image", `${where}: holds ${entries.length} images (${tags.map((t) => q(t)).join(", ")}); name one as ${where.slice(1, -1)}:TAG`);
  if (!entry.Config || !Array.isArray(entry.Layers)) throw new StageError("image", `${where}: manifest.json: an entry without Config or Layers`);
  const configText = await files.readText(entry.Config);
  const cfg = parseImageConfig(configText, `${where}: ${entry.Config}`);
  const layerPaths = entry.Layers;
  if (cfg.diffIds.length !== layerPaths.length) {
    throw new StageError("image", `${where}: manifest.json lists ${layerPaths.length} layers, the config ${cfg.diffIds.length} diff ids`);
  }
  // The config file is named by its digest in every docker version; the id is its sha256 either way.
  const id = `sha256:${new Bun.CryptoHasher("sha256").update(configText).digest("hex")}`;
  const layers = layerPaths.map((path, i) => {
    const label = `layer ${i + 1}/${layerPaths.length} ${q(path)}`;
    const digest = /([a-f0-9]{64})/.exec(path)?.[1];
    return {
      // Layers here are named by path; the diff id (checked on unpack) is their identity.
      digest: digest ? `sha256:${digest}` : cfg.diffIds[i],
      diffId: cfg.diffIds[i],
      size: 0,
      open: () => (/^blobs\/sha256\/[a-f0-9]{64}$/.test(path) && digest ? verified(files.open(path), `sha256:${digest}`, `${where}: ${label}`) : files.open(path)),
    };
  });
  return { id, config: cfg.config, architecture: cfg.architecture, os: cfg.os, created: cfg.created, layers, refName: entry.RepoTags?.[0] };
}
