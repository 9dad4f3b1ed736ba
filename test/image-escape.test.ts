// Hostile layers: entries that climb with `..`, absolute names, symlinks that point out of the
// image (`evil -> /`, `up -> ../../../..`) followed by entries through them, a file over a symlink,
// and hard links to files outside. nsrun keeps every write inside the image or refuses the layer.
// Positive control: GNU tar with --absolute-names (-P), which trusts the archive, extracts the same
// archive and does write outside, so the probe folder is reachable and the attack is real.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "bun";
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { importImage } from "../core/image/import";
import { Progress } from "../core/image/progress";
import { ImageStore, resolveImage } from "../core/image/store";
import { imageConfig, writeOciLayout } from "../fixtures/images/build";
import { type TarInput, writeTar } from "../fixtures/images/tar-writer";
import { asUser, imageCli, isRoot, testUser, userDir, workDir } from "../fixtures/images/test-support";

let work: ReturnType<typeof workDir>;
beforeAll(() => {
  work = workDir("escape");
});
afterAll(() => work.cleanup());

const quiet = { log: () => {}, progress: new Progress(() => {}, false) };

/** Entries that try to write into `outside` (an absolute folder outside the image). */
function climbing(outside: string): TarInput[] {
  const depth = "../".repeat(12);
  return [
    { path: `${depth}${outside.slice(1)}/via-dotdot`, data: "escaped" },
    { path: `${outside}/via-absolute`, data: "escaped" },
    { path: "link", type: "symlink", linkname: outside },
    { path: "link/via-symlink", data: "escaped" },
    { path: "up", type: "symlink", linkname: depth.slice(0, -1) },
    { path: `up${outside}/via-relative-symlink`, data: "escaped" },
    { path: "over", type: "symlink", linkname: `${outside}/secret` },
    { path: "over", data: "written over the symlink" }, // replaces the symlink; never writes through it
  ];
}

/** The host files the `evil -> /` entries aim at: content, inode and link count. */
function hostFacts(): string {
  return ["/etc/passwd", "/etc/shadow"].map((p) => `${p} ${new Bun.CryptoHasher("sha256").update(readFileSync(p)).digest("hex")} ${statSync(p).ino} ${statSync(p).nlink}`).join("\n");
}

function probe(dir: string): string[] {
  return readdirSync(dir)
    .sort()
    .map((n) => `${n} ${readFileSync(join(dir, n), "utf8")} nlink=${statSync(join(dir, n)).nlink}`);
}

function makeOutside(name: string): string {
  const outside = join(work.dir, name);
  mkdirSync(outside);
  writeFileSync(join(outside, "secret"), "secret");
  return outside;
}

