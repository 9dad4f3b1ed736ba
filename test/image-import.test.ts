// `nsrun image import` for real, in all three formats, as root and as an ordinary user: images
// built here from the host's busybox-static, unpacked into a store in a temporary folder, and the
// tree checked entry by entry. Also: whiteouts and opaque directories over two layers, the store
// (ls, rm while in use, prune), and that a failed or killed import leaves nothing visible.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawn, spawnSync } from "bun";
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { lgetxattr } from "../ffi/fs";
import { importImage } from "../core/image/import";
import { Progress } from "../core/image/progress";
import { acquireImageUse, ImageStore, resolveImage } from "../core/image/store";
import { busyboxLayer, compress, DEFAULTS, haveStaticBusybox, imageConfig, tarDirectory, writeDockerArchive, writeOciLayout } from "../fixtures/images/build";
import { imageCli, isRoot, listing, modeOf, noRangesUser, startImageCli, userDir, workDir } from "../fixtures/images/test-support";
import { writeTar } from "../fixtures/images/tar-writer";

const noBusybox = haveStaticBusybox() ? null : "busybox-static is not installed (apt-get install busybox-static)";
if (noBusybox) console.warn(`image-import.test.ts: skipped: ${noBusybox}`);
if (!isRoot) console.warn("image-import.test.ts: root imports skipped: the tests run as an ordinary user (run them as root to cover both)");

let work: ReturnType<typeof workDir>;
const sources: Record<string, string> = {};
const quiet = () => {};
const silent = new Progress(() => {}, false);

beforeAll(() => {
  work = workDir("import");
  if (noBusybox) return;
  const layer = busyboxLayer();
  const dir = join(work.dir, "sources");
  mkdirSync(dir);
  for (const [how, ext] of [["none", ""], ["gzip", ".gz"], ["xz", ".xz"], ["zstd", ".zst"]] as const) {
    sources[`rootfs${ext || " (plain)"}`] = join(dir, `busybox.tar${ext}`);
    writeFileSync(sources[`rootfs${ext || " (plain)"}`], compress(layer, how));
  }
  writeDockerArchive(join(dir, "docker-dir"), [layer], { tags: ["busybox:docker"] });
  sources["docker-archive dir"] = join(dir, "docker-dir");
  sources["docker-archive tar"] = tarDirectory(join(dir, "docker-dir"), join(dir, "docker.tar"));
  sources["docker-archive tar.gz (docker save | gzip)"] = join(dir, "docker.tar.gz");
  writeFileSync(sources["docker-archive tar.gz (docker save | gzip)"], compress(readFileSync(sources["docker-archive tar"]), "gzip"));
  writeOciLayout(join(dir, "oci-dir"), [layer], { tag: "oci", compression: "gzip" });
  sources["OCI layout dir (gzip)"] = join(dir, "oci-dir");
  sources["OCI layout tar (gzip)"] = tarDirectory(join(dir, "oci-dir"), join(dir, "oci.tar"));
  writeOciLayout(join(dir, "oci-zstd"), [layer], { tag: "zstd", compression: "zstd" });
  sources["OCI layout dir (zstd)"] = join(dir, "oci-zstd");
});

afterAll(() => work.cleanup());

const hostBusybox = () => readFileSync("/bin/busybox");

