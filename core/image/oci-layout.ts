// OCI image manifests, indexes and configs (docker's v2 schema 2 has the same shape), the host
// platform, and reading an OCI image layout: oci-layout, index.json, blobs/sha256/HEX.
import * as v from "valibot";
import { q } from "../../ffi/libc";
import { keyPath } from "../stages/config";
import { StageError } from "../errors";
import type { FileSet } from "./files";
import { MAX_JSON, verified } from "./files";
import type { ImageConfig } from "./store";

export const MEDIA = {
  ociIndex: "application/vnd.oci.image.index.v1+json",
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  dockerList: "application/vnd.docker.distribution.manifest.list.v2+json",
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
} as const;

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

export interface Descriptor {
  mediaType?: string;
  digest: string;
  size: number;
  platform?: Platform;
  annotations?: Record<string, string>;
}

export interface Manifest {
  mediaType?: string;
  config: Descriptor;
  layers: Descriptor[];
}

/** What an import or pull needs from an image, whatever its format. */
export interface ImageSpec {
  /** The config blob's digest: the image id. */
  id: string;
  config: ImageConfig;
  architecture: string;
  os: string;
  created?: string;
  layers: Array<{ digest: string; diffId: string; size: number; open(): AsyncIterable<Uint8Array> }>;
  /** A name the archive itself gives the image (a tag), if any. */
  refName?: string;
}

const ARCH: Record<string, string> = { x64: "amd64", arm64: "arm64", arm: "arm", ia32: "386", ppc64: "ppc64le", s390x: "s390x", riscv64: "riscv64" };

export function hostPlatform(): Platform {
  return { os: "linux", architecture: ARCH[process.arch] ?? process.arch, ...(process.arch === "arm64" ? { variant: "v8" } : {}) };
}

export const platformText = (p: Platform) => `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ""}`;

export function isIndex(mediaType: string | undefined, parsed: { manifests?: unknown }): boolean {
  return mediaType === MEDIA.ociIndex || mediaType === MEDIA.dockerList || (!mediaType && Array.isArray(parsed.manifests));
}

/** The manifest for this host in an index (manifest list): linux and this CPU, the variant when it says one. */
export function selectPlatform(manifests: Descriptor[], what: string): Descriptor {
  const want = hostPlatform();
  const fits = manifests.filter((m) => m.platform?.os === want.os && m.platform.architecture === want.architecture);
  const best = fits.find((m) => !want.variant || !m.platform?.variant || m.platform.variant === want.variant) ?? fits[0];
  if (best) return best;
  const offered = manifests.map((m) => (m.platform ? platformText(m.platform) : "unknown")).join(", ");
  throw new StageError("image", `${what}: has no image for this host (${platformText(want)}); it offers ${offered || "none"}`);
}

function parseJson<T>(text: string, what: string): T {
  try {
    return JSON.parse(text) as T;
  } catch (e) {
    throw new StageError("image", `${what}: not valid JSON: ${(e as Error).message}`);
  }
}

const DescriptorSchema = v.looseObject({
  mediaType: v.optional(v.string()),
  digest: v.pipe(v.string(), v.regex(/^sha256:[a-f0-9]{64}$/, "expected sha256:<64 hex digits>")),
  size: v.pipe(v.number(), v.integer(), v.minValue(0)),
});
const ManifestSchema = v.looseObject({ config: DescriptorSchema, layers: v.array(DescriptorSchema) });

export function parseManifest(text: string, what: string): Manifest {
  const m = parseJson<Partial<Manifest> & { schemaVersion?: number }>(text, what);
  if (m === null || typeof m !== "object") throw new StageError("image", `${what}: not an image manifest (not a JSON object)`);
  if (m.config !== undefined && Array.isArray(m.layers)) {
    const checked = v.safeParse(ManifestSchema, m);
    if (!checked.success) throw new StageError("image", `${what}: ${schemaProblem(checked.issues)}`);
  }
  if (m.schemaVersion === 1) throw new StageError("image", `${what}: a docker schema 1 manifest, which nsrun does not read; push the image again with a current tool`);
  if (!m.config?.digest || !Array.isArray(m.layers)) throw new StageError("image", `${what}: not an image manifest (no config or layers)`);
  for (const l of m.layers) {
    if (l.mediaType?.endsWith("+encrypted")) throw new StageError("image", `${what}: has encrypted layers, which nsrun cannot unpack`);
  }
  return m as Manifest;
}

