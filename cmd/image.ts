// `nsrun image import|pull|ls|inspect|rm|prune`: root filesystems from images, in a local store
// (core/image/ does the work; docs/images.md describes it). Status lines go to stderr as
// `nsrun: ...`; what a script wants (an id, a table, JSON) goes to stdout.
import { writeSync } from "node:fs";
import { type ArgsDef, defineCommand } from "citty";
import { StageError } from "../core/errors";

const log = (line: string) => process.stderr.write(`nsrun: ${line}\n`);
const out = (text: string) => writeSync(1, text);

/** `image` needs a NAME or SOURCE: citty would pass undefined on. */
function required(value: unknown, what: string, usage: string): string {
  if (typeof value === "string" && value !== "") return value;
  throw new StageError("image", `image ${usage}: missing ${what}; see nsrun image --help`);
}

const importCmd = defineCommand({
  meta: { name: "import", description: "Unpack a rootfs tarball (plain, gzip, xz, zstd), a docker-archive or an OCI image layout into the store" },
  args: {
    source: { type: "positional", required: false, description: "The tarball, archive or layout directory; ARCHIVE:TAG picks one image of several", valueHint: "SOURCE" },
    name: { type: "string", description: "The image's name in the store (default: the archive's tag, or the file name)", valueHint: "NAME" },
  },
  async run({ args }) {
    const { importImage } = await import("../core/image/import");
    const r = await importImage(required(args.source, "SOURCE", "import SOURCE"), { name: args.name, log });
    out(`${r.id}\n`);
  },
});

const pull = defineCommand({
  meta: { name: "pull", description: "Download an image from a registry (OCI distribution API) and unpack it into the store" },
  args: {
    ref: { type: "positional", required: false, description: "[HOST[:PORT]/]PATH[:TAG][@sha256:DIGEST], e.g. localhost:5000/test/busybox:latest", valueHint: "REF" },
    name: { type: "string", description: "The image's name in the store (default: REF)", valueHint: "NAME" },
    "tls-verify": { type: "boolean", description: "Require HTTPS with a verified certificate (default: yes, except for localhost and 127.0.0.1, which use plain HTTP)" },
  },
  async run({ args }) {
    const { pullImage } = await import("../core/image/pull");
    const r = await pullImage(required(args.ref, "REF", "pull REF"), { name: args.name, log, tlsVerify: args["tls-verify"] as boolean | undefined });
    out(`${r.id}\n`);
  },
});

const ls = defineCommand({
  meta: { name: "ls", description: "List the images in the store" },
  args: { json: { type: "boolean", description: "Print the images' records as JSON" } },
  async run({ args }) {
    const { ImageStore } = await import("../core/image/store");
    const { formatBytes } = await import("../core/image/progress");
    const store = new ImageStore();
    const images = store.list();
    // A broken image (its record unreadable) is listed too, by its folder id, so that it can be removed.
    const broken = store.scan().flatMap((e) => ("problem" in e ? [e] : []));
    if (args.json) return void out(`${JSON.stringify([...images, ...broken.map((b) => ({ broken: true, folder: b.id, problem: b.problem }))], null, 2)}\n`);
    const rows = [["NAME", "ID", "SOURCE", "LAYERS", "SIZE", "ADDED"]];
    for (const r of images) rows.push([r.name, r.id.replace(/^sha256:/, "").slice(0, 12), r.source.kind, String(r.layers.length), formatBytes(r.size), r.added.replace("T", " ").slice(0, 19)]);
    for (const b of broken) rows.push([`(broken; nsrun image rm ${b.id})`, "-", "broken", "-", "-", "-"]);
    const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => row[i].length)));
    out(rows.map((row) => row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i]))).join("  ")).join("\n") + "\n");
  },
});

const inspect = defineCommand({
  meta: { name: "inspect", description: "Print an image's record as JSON: source, config (the box defaults), layers, rootfs" },
  args: { name: { type: "positional", required: false, description: "The image", valueHint: "NAME" } },
  async run({ args }) {
    const { ImageStore, notFound } = await import("../core/image/store");
    const store = new ImageStore();
    const name = required(args.name, "NAME", "inspect NAME");
    const r = store.read(name);
    if (!r) throw notFound(name, store.root);
    out(`${JSON.stringify({ ...r, rootfs: `${store.dirOf(name)}/rootfs` }, null, 2)}\n`);
  },
});

const rm = defineCommand({
  meta: { name: "rm", description: "Remove an image (refused while a box runs on it)" },
  args: { name: { type: "positional", required: false, description: "The image", valueHint: "NAME" } },
  async run({ args }) {
    const { ImageStore } = await import("../core/image/store");
    out(`${(await new ImageStore().remove(required(args.name, "NAME", "rm NAME"), log)).name}\n`);
  },
});

const prune = defineCommand({
  meta: { name: "prune", description: "Remove blobs no image uses, interrupted downloads and leftovers of interrupted imports" },
  async run() {
    const { ImageStore } = await import("../core/image/store");
    const { formatBytes } = await import("../core/image/progress");
    const r = await new ImageStore().prune(log);
    log(`removed ${r.blobs} blob${r.blobs === 1 ? "" : "s"} (${formatBytes(r.bytes)}) and ${r.temporaries} leftover${r.temporaries === 1 ? "" : "s"}`);
  },
});

/**
 * Every flag of every subcommand, also on `image` itself: cmd/cli.ts checks flags against the
 * command it dispatches to (`image`), before citty picks the subcommand.
 */
export const imageFlags = { ...importCmd.args, ...pull.args, ...ls.args } as ArgsDef;

export default defineCommand({
  meta: { name: "image", description: "Root filesystems from images: import, pull, ls, inspect, rm, prune" },
  args: Object.fromEntries(Object.entries(imageFlags).filter(([, d]) => (d as { type?: string }).type !== "positional")) as ArgsDef,
  subCommands: { import: importCmd, pull, ls, inspect, rm, prune },
});
