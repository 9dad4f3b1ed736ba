// `nsrun image pull` against registries on 127.0.0.1 only: Debian's docker-registry with images
// pushed by skopeo, and a fake registry (fixtures/images/registries.ts) that lies about a digest,
// cuts a download halfway, serves a multi-platform index, demands a bearer token or a password,
// or redirects blobs to storage on another origin.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Progress } from "../core/image/progress";
import { pullImage } from "../core/image/pull";
import { ImageStore, resolveImage } from "../core/image/store";
import { busyboxLayer, compress, DEFAULTS, haveStaticBusybox, imageConfig, sha256, writeOciLayout } from "../fixtures/images/build";
import { fakeImage, has, skopeoPush, startCuttingBlobStorage, startDockerRegistry, startFakeRegistry } from "../fixtures/images/registries";
import { writeTar } from "../fixtures/images/tar-writer";
import { imageCli, isRoot, testUser, userDir, workDir } from "../fixtures/images/test-support";

const missing = [
  haveStaticBusybox() ? null : "busybox-static",
  has("docker-registry") ? null : "docker-registry",
  has("skopeo") ? null : "skopeo",
].filter(Boolean);
const skipReal = missing.length ? `needs ${missing.join(", ")} (apt-get install -y ${missing.join(" ")})` : null;
if (skipReal) console.warn(`image-pull.test.ts: the docker-registry tests are skipped: ${skipReal}`);

let work: ReturnType<typeof workDir>;
const lines: string[] = [];
const quiet = () => ({ log: (l: string) => lines.push(l), progress: new Progress((t) => lines.push(t), false) });
const savedEnv = { ...process.env };

beforeAll(() => {
  work = workDir("pull");
  // Credentials only from the file each test names; never the machine's own.
  process.env.HOME = join(work.dir, "home");
  delete process.env.XDG_RUNTIME_DIR;
  delete process.env.DOCKER_CONFIG;
  process.env.REGISTRY_AUTH_FILE = join(work.dir, "no-auth.json");
});
afterAll(() => {
  process.env = savedEnv;
  work.cleanup();
});