/** The busybox image's tree, as fixtures/images/build.ts made it. `owner`: the layers' owners, or everything the user's. */
function checkBusyboxTree(rootfs: string, owner: "kept" | { uid: number; gid: number }) {
  const own = (path: string) => {
    const st = lstatSync(join(rootfs, path));
    return `${st.uid}:${st.gid}`;
  };
  const u = (uid: number, gid: number) => (owner === "kept" ? `${uid}:${gid}` : `${owner.uid}:${owner.gid}`);
  expect(readFileSync(join(rootfs, "bin/busybox")).equals(hostBusybox())).toBe(true);
  expect(modeOf(join(rootfs, "bin/busybox"))).toBe(0o755);
  expect(Math.floor(statSync(join(rootfs, "bin/busybox")).mtimeMs / 1000)).toBe(1_600_000_000);
  expect(lstatSync(join(rootfs, "bin/sh")).isSymbolicLink()).toBe(true);
  expect(readdirSync(join(rootfs, "bin")).length).toBeGreaterThan(100); // every applet a symlink
  const hard = statSync(join(rootfs, "usr/bin/busybox-hardlink"));
  expect(hard.ino).toBe(statSync(join(rootfs, "bin/busybox")).ino);
  expect(hard.nlink).toBe(2);
  expect(modeOf(join(rootfs, "tmp"))).toBe(0o1777);
  expect(modeOf(join(rootfs, "root"))).toBe(0o700);
  expect(modeOf(join(rootfs, "home/user"))).toBe(0o750);
  expect(own("home/user")).toBe(u(1000, 1000));
  expect(own("home/user/notes.txt")).toBe(u(1000, 1000));
  expect(own("bin/busybox")).toBe(u(0, 0));
  expect(modeOf(join(rootfs, "usr/bin/setuid-demo"))).toBe(0o4755);
  expect(lgetxattr(join(rootfs, "home/user/notes.txt"), "user.nsrun.test")?.toString()).toBe("hello");
  expect(lstatSync(join(rootfs, "var/fifo")).isFIFO()).toBe(true);
  expect(modeOf(join(rootfs, "var/fifo"))).toBe(0o620);
  expect(existsSync(join(rootfs, "dev/null"))).toBe(false); // device nodes are skipped
  const long = join(rootfs, "usr/share/a-very-long-directory-name-to-pass-one-hundred-characters", `${"n".repeat(80)}.txt`);
  expect(readFileSync(long, "utf8")).toBe("long name\n");
  expect(statSync(long, { bigint: true }).mtimeNs).toBe(1_650_000_000_250_000_000n);
}