const noNul = (what: string) => v.check((x: string) => !x.includes("\0"), `${what} cannot contain NUL`);

/**
 * An image config, as far as nsrun uses it (other keys pass): every value of a wrong type is refused
 * naming its field, as box.toml's are (a string Entrypoint, a number in Cmd, a NUL in Env), never
 * dropped: a box must run the command the image says or none.
 */
const ImageConfigSchema = v.looseObject({
  architecture: v.optional(v.string()),
  os: v.optional(v.string()),
  created: v.optional(v.string()),
  config: v.nullish(
    v.looseObject({
      Env: v.nullish(v.array(v.pipe(v.string(), noNul("a variable"), v.regex(/^[^=]+=/, 'expected "NAME=value"')))),
      Entrypoint: v.nullish(v.array(v.pipe(v.string(), noNul("an argument")))),
      Cmd: v.nullish(v.array(v.pipe(v.string(), noNul("an argument")))),
      WorkingDir: v.optional(v.pipe(v.string(), noNul("a path"))),
      User: v.optional(v.pipe(v.string(), noNul("a user"))),
    }),
  ),
  rootfs: v.looseObject({ diff_ids: v.array(v.pipe(v.string(), v.regex(/^sha256:[a-f0-9]{64}$/, "expected sha256:<64 hex digits>"))) }),
});

/** The first issue of a failed parse as one line: the field's path (config.Cmd[1]) and what was wrong. */
export function schemaProblem(issues: [v.BaseIssue<unknown>, ...v.BaseIssue<unknown>[]]): string {
  const issue = issues[0];
  const at = keyPath(issue.path) ?? "(top level)";
  const got = issue.kind === "schema" ? (issue.received === "undefined" ? "missing" : `got ${issue.received}`) : `got ${JSON.stringify(issue.input)}`;
  const expected = issue.kind === "schema" ? `expected ${issue.expected}` : issue.message;
  return `${at}: ${expected}, ${got}`.replace(/\0/g, "\\0");
}

/** An image config (OCI or docker): the box defaults, the platform, and the layers' diff ids. */
export function parseImageConfig(text: string, what: string): Omit<ImageSpec, "id" | "layers" | "refName"> & { diffIds: string[] } {
  const parsed = v.safeParse(ImageConfigSchema, parseJson<unknown>(text, what));
  if (!parsed.success) throw new StageError("image", `${what}: ${schemaProblem(parsed.issues)}`);
  const c = parsed.output;
  const cfg = c.config ?? {};
  const config: ImageConfig = { env: cfg.Env ?? [], entrypoint: cfg.Entrypoint ?? [], cmd: cfg.Cmd ?? [] };
  if (cfg.WorkingDir) config.workingDir = cfg.WorkingDir;
  if (cfg.User) config.user = cfg.User;
  return { config, architecture: c.architecture ?? "", os: c.os ?? "", created: c.created, diffIds: c.rootfs.diff_ids };
}

/** `blobs/sha256/HEX` for a digest, refusing anything but sha256 and 64 hex digits (the path comes from JSON). */
export function blobPath(digest: string, what: string): string {
  const m = /^sha256:([a-f0-9]{64})$/.exec(digest);
  if (!m) throw new StageError("image", `${what}: unsupported or malformed digest ${q(digest)}`);
  return `blobs/sha256/${m[1]}`;
}