describe.skipIf(skipReal !== null)("from docker-registry (pushed with skopeo)", () => {
  let registry: Awaited<ReturnType<typeof startDockerRegistry>>;
  const layer = busyboxLayer();
  const extra = writeTar([{ path: "etc/motd", data: "second layer\n" }]);
  beforeAll(async () => {
    mkdirSync(join(work.dir, "registry"));
    registry = await startDockerRegistry(join(work.dir, "registry"));
    writeOciLayout(join(work.dir, "oci-v1"), [layer], { tag: "v1" });
    writeOciLayout(join(work.dir, "oci-v2"), [layer, extra], { tag: "v2" });
    skopeoPush(join(work.dir, "oci-v1"), "v1", `${registry.host}/test/busybox:v1`);
    skopeoPush(join(work.dir, "oci-v2"), "v2", `${registry.host}/test/busybox:v2`);
  });
  afterAll(async () => registry?.stop());

  test.skipIf(!isRoot)("pull, blobs checked and cached by digest and shared between images; rm and prune", async () => {
    const store = new ImageStore(join(work.dir, "store-real"));
    const r1 = await pullImage(`${registry.host}/test/busybox:v1`, { store, ...quiet() });
    expect(r1.name).toBe(`${registry.host}/test/busybox:v1`);
    const img = resolveImage(`${registry.host}/test/busybox:v1`, store);
    expect(readFileSync(join(img.rootfs, "bin/busybox")).equals(readFileSync("/bin/busybox"))).toBe(true);
    expect(statSync(join(img.rootfs, "usr/bin/busybox-hardlink")).ino).toBe(statSync(join(img.rootfs, "bin/busybox")).ino);
    expect(lstatSync(join(img.rootfs, "home/user/notes.txt")).uid).toBe(1000);
    expect(img.config).toEqual({ env: DEFAULTS.Env, entrypoint: DEFAULTS.Entrypoint, cmd: DEFAULTS.Cmd, workingDir: "/home/user", user: "1000:1000" } as never);
    expect(readdirSync(store.blobDir).sort()).toEqual(r1.blobs.map((d) => d.slice(7)).sort());
    // The second image shares the first layer: it is not downloaded again.
    lines.length = 0;
    const r2 = await pullImage(`${registry.host}/test/busybox:v2`, { store, ...quiet() });
    expect(lines.join("\n")).toContain(`layer 1/2 ${sha256(compress(layer, "gzip")).slice(7, 19)}: already in the store`);
    expect(readFileSync(join(resolveImage(r2.name, store).rootfs, "etc/motd"), "utf8")).toBe("second layer\n");
    expect(readdirSync(store.blobDir).length).toBe(4); // two configs, two layers
    await store.remove(r1.name);
    expect((await store.prune()).blobs).toBe(1); // v1's config; the shared layer stays for v2
    expect(readdirSync(store.blobDir).length).toBe(3);
    await store.remove(r2.name);
    expect((await store.prune()).blobs).toBe(3);
    expect(readdirSync(store.blobDir)).toEqual([]);
  });

  test("as an ordinary user (nsrun-test, or the caller), through the command line: owners through the user's subordinate ids, or the user's", () => {
    const user = testUser();
    const store = userDir(join(work.dir, "store-user"), user);
    const r = imageCli(["pull", `${registry.host}/test/busybox:v2`, "--name", "bb"], { store, user, env: { REGISTRY_AUTH_FILE: join(work.dir, "no-auth.json") } });
    expect(r.code).toBe(0);
    const rec = JSON.parse(imageCli(["inspect", "bb"], { store, user }).stdout);
    // nsrun-test has ranges once test/helpers.ts has given it 420000000:65536; a caller may have none.
    const sub = rec.owners.map === "subordinate";
    expect(r.stderr).toContain(sub ? "bb:latest: the layers' owners are kept through your subordinate ids" : "bb:latest: unpacked without subordinate ids");
    // The layer gave /home/user 1000:1000: image uid 1000 is the 1000th subordinate id. (Not what is
    // in it: a caller with ranges, running these tests, may not look into /home/user, 0750, then.)
    expect(lstatSync(join(rec.rootfs, "home/user")).uid).toBe(sub ? rec.owners.uidMap[1].outside + 999 : user.uid);
    expect(readFileSync(join(rec.rootfs, "etc/motd"), "utf8")).toBe("second layer\n");
    expect(imageCli(["rm", "bb"], { store, user }).code).toBe(0);
    expect(existsSync(rec.rootfs)).toBe(false);
  });

  test("an unknown tag: one line naming the reference and the registry's error, exit 125", () => {
    const store = userDir(join(work.dir, "store-cli"), null);
    const r = imageCli(["pull", `${registry.host}/test/busybox:nope`], { store });
    expect(r.code).toBe(125);
    expect(r.stderr.trim()).toBe(`nsrun: image pull "${registry.host}/test/busybox:nope": GET /v2/test/busybox/manifests/nope: 404 Not Found (MANIFEST_UNKNOWN: manifest unknown)`);
  });
});

/** A small image for the fake registry: one gzip layer with a few files, big enough to cut in half. */
function smallImage(opts: { lie?: boolean } = {}) {
  const layer = writeTar([{ path: "bin/", type: "dir" }, { path: "bin/tool", data: Buffer.alloc(300_000, 7), mode: 0o755 }, { path: "etc/hostname", data: "fake\n" }]);
  const blob = compress(layer, "gzip");
  const big = Buffer.concat([blob]); // a gzip of zeros is small; the cut test uses an incompressible layer below
  const image = fakeImage(imageConfig([layer]), [big], { lieAboutLayer: opts.lie });
  return { layer, blob: big, image };
}

/** An image whose one layer is 8 MB that do not compress: a cut at half leaves MBs on the client's side. */
function randomImage() {
  const data = new Uint8Array(8 << 20);
  for (let i = 0; i < data.length; i += 65536) crypto.getRandomValues(data.subarray(i, i + 65536));
  const layer = writeTar([{ path: "random.bin", data }, { path: "etc/hostname", data: "random\n" }]);
  const blob = compress(layer, "gzip");
  return { layer, blob, image: fakeImage(imageConfig([layer]), [blob]) };
}

const manifestMap = (repoTag: string, body: Buffer, mediaType = "application/vnd.oci.image.manifest.v1+json") => new Map([[repoTag, { body, mediaType }]]);