describe("hostile layers", () => {
  test("positive control: GNU tar -P writes the same entries outside its target folder", () => {
    const outside = makeOutside("outside-control");
    const tar = join(work.dir, "control.tar");
    writeFileSync(tar, writeTar(climbing(outside)));
    const target = join(work.dir, "control-root");
    mkdirSync(target);
    spawnSync(["tar", "-P", "-xf", tar, "-C", target], { stderr: "pipe" });
    const got = probe(outside);
    expect(got).toContain("via-dotdot escaped nlink=1");
    expect(got).toContain("via-absolute escaped nlink=1");
    expect(got).toContain("via-symlink escaped nlink=1");
    expect(got).toContain("via-relative-symlink escaped nlink=1");
  });

  test.skipIf(!isRoot)("as root: every write lands inside the image; nothing outside changes", async () => {
    const outside = makeOutside("outside-root");
    const before = probe(outside);
    const host = hostFacts();
    const layer = writeTar([
      ...climbing(outside),
      { path: "etc/", type: "dir" },
      { path: "etc/shadow", data: "the image's own shadow" },
      { path: "evil", type: "symlink", linkname: "/" },
      { path: "evil/etc/passwd", data: "pwned" },
      { path: "dots", type: "symlink", linkname: "../../../../../../../../.." },
      { path: "dots/etc/group", data: "pwned" },
      { path: "hl-shadow", type: "hardlink", linkname: "/etc/shadow" },
      { path: "dots/../../hl-dotdot", type: "hardlink", linkname: "../../../etc/shadow" },
      { path: "overlay-trick/", type: "dir", xattrs: { "trusted.overlay.opaque": "y" } },
    ]);
    const dir = join(work.dir, "hostile-oci");
    writeOciLayout(dir, [layer], { config: imageConfig([layer], {}) });
    const store = new ImageStore(join(work.dir, "store-root"));
    const r = await importImage(dir, { store, name: "hostile", ...quiet });
    expect(probe(outside)).toEqual(before);
    expect(hostFacts()).toBe(host);
    const root = resolveImage("hostile", store).rootfs;
    // What the entries aimed at outside is inside the image instead.
    for (const f of ["via-dotdot", "via-absolute", "via-symlink", "via-relative-symlink"]) expect(readFileSync(join(root, outside, f), "utf8")).toBe("escaped");
    expect(readFileSync(join(root, "etc/passwd"), "utf8")).toBe("pwned");
    expect(readFileSync(join(root, "etc/group"), "utf8")).toBe("pwned");
    expect(lstatSync(join(root, "over")).isFile()).toBe(true);
    expect(readFileSync(join(root, "over"), "utf8")).toBe("written over the symlink");
    // Hard links to /etc/shadow are links to the image's shadow, not the host's.
    const shadow = statSync(join(root, "etc/shadow"));
    expect(statSync(join(root, "hl-shadow")).ino).toBe(shadow.ino);
    expect(statSync(join(root, "hl-dotdot")).ino).toBe(shadow.ino);
    expect(shadow.nlink).toBe(3);
    // overlayfs's own xattrs are never set from a layer (the tree becomes an overlay lower layer).
    expect(r.xattrsSkipped["trusted.overlay.opaque"]).toBe(1);
    expect(r.namesContained).toBe(3);
  });

  test.skipIf(!isRoot)("as root: a hard link to a file outside the image is refused, and the import leaves nothing", async () => {
    const outside = makeOutside("outside-hardlink");
    const store = new ImageStore(join(work.dir, "store-root"));
    for (const [i, entries] of [
      [{ path: "hl", type: "hardlink", linkname: `${outside}/secret` }],
      [{ path: "link", type: "symlink", linkname: outside }, { path: "hl", type: "hardlink", linkname: "link/secret" }],
      [{ path: "hl", type: "hardlink", linkname: `${"../".repeat(12)}${outside.slice(1)}/secret` }],
    ].entries() as IterableIterator<[number, TarInput[]]>) {
      const dir = join(work.dir, `hardlink-${i}`);
      const layer = writeTar(entries);
      writeOciLayout(dir, [layer], { config: imageConfig([layer], {}) });
      await expect(importImage(dir, { store, name: "hardlink", ...quiet })).rejects.toThrow(/: "hl": hard link to ".*secret": .*ENOENT/);
      expect(statSync(join(outside, "secret")).nlink).toBe(1);
      expect(store.read("hardlink")).toBeNull();
      expect(readdirSync(store.tmpDir)).toEqual([]);
    }
    // Positive control: GNU tar -P makes that link to the outside file.
    const tar = join(work.dir, "hl-control.tar");
    writeFileSync(tar, writeTar([{ path: "hl", type: "hardlink", linkname: `${outside}/secret` }]));
    mkdirSync(join(work.dir, "hl-control"));
    spawnSync(["tar", "-P", "-xf", tar, "-C", join(work.dir, "hl-control")]);
    expect(statSync(join(outside, "secret")).nlink).toBe(2);
  });

  test("as an ordinary user, whose own folder outside is writable: contained the same way", () => {
    const user = testUser();
    const outside = userDir(join(work.dir, "outside-user"), user);
    writeFileSync(join(outside, "secret"), "secret");
    if (isRoot) spawnSync(["chown", `${user.uid}:${user.gid}`, join(outside, "secret")]);
    const before = probe(outside);
    const layer = writeTar(climbing(outside));
    const dir = join(work.dir, "hostile-user");
    writeOciLayout(dir, [layer], { config: imageConfig([layer], {}) });
    const store = userDir(join(work.dir, "store-user"), user);
    const r = imageCli(["import", dir, "--name", "hostile"], { store, user });
    expect(r.stderr).toContain("2 entries named paths outside the image (absolute or ..); they were kept inside it");
    expect(r.code).toBe(0);
    expect(probe(outside)).toEqual(before);
    const root = JSON.parse(imageCli(["inspect", "hostile"], { store, user }).stdout).rootfs;
    expect(readFileSync(join(root, outside, "via-symlink"), "utf8")).toBe("escaped");
    // Positive control: the user can write there (GNU tar -P, run as the user, does).
    const tar = join(work.dir, "user-control.tar");
    writeFileSync(tar, layer);
    const target = userDir(join(work.dir, "user-control"), user);
    spawnSync(asUser(["tar", "-P", "-xf", tar, "-C", target], user), { stderr: "pipe" });
    expect(existsSync(join(outside, "via-symlink"))).toBe(true);
  });
});
