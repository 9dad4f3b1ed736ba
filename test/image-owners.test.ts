// Rootless ownership through subordinate ids (issue 14): an ordinary user with ranges in
// /etc/subuid and /etc/subgid (nsrun-test: 420000000+65536, see test/helpers.ts) imports an image
// whose layers give files to 1000:1000, 33:33, 0:50 and 0:0, with setuid bits and a file capability.
// On the host the owners are subordinate ids (image uid N is 420000000 + N - 1, uid 0 is the user);
// in a rootless box with the "auto" map they read as the layers said. The same import by a user
// without ranges is the positive control: everything the user's, and the import says so. Removing
// such an image (rm, a failed import, prune) goes through a user namespace and leaves nothing.
// Everything runs the compiled binary (dist/nsrun), as root and as the users through setpriv.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "bun";
import { chownSync, existsSync, lstatSync, mkdirSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { lgetxattr } from "../ffi/fs";
import { busyboxLayerEntries, haveStaticBusybox, imageConfig, writeOciLayout } from "../fixtures/images/build";
import { type TarInput, writeTar } from "../fixtures/images/tar-writer";
import { isRoot, noRangesUser, userDir, workDir } from "../fixtures/images/test-support";
import { type Actor, command, type Result, run, setupTestArea, TEST_SUBORDINATE } from "./helpers";

const helpers = spawnSync(["sh", "-c", "command -v newuidmap && command -v newgidmap"]).exitCode === 0;
const why = !isRoot
  ? "the tests run as an ordinary user (run them as root: they check host owners of other users' ids)"
  : !haveStaticBusybox()
    ? "busybox-static is not installed (apt-get install busybox-static)"
    : !helpers
      ? "newuidmap/newgidmap are not installed (apt-get install uidmap)"
      : null;
if (why) console.warn(`image-owners.test.ts: skipped: ${why}`);

const S = TEST_SUBORDINATE.start;
let area: ReturnType<typeof setupTestArea>;
let work: ReturnType<typeof workDir>;
let user: Actor; // nsrun-test, with ranges
let plain: Actor; // nsrun-test-noids, without
let image: string;

/** Layer 1: owners of every kind; layer 2 removes, replaces and re-owns some of them. */
const LOWER: TarInput[] = [
  ...busyboxLayerEntries(), // home/user and notes.txt 1000:1000, setuid-demo 04755 0:0, cap-demo with a capability
  { path: "usr/bin/setuid-user", data: "#!/bin/sh\necho setuid\n", mode: 0o4755, uid: 1000, gid: 1000 },
  { path: "usr/bin/setuid-user-link", type: "hardlink", linkname: "usr/bin/setuid-user" },
  { path: "srv/", type: "dir" },
  { path: "srv/shared/", type: "dir", mode: 0o2775, uid: 0, gid: 50 },
  { path: "home/user/link", type: "symlink", linkname: "notes.txt", uid: 1000, gid: 1000 },
  { path: "home/user/gone", data: "whited out above", uid: 1000, gid: 1000 },
  { path: "var/was-dir/", type: "dir", uid: 1000, gid: 1000 },
  { path: "var/was-dir/inner", data: "x", uid: 1000, gid: 1000 },
  { path: "etc/owned-later", data: "root's below" },
  { path: "real/", type: "dir" },
  { path: "other/", type: "dir" },
  { path: "other/f", data: "root's" },
  { path: "via", type: "symlink", linkname: "real" },
  { path: "via/f", data: "1000's, in real/", uid: 1000, gid: 1000 }, // lands in real/f
  { path: "nobody", data: "x", uid: 65534, gid: 65534 },
];
const UPPER: TarInput[] = [
  { path: "home/user/.wh.gone", data: "" },
  { path: "var/was-dir", data: "now a file of root's" },
  { path: "etc/owned-later", data: "www-data's above", uid: 33, gid: 33 },
  { path: "via", type: "symlink", linkname: "other" }, // real/f must keep its owner all the same
];

beforeAll(() => {
  if (why) return;
  area = setupTestArea(); // copies dist/nsrun, gives nsrun-test its ranges
  work = workDir("owners");
  user = area.actors.find((a) => a.name === "user") as Actor;
  const np = noRangesUser() as { uid: number; gid: number };
  plain = { name: "user", uid: np.uid, gid: np.gid, area: userDir(join(work.dir, "plain"), np) };
  const [lower, upper] = [writeTar(LOWER), writeTar(UPPER)];
  image = join(work.dir, "owners-oci");
  writeOciLayout(image, [lower, upper], { tag: "owners", config: imageConfig([lower, upper], {}) });
});

afterAll(() => {
  area?.cleanup();
  work?.cleanup();
});

/** nsrun as `who`, with its store in `store`. */
const nsrun = (who: Actor, store: string, args: string[]): Result => run(area.bin, who, args, { env: { NSRUN_STORE: store, HOME: store } });
const own = (path: string) => {
  const st = lstatSync(path);
  return `${st.uid}:${st.gid}`;
};
const mode = (path: string) => (lstatSync(path).mode & 0o7777).toString(8);
const PATHS = ["/home/user", "/home/user/notes.txt", "/home/user/link", "/usr/bin/setuid-user", "/usr/bin/setuid-demo", "/srv/shared", "/etc/owned-later", "/real/f", "/other/f", "/var/was-dir", "/nobody", "/bin/busybox"];

describe.skipIf(why !== null)("rootless ownership through subordinate ids", () => {
  test("host owners are subordinate ids, a rootless box reads the layers' owners, setuid and the capability survive", () => {
    const store = userDir(join(work.dir, "store-ranges"), user);
    const r = nsrun(user, store, ["image", "import", image, "--name", "owners"]);
    expect(r.stderr).toContain(`owners:latest: the layers' owners are kept through your subordinate ids (uid 0 is you, uid ${user.uid}, uids 1-65536 are ${S}-${S + 65535}):`);
    expect(r.code).toBe(0);
    const rec = JSON.parse(nsrun(user, store, ["image", "inspect", "owners"]).stdout);
    expect(rec.owners).toEqual({
      map: "subordinate",
      uidMap: [{ inside: 0, outside: user.uid, count: 1 }, { inside: 1, outside: S, count: 65536 }],
      gidMap: [{ inside: 0, outside: user.gid, count: 1 }, { inside: 1, outside: S, count: 65536 }],
    });
    const root = rec.rootfs as string;
    const me = `${user.uid}:${user.gid}`;
    const sub = (uid: number, gid = uid) => `${S + uid - 1}:${S + gid - 1}`;
    // On the host: image uid 0 is the user, uid N is the Nth subordinate id.
    expect(Object.fromEntries(PATHS.map((p) => [p, own(join(root, p))]))).toEqual({
      "/home/user": sub(1000),
      "/home/user/notes.txt": sub(1000),
      "/home/user/link": sub(1000),
      "/usr/bin/setuid-user": sub(1000),
      "/usr/bin/setuid-demo": me,
      "/srv/shared": `${user.uid}:${S + 49}`,
      "/etc/owned-later": sub(33), // the upper layer's owner
      "/real/f": sub(1000), // given through the symlink the upper layer then pointed elsewhere
      "/other/f": me,
      "/var/was-dir": me, // a 1000:1000 directory replaced by root's file
      "/nobody": sub(65534),
      "/bin/busybox": me,
    });
    expect(existsSync(join(root, "home/user/gone"))).toBe(false);
    // chown cleared setuid/setgid; they were set again. The hard link is the same file.
    expect([mode(join(root, "usr/bin/setuid-user")), mode(join(root, "usr/bin/setuid-demo")), mode(join(root, "srv/shared"))]).toEqual(["4755", "4755", "2775"]);
    expect(statSync(join(root, "usr/bin/setuid-user-link")).ino).toBe(statSync(join(root, "usr/bin/setuid-user")).ino);
    // The capability refused outside is set inside: a v3 capability whose root is the namespace's root, the user.
    const cap = lgetxattr(join(root, "usr/bin/cap-demo"), "security.capability") as Buffer;
    expect([cap.length, cap.readUInt32LE(0) >>> 24, cap.readUInt32LE(4), cap.readUInt32LE(20)]).toEqual([24, 3, 1 << 10, user.uid]);
    expect(rec.xattrsSkipped["security.capability"]).toBeUndefined();

    // Inside a rootless box with the "auto" map: the layers' owners.
    const box = nsrun(user, store, ["run", "--image", "owners", "-u", "0:0", "--", "stat", "-c", "%n %u:%g %a", ...PATHS]);
    expect(box.stderr).toBe("");
    expect(box.stdout.trim().split("\n")).toEqual([
      "/home/user 1000:1000 750",
      "/home/user/notes.txt 1000:1000 640",
      "/home/user/link 1000:1000 777",
      "/usr/bin/setuid-user 1000:1000 4755",
      "/usr/bin/setuid-demo 0:0 4755",
      "/srv/shared 0:50 2775",
      "/etc/owned-later 33:33 644",
      "/real/f 1000:1000 644",
      "/other/f 0:0 644",
      "/var/was-dir 0:0 644",
      "/nobody 65534:65534 644",
      "/bin/busybox 0:0 755",
    ]);
    // The image's own user 1000 owns its home there, and may write it: into the box's layer (kept
    // here with --layer), never into the image.
    const layer = join(store, "layer-1000");
    mkdirSync(layer);
    chownSync(layer, user.uid, user.gid);
    const as1000 = nsrun(user, store, ["run", "--image", "owners", "--layer", layer, "-u", "1000:1000", "--", "sh", "-c", "echo mine > /home/user/new && stat -c %u:%g /home/user/new"]);
    expect(as1000.stdout).toBe("1000:1000\n");
    expect(own(join(layer, "upper/home/user/new"))).toBe(sub(1000));
    expect(existsSync(join(root, "home/user/new"))).toBe(false);

    // A box that maps only the user (mode = "single") sees the subordinate ids' files as nobody's,
    // and is told why (the "auto" box above, the control, printed nothing).
    const single = join(store, "single.toml");
    writeFileSync(single, '[user_namespace]\nmode = "single"\n');
    chownSync(single, user.uid, user.gid);
    const narrow = nsrun(user, store, ["run", "--config", single, "--image", "owners", "--", "stat", "-c", "%u", "/home/user", "/bin/busybox"]);
    expect(narrow.stdout).toBe("65534\n0\n");
    expect(narrow.stderr).toBe(`nsrun: image "owners": its files belong to your subordinate ids as [user_namespace] mode = "auto" maps them, and this box maps ids otherwise: files it does not map show as nobody (65534); use mode = "auto"\n`);
  });

  test("positive control: a user without ranges owns every file, says so, and the box sees root's everywhere", () => {
    const store = userDir(join(work.dir, "store-plain"), plain);
    const r = nsrun(plain, store, ["image", "import", image, "--name", "owners"]);
    expect(r.stderr).toContain(`owners:latest: unpacked without subordinate ids, so every file is owned by you (uid ${plain.uid}); the layers' owners are not kept`);
    expect(r.code).toBe(0);
    const rec = JSON.parse(nsrun(plain, store, ["image", "inspect", "owners"]).stdout);
    expect(rec.owners).toEqual({ uid: plain.uid });
    for (const p of PATHS) expect(own(join(rec.rootfs, p))).toBe(`${plain.uid}:${plain.gid}`);
    expect(mode(join(rec.rootfs, "usr/bin/setuid-user"))).toBe("4755");
    expect(lgetxattr(join(rec.rootfs, "usr/bin/cap-demo"), "security.capability")).toBeNull();
    expect(rec.xattrsSkipped["security.capability"]).toBe(1);
    const box = nsrun(plain, store, ["run", "--image", "owners", "-u", "0:0", "--", "stat", "-c", "%u:%g", "/home/user/notes.txt", "/etc/owned-later"]);
    expect(box.stdout).toBe("0:0\n0:0\n");
    expect(nsrun(plain, store, ["image", "rm", "owners"]).code).toBe(0);
  });

  test("image rm by the user removes files the user alone cannot (control: ls and rm -rf as the user are refused)", () => {
    const store = userDir(join(work.dir, "store-rm"), user);
    expect(nsrun(user, store, ["image", "import", image, "--name", "gone"]).code).toBe(0);
    const root = JSON.parse(nsrun(user, store, ["image", "inspect", "gone"]).stdout).rootfs as string;
    const asUser = (cmd: string[]) => spawnSync(command(cmd[0], user, cmd.slice(1)), { stdout: "pipe", stderr: "pipe" });
    expect(asUser(["ls", join(root, "home/user")]).exitCode).not.toBe(0);
    expect(asUser(["rm", "-rf", join(root, "home")]).exitCode).not.toBe(0);
    expect(existsSync(join(root, "home/user/notes.txt"))).toBe(true);
    const rm = nsrun(user, store, ["image", "rm", "gone"]);
    expect([rm.code, rm.stdout, rm.stderr]).toEqual([0, "gone:latest\n", ""]);
    expect(readdirSync(join(store, "images"))).toEqual([]);
    expect(readdirSync(join(store, "tmp"))).toEqual([]);
  });

  test("prune removes a dead import's work folder holding subordinate ids' files (control: rm -rf as the user is refused)", () => {
    const store = userDir(join(work.dir, "store-prune"), user);
    expect(nsrun(user, store, ["image", "prune"]).code).toBe(0); // makes the store's folders, the user's
    // What an import killed after giving owners leaves: tmp/X with no live lock.
    const dead = join(store, "tmp", "1-dead");
    mkdirSync(join(dead, "rootfs/home/user"), { recursive: true });
    writeFileSync(join(dead, "rootfs/home/user/notes.txt"), "x");
    for (const p of ["", "rootfs", "rootfs/home"]) chownSync(join(dead, p), user.uid, user.gid);
    for (const p of ["rootfs/home/user/notes.txt", "rootfs/home/user"]) chownSync(join(dead, p), S + 999, S + 999);
    spawnSync(["chmod", "0700", join(dead, "rootfs/home/user")]);
    expect(spawnSync(command("rm", user, ["-rf", dead]), { stderr: "pipe" }).exitCode).not.toBe(0);
    const r = nsrun(user, store, ["image", "prune"]);
    expect(r.stderr).toContain("and 1 leftover");
    expect(r.code).toBe(0);
    expect(readdirSync(join(store, "tmp"))).toEqual([]);
  });

  test("a failure inside the namespace stops the import: one syscall-shaped line naming the path, exit 125, nothing left", () => {
    const store = userDir(join(work.dir, "store-fail"), user);
    // A v3 capability whose root is uid 70000: refused outside (EPERM, recorded), invalid inside the
    // namespace, which does not map 70000 (EINVAL). The 1000:1000 directory is given first.
    const v3 = Buffer.alloc(24);
    v3.writeUInt32LE(0x03000001, 0);
    v3.writeUInt32LE(1 << 10, 4);
    v3.writeUInt32LE(70000, 20);
    const layer = writeTar([
      { path: "home/", type: "dir" },
      { path: "home/u/", type: "dir", mode: 0o700, uid: 1000, gid: 1000 },
      { path: "home/u/f", data: "x", uid: 1000, gid: 1000 },
      { path: "usr/", type: "dir" },
      { path: "usr/bad-cap", data: "x", xattrs: { "security.capability": v3 } },
    ]);
    const dir = join(work.dir, "bad-cap");
    writeOciLayout(dir, [layer], { config: imageConfig([layer], {}) });
    const r = nsrun(user, store, ["image", "import", dir, "--name", "bad"]);
    expect(r.code).toBe(125);
    const errors = r.stderr.split("\n").filter((l) => l && !l.startsWith("nsrun: unpacking"));
    expect(errors).toEqual(['nsrun: bad:latest: "/usr/bad-cap": set its file capability: setxattr("/proc/self/fd/entry", "security.capability", [24 bytes], 24, 0): EINVAL (Invalid argument)']);
    expect(readdirSync(join(store, "images"))).toEqual([]);
    expect(readdirSync(join(store, "tmp"))).toEqual([]);
    // Owners beyond the map are refused before any namespace, naming the entry.
    const big = writeTar([{ path: "big", data: "x", uid: 70000, gid: 1 }]);
    writeOciLayout(join(work.dir, "big"), [big], { config: imageConfig([big], {}) });
    const b = nsrun(user, store, ["image", "import", join(work.dir, "big"), "--name", "big"]);
    expect(b.code).toBe(125);
    expect(b.stderr).toContain('nsrun: big:latest: "/big" is owned by 70000:1, beyond the ids your user namespace maps (uids 0-65536, gids 0-65536)');
    expect(readdirSync(join(store, "tmp"))).toEqual([]);
    // Positive control: root keeps both images as they are.
    const rootStore = userDir(join(work.dir, "store-root-ok"), null);
    expect(nsrun(area.actors[0], rootStore, ["image", "import", dir, "--name", "bad"]).code).toBe(0);
    expect(nsrun(area.actors[0], rootStore, ["image", "import", join(work.dir, "big"), "--name", "big"]).code).toBe(0);
  });
});