describe("from a fake registry", () => {
  test("a blob that is not its digest is refused: no image, no blob, no partial download", async () => {
    const { image } = smallImage({ lie: true });
    const reg = startFakeRegistry({ manifests: manifestMap("test/busybox:lie", image.manifest), blobs: image.blobs });
    try {
      const store = new ImageStore(join(work.dir, "store-lie"));
      await expect(pullImage(`${reg.host}/test/busybox:lie`, { store, ...quiet() })).rejects.toThrow(/layer 1\/1 [0-9a-f]{12}: digest mismatch: expected sha256:[0-9a-f]{64}, the registry sent content with digest sha256:/);
      expect(store.list()).toEqual([]);
      expect(readdirSync(store.blobDir).filter((n) => !n.startsWith(sha256(imageConfig([smallImage().layer])).slice(7)))).toEqual([]);
      // Positive control: the same registry serving honest digests is pulled fine.
      const honest = smallImage();
      const reg2 = startFakeRegistry({ manifests: manifestMap("test/busybox:ok", honest.image.manifest), blobs: honest.image.blobs });
      try {
        await pullImage(`${reg2.host}/test/busybox:ok`, { store, ...quiet() });
        expect(readFileSync(join(resolveImage(`${reg2.host}/test/busybox:ok`, store).rootfs, "etc/hostname"), "utf8")).toBe("fake\n");
      } finally {
        reg2.stop();
      }
    } finally {
      reg.stop();
    }
  });

  test("a download whose connection is cut halfway is resumed with a Range request from where it stopped", async () => {
    const { blob, image } = randomImage();
    const digest = sha256(blob);
    const half = blob.length >> 1;
    const storage = startCuttingBlobStorage(image.blobs, { digest, after: half });
    const reg = startFakeRegistry({ manifests: manifestMap("test/busybox:cut", image.manifest), blobs: image.blobs, redirectBlobsTo: storage.origin });
    try {
      const store = new ImageStore(join(work.dir, "store-cut"));
      lines.length = 0;
      await pullImage(`${reg.host}/test/busybox:cut`, { store, ...quiet() });
      expect(lines.join("\n")).toMatch(/the connection dropped at|the transfer stopped at/);
      // The client resumes from what it had written when the connection died: past 0, at most the half sent.
      const ranges = storage.requests.filter((r) => r.path.endsWith(digest)).map((r) => r.range);
      expect(ranges.length).toBe(2);
      expect(ranges[0]).toBeNull();
      const resumedAt = Number(/^bytes=(\d+)-$/.exec(ranges[1] ?? "")?.[1]);
      expect(resumedAt).toBeGreaterThan(0);
      expect(resumedAt).toBeLessThanOrEqual(half);
      expect(readFileSync(join(store.blobDir, digest.slice(7))).equals(blob)).toBe(true);
      expect(readFileSync(join(resolveImage(`${reg.host}/test/busybox:cut`, store).rootfs, "etc/hostname"), "utf8")).toBe("random\n");
    } finally {
      storage.stop();
      reg.stop();
    }
  });

  test("a pull that gave up leaves its partial blob, and the next pull resumes it", async () => {
    const { blob, image } = randomImage();
    const digest = sha256(blob);
    const half = blob.length >> 1;
    const storage = startCuttingBlobStorage(image.blobs, { digest, after: half });
    const reg = startFakeRegistry({ manifests: manifestMap("test/busybox:again", image.manifest), blobs: image.blobs, redirectBlobsTo: storage.origin });
    try {
      const store = new ImageStore(join(work.dir, "store-again"));
      await expect(pullImage(`${reg.host}/test/busybox:again`, { store, attempts: 1, ...quiet() })).rejects.toThrow(/run the pull again to resume/);
      const kept = statSync(join(store.blobDir, `${digest.slice(7)}.partial`)).size;
      expect(kept).toBeGreaterThan(0);
      expect(kept).toBeLessThanOrEqual(half);
      expect(store.list()).toEqual([]);
      await pullImage(`${reg.host}/test/busybox:again`, { store, ...quiet() });
      expect(storage.requests.filter((r) => r.path.endsWith(digest)).map((r) => r.range)).toEqual([null, `bytes=${kept}-`]);
      expect(existsSync(join(store.blobDir, `${digest.slice(7)}.partial`))).toBe(false);
      expect(readFileSync(join(store.blobDir, digest.slice(7))).equals(blob)).toBe(true);
    } finally {
      storage.stop();
      reg.stop();
    }
  });

  test("an index (manifest list) is resolved to this host's platform", async () => {
    const { image } = smallImage();
    const host = process.arch === "arm64" ? "arm64" : "amd64";
    const other = host === "amd64" ? "arm64" : "amd64";
    const index = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.index.v1+json",
        manifests: [
          { mediaType: "application/vnd.oci.image.manifest.v1+json", digest: `sha256:${"0".repeat(64)}`, size: 1, platform: { os: "linux", architecture: other } },
          { mediaType: "application/vnd.oci.image.manifest.v1+json", digest: sha256(image.manifest), size: image.manifest.length, platform: { os: "linux", architecture: host } },
        ],
      }),
    );
    const manifests = new Map([
      ["test/busybox:multi", { body: index, mediaType: "application/vnd.oci.image.index.v1+json" }],
      ["test/busybox:single", { body: image.manifest, mediaType: "application/vnd.oci.image.manifest.v1+json" }],
    ]);
    const reg = startFakeRegistry({ manifests, blobs: image.blobs });
    try {
      const store = new ImageStore(join(work.dir, "store-index"));
      await pullImage(`${reg.host}/test/busybox:multi`, { store, ...quiet() });
      expect(reg.requests.map((r) => r.path)).toContain(`/v2/test/busybox/manifests/${sha256(image.manifest)}`);
      expect(reg.requests.map((r) => r.path)).not.toContain(`/v2/test/busybox/manifests/sha256:${"0".repeat(64)}`);
    } finally {
      reg.stop();
    }
  });

  for (const scheme of ["bearer", "basic"] as const) {
    test(`${scheme} auth: refused without credentials and with wrong ones, pulled with the auth file's`, async () => {
      const { image } = smallImage();
      const reg = startFakeRegistry({ manifests: manifestMap("test/busybox:auth", image.manifest), blobs: image.blobs, auth: { scheme, username: "alice", password: "s3cret" } });
      const authFile = join(work.dir, `auth-${scheme}.json`);
      const store = new ImageStore(join(work.dir, `store-${scheme}`));
      const ref = `${reg.host}/test/busybox:auth`;
      try {
        await expect(pullImage(ref, { store, ...quiet() })).rejects.toThrow(`image pull "${ref}": ${reg.host} needs credentials, and none were found for it`);
        writeFileSync(authFile, JSON.stringify({ auths: { [reg.host]: { auth: Buffer.from("alice:wrong").toString("base64") } } }));
        process.env.REGISTRY_AUTH_FILE = authFile;
        await expect(pullImage(ref, { store, ...quiet() })).rejects.toThrow(/refused the credentials from ".*auth-/);
        writeFileSync(authFile, JSON.stringify({ auths: { [reg.host]: { auth: Buffer.from("alice:s3cret").toString("base64") } } }));
        await pullImage(ref, { store, ...quiet() });
        expect(readFileSync(join(resolveImage(ref, store).rootfs, "etc/hostname"), "utf8")).toBe("fake\n");
        if (scheme === "bearer") expect(reg.requests.some((r) => r.path === "/token")).toBe(true);
      } finally {
        process.env.REGISTRY_AUTH_FILE = join(work.dir, "no-auth.json");
        reg.stop();
      }
    });
  }

  test("blobs redirected to storage on another origin: the registry's credentials are not sent there", async () => {
    const { image } = smallImage();
    const storage = startFakeRegistry({ manifests: new Map(), blobs: image.blobs });
    const reg = startFakeRegistry({ manifests: manifestMap("test/busybox:redir", image.manifest), blobs: image.blobs, auth: { scheme: "bearer", username: "alice", password: "s3cret" }, redirectBlobsTo: storage.origin });
    const authFile = join(work.dir, "auth-redirect.json");
    writeFileSync(authFile, JSON.stringify({ auths: { [reg.host]: { auth: Buffer.from("alice:s3cret").toString("base64") } } }));
    process.env.REGISTRY_AUTH_FILE = authFile;
    try {
      const store = new ImageStore(join(work.dir, "store-redirect"));
      await pullImage(`${reg.host}/test/busybox:redir`, { store, ...quiet() });
      expect(storage.requests.length).toBeGreaterThan(0);
      expect(storage.requests.every((r) => r.authorization === null)).toBe(true);
      // Positive control: the registry itself did get the token.
      expect(reg.requests.some((r) => r.authorization?.startsWith("Bearer "))).toBe(true);
    } finally {
      process.env.REGISTRY_AUTH_FILE = join(work.dir, "no-auth.json");
      storage.stop();
      reg.stop();
    }
  });
});