describe.skipIf(!isRoot || noBusybox !== null)("import as root", () => {
  const store = () => new ImageStore(join(work.dir, "store-root"));

  test("every format: rootfs tarballs (plain, gzip, xz, zstd), docker-archive (dir, tar, tar.gz), OCI layout (dir, tar; gzip, zstd)", async () => {
    for (const [label, path] of Object.entries(sources)) {
      const name = `fmt-${label.replace(/[^a-z0-9]+/g, "-")}`.replace(/-+$/, "");
      const lines: string[] = [];
      const r = await importImage(path, { store: store(), name, log: (l) => lines.push(l), progress: silent });
      const img = resolveImage(name, store());
      checkBusyboxTree(img.rootfs, "kept");
      // The file capability is kept where the kernel allows it: root, here.
      expect(lgetxattr(join(img.rootfs, "usr/bin/cap-demo"), "security.capability")?.length).toBe(20);
      expect(r.devicesSkipped).toBe(1);
      expect(lines.join("\n")).toContain("skipped 1 device node");
      expect(img.layers).toEqual([img.rootfs]);
      if (!label.startsWith("rootfs")) {
        expect(img.config).toEqual({ env: DEFAULTS.Env, entrypoint: DEFAULTS.Entrypoint, cmd: DEFAULTS.Cmd, workingDir: "/home/user", user: "1000:1000" } as never);
        expect(r.layers[0].diffId).toBe(`sha256:${new Bun.CryptoHasher("sha256").update(busyboxLayer()).digest("hex")}`);
      }
      // The tree is a working root filesystem.
      const run = spawnSync(["chroot", img.rootfs, "/bin/sh", "-c", "echo hi from $(basename $(readlink /bin/sh))"], { stdout: "pipe", stderr: "pipe" });
      expect(`${run.stdout}${run.stderr}`.trim()).toBe("hi from busybox");
    }
    // A name from the archive when none is given: the docker tag, the OCI ref name.
    expect((await importImage(sources["docker-archive tar"], { store: store(), log: quiet, progress: silent })).name).toBe("busybox:docker");
    const gz = await importImage(sources["docker-archive tar.gz (docker save | gzip)"], { store: store(), log: quiet, progress: silent });
    expect([gz.name, gz.source.kind]).toEqual(["busybox:docker", "docker-archive"]);
    expect(readdirSync(store().dirOf(gz.name)).sort()).toEqual(["image.json", "in-use", "rootfs"]);
    expect((await importImage(`${sources["OCI layout dir (gzip)"]}:oci`, { store: store(), log: quiet, progress: silent })).name).toBe("oci-dir:oci");
  });

  test("two layers: whiteouts delete, opaque directories hide the lower layer, the upper layer's own files stay", async () => {
    const lower = writeTar([
      { path: "etc/", type: "dir" },
      { path: "etc/keep", data: "keep" },
      { path: "etc/gone", data: "gone" },
      { path: "etc/gone-dir/", type: "dir" },
      { path: "etc/gone-dir/inner", data: "x" },
      { path: "opq/", type: "dir", mode: 0o700 },
      { path: "opq/lower-a", data: "a" },
      { path: "opq/lower-dir/", type: "dir" },
      { path: "opq/lower-dir/b", data: "b" },
      { path: "replaced", data: "file below" },
      { path: "ro/", type: "dir", mode: 0o555 },
      { path: "ro/below", data: "below" },
    ]);
    const upper = writeTar([
      { path: "etc/.wh.gone", data: "" },
      { path: "etc/.wh.gone-dir", data: "" },
      { path: "opq/", type: "dir", mode: 0o750 },
      { path: "opq/upper-new", data: "new" }, // before the marker in the stream: still kept
      { path: "opq/.wh..wh..opq", data: "" },
      { path: "replaced/", type: "dir" },
      { path: "replaced/now-a-dir", data: "d" },
      { path: "ro/above", data: "above" }, // into a directory that is 0555 below
      { path: "etc/.wh.never-existed", data: "" },
    ]);
    const dir = join(work.dir, "two-layers");
    writeOciLayout(dir, [lower, upper], { compression: "zstd", config: imageConfig([lower, upper], {}) });
    await importImage(dir, { store: store(), name: "two", log: quiet, progress: silent });
    const root = resolveImage("two", store()).rootfs;
    expect(listing(root).filter((l) => !l.startsWith(". "))).toEqual([
      "./etc d 755 0:0 ",
      "./etc/keep f 644 0:0 ",
      "./opq d 750 0:0 ",
      "./opq/upper-new f 644 0:0 ",
      "./replaced d 755 0:0 ",
      "./replaced/now-a-dir f 644 0:0 ",
      "./ro d 555 0:0 ",
      "./ro/above f 644 0:0 ",
      "./ro/below f 644 0:0 ",
    ]);
    expect(resolveImage("two", store()).config).toEqual({ env: [], entrypoint: [], cmd: [] });
  });

});