/** Layers with their diff ids, checked against the manifest's count. */
export function layersOf(manifest: Manifest, diffIds: string[], what: string, open: (d: Descriptor, label: string) => AsyncIterable<Uint8Array>): ImageSpec["layers"] {
  if (diffIds.length !== manifest.layers.length) {
    throw new StageError("image", `${what}: the manifest lists ${manifest.layers.length} layers, the config ${diffIds.length} diff ids`);
  }
  return manifest.layers.map((d, i) => {
    const label = `layer ${i + 1}/${manifest.layers.length} ${d.digest.slice(0, 19)}`;
    return { digest: d.digest, diffId: diffIds[i], size: d.size, open: () => open(d, label) };
  });
}

export const REF_NAME = "org.opencontainers.image.ref.name";

/** An OCI image layout (a directory or a tar of one). `tag` picks among several images (DIR:TAG). */
export async function readOciLayout(files: FileSet, tag?: string): Promise<ImageSpec> {
  const where = files.where;
  const layout = parseJson<{ imageLayoutVersion?: string }>(await files.readText("oci-layout"), `${where}: oci-layout`);
  if (!layout.imageLayoutVersion) throw new StageError("image", `${where}: oci-layout has no imageLayoutVersion; not an OCI image layout`);
  const index = parseJson<{ manifests?: Descriptor[] }>(await files.readText("index.json"), `${where}: index.json`);
  const all = index.manifests ?? [];
  let chosen: Descriptor;
  if (tag !== undefined) {
    const named = all.filter((m) => m.annotations?.[REF_NAME] === tag);
    if (named.length === 0) throw new StageError("image", `${where}: has no image tagged ${q(tag)}; it has ${tagsOf(all)}`);
    chosen = named.length === 1 ? named[0] : selectPlatform(named, `${where}:${tag}`);
  } else if (all.length === 1) chosen = all[0];
  else if (all.length > 1 && all.every((m) => m.platform)) chosen = selectPlatform(all, where);
  else throw new StageError("image", `${where}: holds ${all.length} images (${tagsOf(all)}); name one as ${where.slice(1, -1)}:TAG`);
  const refName = chosen.annotations?.[REF_NAME];
  const read = async (d: Descriptor, what: string) => {
    const parts: Uint8Array[] = [];
    let size = 0;
    for await (const c of verified(files.open(blobPath(d.digest, what)), d.digest, what)) {
      size += c.length;
      if (size > MAX_JSON) throw new StageError("image", `${what}: larger than 4 MiB; refused`);
      parts.push(c);
    }
    return Buffer.concat(parts).toString("utf8");
  };
  // An index may point at an index (a multi-platform image): follow it to this host's manifest.
  for (let depth = 0; ; depth++) {
    const what = `${where}: manifest ${chosen.digest.slice(0, 19)}`;
    const text = await read(chosen, what);
    const parsed = parseJson<{ manifests?: Descriptor[]; mediaType?: string }>(text, what);
    if (isIndex(chosen.mediaType ?? parsed.mediaType, parsed)) {
      if (depth > 4) throw new StageError("image", `${what}: indexes nested too deep`);
      chosen = selectPlatform(parsed.manifests ?? [], what);
      continue;
    }
    const manifest = parseManifest(text, what);
    const configWhat = `${where}: config ${manifest.config.digest.slice(0, 19)}`;
    const cfg = parseImageConfig(await read(manifest.config, configWhat), configWhat);
    const layers = layersOf(manifest, cfg.diffIds, where, (d, label) => verified(files.open(blobPath(d.digest, `${where}: ${label}`)), d.digest, `${where}: ${label}`));
    return { id: manifest.config.digest, config: cfg.config, architecture: cfg.architecture, os: cfg.os, created: cfg.created, layers, refName };
  }
}

function tagsOf(all: Descriptor[]): string {
  const tags = all.map((m) => m.annotations?.[REF_NAME]).filter(Boolean);
  return tags.length ? `tags ${tags.map((t) => q(t as string)).join(", ")}` : "no tags";
}
