// A registry is hostile input (issue 21): `nsrun image pull` through dist/nsrun, as root and as an
// ordinary user, against a misbehaving registry of the test's own (Bun.serve and Bun.listen on
// 127.0.0.1): a redirect to file://, an endless manifest, one that never answers or stalls halfway,
// a config the manifest says is huge, a cached blob changed on disk, two pulls at once, a full disk.
// Each has its control: the same registry behaving pulls fine.
import { afterAll, describe, expect, test } from "bun:test";
import { spawnSync } from "bun";
import { chownSync, existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { compress, imageConfig, sha256 } from "../fixtures/images/build";
import { writeTar } from "../fixtures/images/tar-writer";
import { type Actor, command, setupTestArea } from "./helpers";

const area = setupTestArea();
const PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** What the registry serves, and how it misbehaves; a test sets `mode`. */
type Mode = "honest" | "redirect-file" | "redirect-http" | "endless-manifest" | "huge-config" | "stall-blob" | "error-text";
let mode: Mode = "honest";
const layer = writeTar([{ path: "etc/", type: "dir" }, { path: "etc/hello", data: "hello\n" }]);
const layerBlob = compress(layer, "gzip");
const config = imageConfig([layer], { Cmd: ["/bin/echo", "honest"] });
const blobs = new Map([
  [sha256(config), config],
  [sha256(layerBlob), layerBlob],
]);
const manifestFor = (configSize = config.length) =>
  Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: sha256(config), size: configSize },
      layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: sha256(layerBlob), size: layerBlob.length }],
    }),
  );
const MEDIA = { "Content-Type": "application/vnd.oci.image.manifest.v1+json" };

const server = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  idleTimeout: 0,
  fetch(req) {
    const url = new URL(req.url);
    if (url.pathname === "/v2/") return new Response("{}");
    if (url.pathname.includes("/manifests/")) {
      if (mode === "redirect-file" && !url.searchParams.has("moved")) return new Response(null, { status: 302, headers: { Location: "file:///etc/passwd" } });
      if (mode === "redirect-http" && !url.searchParams.has("moved")) return new Response(null, { status: 302, headers: { Location: `${url.pathname}?moved=1` } });
      if (mode === "endless-manifest") {
        const chunk = Buffer.alloc(64 * 1024, 0x20);
        return new Response(new ReadableStream({ pull: (c) => c.enqueue(chunk) }), { headers: MEDIA });
      }
      if (mode === "error-text") return new Response(JSON.stringify({ errors: [{ code: "DENIED", message: `\u001b[31mred\u001b[0m\nsecond line ${"x".repeat(2000)}` }] }), { status: 403 });
      return new Response(manifestFor(mode === "huge-config" ? 3_000_000_000 : undefined), { headers: MEDIA });
    }
    const digest = url.pathname.slice(url.pathname.lastIndexOf("/") + 1);
    const data = blobs.get(digest);
    if (!data) return new Response("{}", { status: 404 });
    if (mode === "stall-blob" && data === layerBlob) {
      // Half the layer, then nothing: the connection stays open and quiet.
      let sent = false;
      return new Response(new ReadableStream({ pull: async (c) => (sent ? new Promise(() => {}) : ((sent = true), c.enqueue(data.subarray(0, data.length >> 1)))) }), { headers: { "Content-Length": String(data.length) } });
    }
    return new Response(data, { headers: { "Content-Length": String(data.length) } });
  },
});
// A registry that accepts connections and never answers.
const silent = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
afterAll(() => {
  server.stop(true);
  silent.stop(true);
  area.cleanup();
});
const host = `127.0.0.1:${server.port}`;

let serial = 0;
function storeOf(a: Actor): string {
  const d = join(a.area, `pull-store-${++serial}`);
  mkdirSync(d, { recursive: true });
  if (a.name === "user") chownSync(d, a.uid, a.gid);
  return d;
}