describe.skipIf(noBusybox !== null)("the store, as whoever runs the tests", () => {
  const store = () => new ImageStore(join(work.dir, "store-any"));

  test("a layer whose content is not its diff id is refused, and nothing is left: no image, no work folder", async () => {
    const good = writeTar([{ path: "f", data: "good" }]);
    const evil = writeTar([{ path: "f", data: "evil" }]);
    const dir = join(work.dir, "bad-diffid");
    writeOciLayout(dir, [evil], { config: imageConfig([good]) });
    const s = store();
    await expect(importImage(dir, { store: s, name: "bad", log: quiet, progress: silent })).rejects.toThrow(/its uncompressed content is sha256:[0-9a-f]{64}, but the image config says sha256:/);
    expect(s.read("bad")).toBeNull();
    expect(readdirSync(s.tmpDir)).toEqual([]);
    // A blob that is not its digest (as named by the manifest) is refused too.
    const tampered = join(work.dir, "bad-blob");
    writeOciLayout(tampered, [good], { compression: "none" });
    const blob = readdirSync(join(tampered, "blobs/sha256")).find((h) => readFileSync(join(tampered, "blobs/sha256", h)).equals(good)) as string;
    writeFileSync(join(tampered, "blobs/sha256", blob), evil);
    await expect(importImage(tampered, { store: s, name: "bad", log: quiet, progress: silent })).rejects.toThrow(/digest mismatch: expected sha256:/);
    expect(s.read("bad")).toBeNull();
    expect(readdirSync(s.tmpDir)).toEqual([]);
  });

  test("rm is refused while a box holds the image (acquireImageUse), and so is a re-import; prune keeps what is used", async () => {
    const s = store();
    await importImage(sources["rootfs.gz"], { store: s, name: "used", log: quiet, progress: silent });
    const release = acquireImageUse("used", s);
    await expect(s.remove("used")).rejects.toThrow(/image "used:latest" is in use by a running box/);
    await expect(importImage(sources["rootfs.zst"], { store: s, name: "used", log: quiet, progress: silent })).rejects.toThrow(/in use by a running box/);
    expect(existsSync(resolveImage("used", s).rootfs)).toBe(true);
    // Positive control: the same calls succeed once the box has released it.
    release();
    await importImage(sources["rootfs.zst"], { store: s, name: "used", log: quiet, progress: silent });
    expect((await s.remove("used")).name).toBe("used:latest");
    expect(() => resolveImage("used", s)).toThrow(/image "used": not in the image store/);
    expect(readdirSync(s.tmpDir)).toEqual([]);
  });

  test("an import killed halfway leaves no image, and its work folder goes at the next run", async () => {
    const s = store();
    const fifo = join(work.dir, "slow.fifo");
    expect(spawnSync(["mkfifo", fifo]).exitCode).toBe(0);
    const tar = busyboxLayer();
    const half = join(work.dir, "half.tar");
    writeFileSync(half, tar.subarray(0, tar.length >> 1));
    const importer = startImageCli(["import", fifo, "--name", "killed"], { store: s.root });
    // The writer sends half the tarball, says so, then holds the pipe open: the import is mid-unpack.
    const writer = spawn(["sh", "-c", 'cat "$1" > "$2" && echo sent >&2 && exec cat > "$2"', "sh", half, fifo], { stdin: "pipe", stderr: "pipe" });
    const reader = (writer.stderr as ReadableStream<Uint8Array>).getReader();
    expect(Buffer.from((await reader.read()).value ?? []).toString()).toContain("sent");
    importer.kill("SIGKILL");
    await importer.exited;
    writer.kill();
    await writer.exited;
    expect(s.read("killed")).toBeNull();
    const left = readdirSync(s.tmpDir).filter((n) => !n.endsWith(".lock"));
    expect(left.length).toBe(1); // the dead import's work folder, with part of the tree in it
    expect(existsSync(join(s.tmpDir, left[0], "rootfs/bin/busybox"))).toBe(true);
    expect((await s.prune()).temporaries).toBe(1);
    expect(readdirSync(s.tmpDir)).toEqual([]);
  });

  test("a work folder whose owner is alive is never cleaned", async () => {
    const s = store();
    const live = await s.tempDir();
    try {
      writeFileSync(join(live.path, "marker"), "");
      expect(await s.cleanStale()).toBe(0);
      expect(existsSync(join(live.path, "marker"))).toBe(true);
    } finally {
      await live.release();
    }
    expect(readdirSync(s.tmpDir)).toEqual([]);
  });
});

describe.skipIf(noBusybox !== null)("the command line", () => {
  test("ls, inspect, rm and the errors: one or two lines naming the path or name, exit 125", async () => {
    const store = userDir(join(work.dir, "store-cli"), null);
    const imp = imageCli(["import", sources["OCI layout dir (gzip)"], "--name", "cli"], { store });
    expect(imp.stderr).toContain("cli:latest: 1 layer");
    expect(imp.code).toBe(0);
    expect(imp.stdout.trim()).toMatch(/^sha256:[0-9a-f]{64}$/);
    const ls = imageCli(["ls"], { store });
    expect(ls.stdout.split("\n")[0]).toMatch(/^NAME\s+ID\s+SOURCE\s+LAYERS\s+SIZE\s+ADDED$/);
    expect(ls.stdout).toMatch(/cli:latest\s+[0-9a-f]{12}\s+oci\s+1\s/);
    expect(JSON.parse(imageCli(["ls", "--json"], { store }).stdout)[0].name).toBe("cli:latest");
    const inspect = JSON.parse(imageCli(["inspect", "cli"], { store }).stdout);
    expect(inspect.config.entrypoint).toEqual(["/bin/sh", "-c"]);
    expect(existsSync(join(inspect.rootfs, "bin/busybox"))).toBe(true);
    for (const [args, message] of [
      [["import", join(work.dir, "no-such.tar")], `nsrun: image import "${join(work.dir, "no-such.tar")}": no such file or directory`],
      [["import", sources["OCI layout dir (gzip)"], "--name", "../x"], 'nsrun: image name "../x": expected letters'],
      [["import", `${sources["OCI layout dir (gzip)"]}:nope`], `has no image tagged "nope"; it has tags "oci"`],
      [["inspect", "nothere"], 'nsrun: image "nothere": not in the image store'],
      [["rm", "nothere"], 'nsrun: image "nothere": not in the image store'],
      [["import", work.dir], "a directory, but neither an OCI image layout"],
    ] as Array<[string[], string]>) {
      const r = imageCli(args, { store });
      expect(r.code).toBe(125);
      expect(r.stderr).toContain(message);
      expect(r.stderr.trim().split("\n").length).toBeLessThanOrEqual(2);
    }
    expect(imageCli(["rm", "cli"], { store }).code).toBe(0);
    expect(imageCli(["ls", "--json"], { store }).stdout.trim()).toBe("[]");
  });
});

const noRanges = noRangesUser();
if (!noRanges) console.warn("image-import.test.ts: the import without subordinate ids skipped: the caller has ranges in /etc/subuid (run the tests as root to cover it)");

describe.skipIf(noBusybox !== null || noRanges === null)("import as an ordinary user without subordinate ids (nsrun-test-noids through setpriv, or the caller)", () => {
  test("every file is the user's, the import says so in one line, and the tree is otherwise the same", () => {
    const user = noRanges as NonNullable<typeof noRanges>;
    const store = userDir(join(work.dir, "store-user"), user);
    for (const label of ["OCI layout tar (gzip)", "docker-archive dir", "rootfs.xz"]) {
      const name = `user-${label.replace(/[^a-z0-9]+/g, "-")}`.replace(/-+$/, "");
      const r = imageCli(["import", sources[label], "--name", name], { store, user });
      expect(r.stderr).toContain(`${name}:latest: unpacked without subordinate ids, so every file is owned by you (uid ${user.uid}); the layers' owners are not kept`);
      expect(r.code).toBe(0);
      const rec = JSON.parse(imageCli(["inspect", name], { store, user }).stdout);
      checkBusyboxTree(rec.rootfs, { uid: user.uid, gid: user.gid });
      expect(rec.owners).toEqual({ uid: user.uid });
      // An ordinary user cannot set a file capability outside a user namespace: counted, not fatal.
      expect(rec.xattrsSkipped["security.capability"]).toBe(1);
      expect(lgetxattr(join(rec.rootfs, "usr/bin/cap-demo"), "security.capability")).toBeNull();
      expect(lstatSync(rec.rootfs).uid).toBe(user.uid);
    }
    // The user's read-only directories (0555, 0700) are still removable by the user.
    const ro = join(work.dir, "ro-layout");
    const layer = writeTar([{ path: "ro/", type: "dir", mode: 0o555 }, { path: "ro/f", data: "x", mode: 0o400 }, { path: "none/", type: "dir", mode: 0 }]);
    writeOciLayout(ro, [layer], { config: imageConfig([layer], {}) });
    expect(imageCli(["import", ro, "--name", "ro"], { store, user }).code).toBe(0);
    const rm = imageCli(["rm", "ro"], { store, user });
    expect(rm.stderr).toBe("");
    expect(rm.code).toBe(0);
    expect(imageCli(["prune"], { store, user }).code).toBe(0);
    expect(readdirSync(join(store, "tmp"))).toEqual([]);
  });
});