/** nsrun as the actor, without blocking this process (the registry answers from its event loop). */
async function nsrun(a: Actor, store: string, args: string[], env: Record<string, string> = {}) {
  const p = Bun.spawn(command(area.bin, a, args), { env: { PATH, NSRUN_STORE: store, HOME: store, ...env }, cwd: a.area, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, stdout, stderr, errors: stderr.split("\n").filter((l) => l && !/^nsrun: (config|layer) [0-9a-f]|^nsrun: .*: (done|unpacking)|^nsrun: unpacking|already in the store/.test(l)) };
}
/** What a failed pull may leave: nothing but empty folders. */
function leftovers(store: string): string[] {
  const out: string[] = [];
  for (const sub of ["blobs/sha256", "images", "tmp"]) {
    if (existsSync(join(store, sub))) out.push(...readdirSync(join(store, sub)).map((n) => `${sub}/${n}`));
  }
  return out;
}

describe.each(area.actors)("a misbehaving registry ($name)", (a) => {
  test("a redirect to file:// is refused, naming it (control: a redirect to http on the same registry is followed)", async () => {
    mode = "redirect-file";
    const store = storeOf(a);
    const r = await nsrun(a, store, ["image", "pull", `${host}/test/img:v1`]);
    expect(r.code).toBe(125);
    expect(r.errors).toEqual([`nsrun: image pull "${host}/test/img:v1": a redirect from http://${host} pointed to "file:///etc/passwd"; nsrun follows only http and https`]);
    expect(leftovers(store)).toEqual([]);
    mode = "redirect-http";
    const ok = await nsrun(a, storeOf(a), ["image", "pull", `${host}/test/img:v1`]);
    expect([ok.code, ok.stdout]).toEqual([0, `${sha256(config)}\n`]);
  });

  test("an endless manifest stops at 4 MiB (control: the honest manifest)", async () => {
    mode = "endless-manifest";
    const store = storeOf(a);
    const r = await nsrun(a, store, ["image", "pull", `${host}/test/img:v1`]);
    expect(r.code).toBe(125);
    expect(r.errors).toEqual([`nsrun: image pull "${host}/test/img:v1": manifest v1: larger than 4 MiB; refused`]);
    mode = "honest";
    expect((await nsrun(a, storeOf(a), ["image", "pull", `${host}/test/img:v1`])).code).toBe(0);
  });

  test("a config the manifest says is 3 GB is refused before any download (control: its real size)", async () => {
    mode = "huge-config";
    const store = storeOf(a);
    const r = await nsrun(a, store, ["image", "pull", `${host}/test/img:v1`]);
    expect(r.code).toBe(125);
    expect(r.errors).toEqual([`nsrun: image pull "${host}/test/img:v1": config ${sha256(config).slice(0, 19)}: its size 3000000000 is over 4 MiB; refused`]);
    expect(leftovers(store)).toEqual([]);
  });

  test("a registry that never answers, or stops sending, ends the pull with one line (control: one that answers)", async () => {
    const store = storeOf(a);
    const quiet = await nsrun(a, store, ["image", "pull", `127.0.0.1:${silent.port}/test/img:v1`], { NSRUN_REGISTRY_TIMEOUT: "1" });
    expect(quiet.code).toBe(125);
    expect(quiet.stderr).toBe(`nsrun: image pull "127.0.0.1:${silent.port}/test/img:v1": 127.0.0.1:${silent.port} sent nothing for 1 s; giving up (NSRUN_REGISTRY_TIMEOUT sets the seconds)\n  hint: run the pull again when the registry answers; a download continues where it stopped\n`);
    mode = "stall-blob";
    const stalled = await nsrun(a, store, ["image", "pull", `${host}/test/img:v1`], { NSRUN_REGISTRY_TIMEOUT: "1" });
    expect(stalled.code).toBe(125);
    expect(stalled.errors[0]).toBe(`nsrun: image pull "${host}/test/img:v1": ${host} sent nothing for 1 s; giving up (NSRUN_REGISTRY_TIMEOUT sets the seconds)`);
    // What came is kept, and the next pull goes on from there.
    expect(leftovers(store)).toContain(`blobs/sha256/${sha256(layerBlob).slice(7)}.partial`);
    mode = "honest";
    const resumed = await nsrun(a, store, ["image", "pull", `${host}/test/img:v1`], { NSRUN_REGISTRY_TIMEOUT: "1" });
    expect(resumed.code).toBe(0);
    expect(resumed.stderr).toContain("resuming at");
    expect(leftovers(store).filter((n) => n.endsWith(".partial"))).toEqual([]);
  });

  test("a registry's error text comes as one line without control characters (control: the code is quoted)", async () => {
    mode = "error-text";
    const r = await nsrun(a, storeOf(a), ["image", "pull", `${host}/test/img:v1`]);
    expect(r.code).toBe(125);
    expect(r.stderr.trim().split("\n").length).toBe(1);
    expect(r.stderr).toContain("403 Forbidden (DENIED: \\u001b[31mred\\u001b[0m\\nsecond line xxx");
    expect(r.stderr).not.toContain("\u001b");
  });

  test("a cached blob changed on disk is checked and downloaded again, never reused (control: an intact one is reused)", async () => {
    mode = "honest";
    const store = storeOf(a);
    expect((await nsrun(a, store, ["image", "pull", `${host}/test/img:v1`, "--name", "first"])).code).toBe(0);
    const again = await nsrun(a, store, ["image", "pull", `${host}/test/img:v1`, "--name", "second"]);
    expect(again.stderr).toContain("already in the store");
    // A changed config would change the command of the next image pulled with it.
    const cached = join(store, "blobs/sha256", sha256(config).slice(7));
    const tampered = Buffer.from(config.toString().replace("honest", "tamper"));
    writeFileSync(cached, tampered);
    const third = await nsrun(a, store, ["image", "pull", `${host}/test/img:v1`, "--name", "third"]);
    expect(third.code).toBe(0);
    expect(third.stderr).toContain("the copy in the store is not its digest any more; downloading it again");
    const inspect = spawnSync(command(area.bin, a, ["image", "inspect", "third"]), { env: { PATH, NSRUN_STORE: store, HOME: store }, stdout: "pipe" });
    expect(JSON.parse(inspect.stdout.toString()).config.cmd).toEqual(["/bin/echo", "honest"]);
  });

  test("two pulls of the same image at once both succeed and leave no .partial file", async () => {
    mode = "honest";
    const store = storeOf(a);
    const [one, two] = await Promise.all([nsrun(a, store, ["image", "pull", `${host}/test/img:v1`, "--name", "one"]), nsrun(a, store, ["image", "pull", `${host}/test/img:v1`, "--name", "two"])]);
    expect([one.code, two.code]).toEqual([0, 0]);
    expect(leftovers(store).filter((n) => n.startsWith("blobs/")).sort()).toEqual([`blobs/sha256/${sha256(config).slice(7)}`, `blobs/sha256/${sha256(layerBlob).slice(7)}`].sort());
    expect(readdirSync(join(store, "tmp"))).toEqual([]);
  });
});

describe.skipIf(process.getuid?.() !== 0)("a full disk (root: a small tmpfs as the store)", () => {
  test("ENOSPC is named, with no partial left (control: the same pull with room)", async () => {
    const big = Buffer.from(crypto.getRandomValues(new Uint8Array(3 << 20)));
    const bigLayer = writeTar([{ path: "big", data: big }]);
    const bigBlob = compress(bigLayer, "gzip");
    const tight = join(area.actors[0].area, "tight");
    mkdirSync(tight);
    expect(spawnSync(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", tight]).exitCode).toBe(0);
    const cfg = imageConfig([bigLayer], { Cmd: ["/x"] });
    blobs.set(sha256(cfg), cfg);
    blobs.set(sha256(bigBlob), bigBlob);
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: sha256(cfg), size: cfg.length },
        layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: sha256(bigBlob), size: bigBlob.length }],
      }),
    );
    const local = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch(req) {
        const url = new URL(req.url);
        if (url.pathname.includes("/manifests/")) return new Response(manifest, { headers: MEDIA });
        const data = blobs.get(url.pathname.slice(url.pathname.lastIndexOf("/") + 1));
        return data ? new Response(data) : new Response("{}", { status: 404 });
      },
    });
    try {
      const r = await nsrun(area.actors[0], tight, ["image", "pull", `127.0.0.1:${local.port}/test/big:v1`]);
      expect(r.code).toBe(125);
      expect(r.errors[0]).toContain(`: cannot write "${tight}/blobs/sha256/${sha256(bigBlob).slice(7)}.partial": no space left on the device (ENOSPC)`);
      expect(r.errors.length).toBe(2); // the message and its hint
      expect(leftovers(tight).filter((n) => n.endsWith(".partial"))).toEqual([]);
      const roomy = join(area.actors[0].area, "roomy");
      mkdirSync(roomy);
      expect((await nsrun(area.actors[0], roomy, ["image", "pull", `127.0.0.1:${local.port}/test/big:v1`])).code).toBe(0);
    } finally {
      local.stop(true);
      spawnSync(["umount", tight]);
    }
  });
});
