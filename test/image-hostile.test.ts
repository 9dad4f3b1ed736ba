// Images are hostile input (issue 21), through dist/nsrun as root and as an ordinary user: an
// image's User that its passwd does not list, archives whose files lead out of them, image configs
// of the wrong types, names that are not UTF-8, tar owners that are not ids, a store that was
// tampered with; and a box never changes its image. Each attack has its control: the honest version
// of the same input is accepted.
import { afterAll, describe, expect, test } from "bun:test";
import { spawnSync } from "bun";
import { chownSync, existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { busyboxLayer, busyboxLayerEntries, compress, DEFAULTS, haveStaticBusybox, imageConfig, tarDirectory, writeDockerArchive, writeOciLayout } from "../fixtures/images/build";
import { type TarInput, writeTar } from "../fixtures/images/tar-writer";
import { type Actor, type Result, run, setupTestArea, treeDigest } from "./helpers";

const area = setupTestArea();
afterAll(() => area.cleanup());
const why = haveStaticBusybox() ? null : "busybox-static is not installed (apt-get install busybox-static)";
if (why) console.warn(`skipped: image-hostile.test.ts: ${why}`);

let serial = 0;
/** A fresh folder of the actor's (its store, its sources). */
function dirOf(a: Actor, tag: string): string {
  const d = join(a.area, `${tag}-${++serial}`);
  mkdirSync(d, { recursive: true });
  if (a.name === "user") chownSync(d, a.uid, a.gid);
  return d;
}
/** Hand a tree made as root to the actor. */
const give = (a: Actor, path: string) => a.name === "user" && spawnSync(["chown", "-R", "-h", `${a.uid}:${a.gid}`, path]);
const nsrun = (a: Actor, store: string, args: string[], env: Record<string, string> = {}): Result => run(area.bin, a, args, { env: { NSRUN_STORE: store, HOME: store, ...env } });

/** An OCI layout of the busybox layer (plus `extra` entries) whose config says `defaults`. */
function layout(a: Actor, defaults: object, extra: TarInput[] = []): string {
  const dir = dirOf(a, "layout");
  const layer = writeTar([...busyboxLayerEntries(), ...extra]);
  writeOciLayout(dir, [layer], { config: imageConfig([layer], { ...DEFAULTS, ...defaults }) });
  give(a, dir);
  return dir;
}
/** A store with that layout imported as NAME. */
function imported(a: Actor, dir: string, name: string): string {
  const store = dirOf(a, "store");
  const r = nsrun(a, store, ["image", "import", dir, "--name", name]);
  if (r.code !== 0) throw new Error(`import: ${r.stderr}`);
  return store;
}
const oneLine = (r: Result) => r.stderr.trim().split("\n").filter((l) => !l.startsWith("nsrun: unpacking"));

describe.skipIf(why !== null).each(area.actors)("the image's User, from its own passwd and group ($name)", (a) => {
  test("a name the image does not list, -1 and 4294967295 refuse the box naming image and user (control: a listed name runs as its ids)", () => {
    for (const [user, says] of [
      ["nobody", 'unable to find user "nobody": no matching entry in the image\'s /etc/passwd'],
      ["-1:-1", 'unable to find user "-1"'],
      ["4294967295", 'uid "4294967295" is out of range (0-4294967294)'],
      ["user:wheel", 'unable to find group "wheel"'],
    ]) {
      const store = imported(a, layout(a, { User: user }), "hostile");
      const r = nsrun(a, store, ["run", "--image", "hostile", "--", "id"]);
      expect(r.code).toBe(125);
      expect(r.stdout).toBe("");
      expect(r.stderr.startsWith(`nsrun: image "hostile:latest": User: ${JSON.stringify(user)}: ${says}`)).toBe(true);
      expect(r.stderr.trim().split("\n").length).toBe(1);
    }
    const store = imported(a, layout(a, { User: "user" }), "honest");
    const ok = nsrun(a, store, ["run", "--image", "honest", "--", "id", "-u"]);
    expect([ok.code, ok.stdout]).toEqual([0, "1000\n"]);
    const ids = nsrun(a, store, ["run", "--image", "honest", "-u", "user:root", "--", "sh", "-c", "echo $(id -u):$(id -g)"]);
    expect(ids.stdout).toBe("1000:0\n");
  });

  test("the image's /etc/passwd is read inside the image: a symlink to the host's, or a FIFO, finds nothing (control: the same name listed by the image)", () => {
    const host = readFileSync("/etc/passwd", "utf8").split("\n")[0].split(":")[0]; // root on any host
    const extra = (passwd: TarInput): TarInput[] => [passwd, { path: "etc/group", data: "root:x:0:\nstaff:x:50:\n" }];
    // busyboxLayerEntries lists etc/passwd; a later entry of the same name replaces it.
    for (const passwd of [
      { path: "etc/passwd", type: "symlink", linkname: "/../../../../../../etc/passwd-of-the-host" } as TarInput,
      { path: "etc/passwd", type: "fifo" } as TarInput,
    ]) {
      const store = imported(a, layout(a, { User: `${host}:staff` }, extra(passwd)), "hostile");
      const r = nsrun(a, store, ["run", "--image", "hostile", "--", "id"]);
      expect(r.code).toBe(125);
      expect(r.stderr).toContain(`image "hostile:latest": User: "${host}:staff": `);
    }
    const store = imported(a, layout(a, { User: `${host}:staff` }, extra({ path: "etc/passwd", data: `${host}:x:7:7::/:/bin/sh\n` })), "honest");
    expect(nsrun(a, store, ["run", "--image", "honest", "--", "sh", "-c", "echo $(id -u):$(id -g)"]).stdout).toBe("7:50\n");
  });

  test("-u NAME is looked up in the rootfs, fail closed (control: a name the rootfs lists)", () => {
    const rootfs = join(a.area, "rootfs");
    const bad = run(area.bin, a, ["run", "--rootfs", rootfs, "-u", "alice", "--", "id"]);
    expect([bad.code, bad.stderr]).toEqual([125, 'nsrun: (command line): --user: "alice": unable to find user "alice": no matching entry in the rootfs\'s /etc/passwd\n']);
    const cfg = join(a.area, "configs", "named-user.toml");
    writeFileSync(cfg, `rootfs = "../rootfs"\n[process]\nuser = "alice"\nargs = ["id"]\n`);
    give(a, cfg);
    const fromFile = run(area.bin, a, ["run", "--config", cfg]);
    expect([fromFile.code, fromFile.stderr]).toEqual([125, `nsrun: ${cfg}: process.user: "alice": unable to find user "alice": no matching entry in the rootfs's /etc/passwd\n`]);
    const ok = run(area.bin, a, ["run", "--rootfs", rootfs, "-u", "nobody", "--", "sh", "-c", "echo $(id -u):$(id -g)"]);
    expect([ok.code, ok.stdout]).toEqual([0, "65534:65534\n"]);
  });

  test("--rootfs '' is refused, not the current folder (control: --rootfs . is the current folder)", () => {
    const r = run(area.bin, a, ["run", "--rootfs", "", "--", "true"]);
    expect([r.code, r.stderr]).toEqual([125, 'nsrun: (command line): --rootfs: expected a directory path, got ""\n']);
    const ok = run(area.bin, a, ["run", "--rootfs", ".", "--", "/bin/true"], { cwd: join(a.area, "rootfs") });
    expect(ok.code).toBe(0);
  });
});

describe.skipIf(why !== null).each(area.actors)("a box never changes its image ($name)", (a) => {
  test("writes go to the box's own layer and are gone after it; the image's tree is the same (control: --layer DIR keeps them, outside the image)", () => {
    const store = imported(a, layout(a, {}), "img");
    const rootfs = JSON.parse(nsrun(a, store, ["image", "inspect", "img"]).stdout).rootfs as string;
    const before = treeDigest(rootfs);
    const write = ["sh", "-c", "echo changed > /etc/motd && rm /bin/ls && mkdir -p /new/dir && echo ok"];
    const w = nsrun(a, store, ["run", "--image", "img", "-u", "0:0", "--", ...write]);
    expect([w.code, w.stdout, w.stderr]).toEqual([0, "ok\n", ""]);
    const next = nsrun(a, store, ["run", "--image", "img", "-u", "0:0", "--", "sh", "-c", "cat /etc/motd; ls -d /bin/ls /new"]);
    expect(next.stdout).toBe("/bin/ls\n");
    expect(treeDigest(rootfs)).toBe(before);
    // Control: a layer the user names keeps the box's changes for the next box given it.
    const layer = dirOf(a, "layer");
    expect(nsrun(a, store, ["run", "--image", "img", "--layer", layer, "-u", "0:0", "--", ...write]).stdout).toBe("ok\n");
    const kept = nsrun(a, store, ["run", "--image", "img", "--layer", layer, "-u", "0:0", "--", "sh", "-c", "cat /etc/motd; ls -d /bin/ls /new 2>&1"]);
    expect(kept.stdout).toBe("changed\nls: /bin/ls: No such file or directory\n/new\n");
    expect(readFileSync(join(layer, "upper/etc/motd"), "utf8")).toBe("changed\n");
    expect(treeDigest(rootfs)).toBe(before);
  });

  test("ephemeral = false on an image is refused, naming the key and what to do (control: readonly = true runs)", () => {
    const store = imported(a, layout(a, {}), "img");
    const r = nsrun(a, store, ["run", "--image", "img", "--no-ephemeral", "--", "true"]);
    expect(r.code).toBe(125);
    expect(r.stderr).toBe('nsrun: (command line): ephemeral: false would let the box write into image "img:latest"; a box on an image always gets a layer of its own: to keep its changes, name a folder for them with layer = "DIR" (--layer DIR)\n');
    const ro = nsrun(a, store, ["run", "--image", "img", "--readonly", "-u", "0:0", "--", "sh", "-c", "touch /x 2>/dev/null || echo read-only"]);
    expect(ro.stdout).toBe("read-only\n");
  });
});

describe.skipIf(why !== null).each(area.actors)("archives never lead out of themselves ($name)", (a) => {
  /** A `docker save | gzip` whose config file is `cfg` (made by `make` in the archive folder). */
  function gzArchive(make: (dir: string, config: Buffer) => void): string {
    const src = dirOf(a, "archive");
    const layer = busyboxLayer();
    const config = imageConfig([layer]);
    writeDockerArchive(src, [layer], { config });
    const manifest = JSON.parse(readFileSync(join(src, "manifest.json"), "utf8"));
    spawnSync(["rm", join(src, manifest[0].Config)]);
    manifest[0].Config = "cfg.json";
    writeFileSync(join(src, "manifest.json"), JSON.stringify(manifest));
    make(join(src, "cfg.json"), config);
    const tar = tarDirectory(src, `${src}.tar`);
    const gz = `${src}.tar.gz`;
    writeFileSync(gz, compress(readFileSync(tar), "gzip"));
    give(a, gz);
    return gz;
  }

  test("a compressed docker-archive's config that is a symlink to the host's /etc/shadow, /dev/zero, or a FIFO is refused at once (control: a real file)", () => {
    // Root's tests read /etc/shadow to show none of it leaks; an ordinary user (and its nsrun) cannot read it at all.
    const shadowWord = process.getuid?.() === 0 ? readFileSync("/etc/shadow", "utf8").split(":")[0] : null;
    for (const [make, says] of [
      [(p: string) => symlinkSync("/etc/shadow", p), '"cfg.json" is a symbolic link that leads out of the archive; refused'],
      [(p: string) => symlinkSync("../../../../../../../../etc/shadow", p), '"cfg.json" is a symbolic link that leads out of the archive; refused'],
      [(p: string) => symlinkSync("/dev/zero", p), '"cfg.json" is a symbolic link that leads out of the archive; refused'],
      [(p: string) => spawnSync(["mkfifo", p]), '"cfg.json" is not a regular file'],
    ] as const) {
      const store = dirOf(a, "store");
      const r = nsrun(a, store, ["image", "import", gzArchive(make), "--name", "evil"]);
      expect(r.code).toBe(125);
      const lines = oneLine(r);
      expect(lines.length).toBe(1);
      expect(lines[0]).toContain(says);
      if (shadowWord !== null) expect(r.stderr).not.toContain(`${shadowWord}:`);
      expect(readdirSync(join(store, "tmp"))).toEqual([]);
      expect(readdirSync(join(store, "images"))).toEqual([]);
    }
    const store = dirOf(a, "store");
    const ok = nsrun(a, store, ["image", "import", gzArchive((p, config) => writeFileSync(p, config)), "--name", "honest"]);
    expect(ok.code).toBe(0);
    expect(nsrun(a, store, ["run", "--image", "honest", "-u", "0:0", "--", "echo", "runs"]).stdout).toBe("runs\n");
  });

  test("an archive's JSON over 4 MiB is refused (control: the same archive with a small manifest)", () => {
    const src = dirOf(a, "big");
    const layer = busyboxLayer();
    writeDockerArchive(src, [layer]);
    const manifest = JSON.parse(readFileSync(join(src, "manifest.json"), "utf8"));
    writeFileSync(join(src, "manifest.json"), JSON.stringify(manifest) + " ".repeat(5 << 20));
    give(a, src);
    const r = nsrun(a, dirOf(a, "store"), ["image", "import", src, "--name", "big"]);
    expect(r.code).toBe(125);
    expect(r.stderr).toContain('"manifest.json" is larger than 4 MiB; refused');
    writeFileSync(join(src, "manifest.json"), JSON.stringify(manifest));
    expect(nsrun(a, dirOf(a, "store"), ["image", "import", src, "--name", "big"]).code).toBe(0);
  });
});

describe.skipIf(why !== null).each(area.actors)("image configs are validated, never read loosely ($name)", (a) => {
  test("a string Entrypoint, non-strings in Cmd, a NUL in Env are refused naming the field (control: the same config with arrays runs it)", () => {
    for (const [defaults, says] of [
      [{ Entrypoint: "/bin/echo pwned" }, 'config.Entrypoint: expected Array, got "/bin/echo pwned"'],
      [{ Entrypoint: null, Cmd: ["echo", 5, null, "x"] }, "config.Cmd[1]: expected string, got 5"],
      [{ Env: ["A=a\u0000b"] }, 'config.Env[0]: a variable cannot contain NUL, got "A=a\\u0000b"'],
      [{ User: 0 }, "config.User: expected string, got 0"],
    ] as const) {
      const store = dirOf(a, "store");
      const r = nsrun(a, store, ["image", "import", layout(a, defaults), "--name", "bad"]);
      expect(r.code).toBe(125);
      expect(oneLine(r).length).toBe(1);
      expect(r.stderr).toContain(says);
      expect(existsSync(join(store, "images")) ? readdirSync(join(store, "images")) : []).toEqual([]);
    }
    const store = imported(a, layout(a, { Entrypoint: null, Cmd: ["echo", "5", "x"], Env: ["PATH=/bin", "A=a b"] }), "good");
    const ok = nsrun(a, store, ["run", "--image", "good", "-u", "0:0"]);
    expect([ok.code, ok.stdout]).toEqual([0, "5 x\n"]);
  });
});

const rootOnly = process.getuid?.() === 0 ? null : "the test archive gives a file owner 1000, which needs root";
describe.skipIf(why !== null).each(area.actors)("tar names and owners ($name)", (a) => {
  test.skipIf(rootOnly !== null)(`names that differ in a byte that is not UTF-8 stay distinct files, as GNU tar keeps them (control: GNU tar extracts the same)${rootOnly ? ` (skipped: ${rootOnly})` : ""}`, () => {
    const src = dirOf(a, "bytes");
    const py = `import os
os.chdir(${JSON.stringify(src)})
os.mkdir(b'tree')
for n in (b'caf\\xe9', b'caf\\xe8', 'café'.encode()):
    open(b'tree/' + n, 'wb').write(n)
os.mkdir(b'tree/dir\\xff')
open(b'tree/dir\\xff/in\\xfe', 'wb').write(b'x')
os.chown(b'tree/dir\\xff/in\\xfe', 1000, 1000)
os.symlink(b'caf\\xe9', b'tree/link\\xe9')
os.mkdir(b'tree/bin')
open(b'tree/bin/busybox', 'wb').write(open('/bin/busybox', 'rb').read())
os.chmod(b'tree/bin/busybox', 0o755)
for applet in (b'sh', b'cat', b'stat', b'printf'):
    os.symlink(b'busybox', b'tree/bin/' + applet)`;
    expect(spawnSync(["python3", "-c", py]).exitCode).toBe(0);
    const tar = join(src, "bytes.tar");
    expect(spawnSync(["tar", "-C", join(src, "tree"), "-cf", tar, "."]).exitCode).toBe(0);
    give(a, src);
    const store = dirOf(a, "store");
    const r = nsrun(a, store, ["image", "import", tar, "--name", "bytes"]);
    expect(r.code).toBe(0);
    const rootfs = JSON.parse(nsrun(a, store, ["image", "inspect", "bytes"]).stdout).rootfs as string;
    const names = (dir: string) => spawnSync(["ls", "-b", dir], { stdout: "pipe" }).stdout.toString().split("\n").filter(Boolean).sort();
    expect(names(rootfs)).toEqual(["bin", "caf\\350", "caf\\351", "café", "dir\\377", "link\\351"]);
    // Read inside a box too (the box's view is the kernel's: the same bytes).
    const box = nsrun(a, store, ["run", "--image", "bytes", "-u", "0:0", "--", "sh", "-c", "cat /caf$(printf '\\351') /caf$(printf '\\350'); stat -c %u /dir$(printf '\\377')/in$(printf '\\376'); cat /link$(printf '\\351')"]);
    expect(box.stdout).toBe(`caf\ufffdcaf\ufffd1000\ncaf\ufffd`);
    // Control: GNU tar's own extraction has the same names.
    const gnu = join(src, "gnu");
    mkdirSync(gnu);
    spawnSync(["tar", "-C", gnu, "-xf", tar]);
    expect(names(gnu)).toEqual(names(rootfs));
  });

  test("a PAX uid or gid of -1, abc or 1e3, or a name with NUL, is refused naming the entry (control: uid=1000)", () => {
    const pax = (uid: string, key = "uid") => {
      // A PAX header 'x' with uid=..., then the file: built by hand (the writer only makes valid ones).
      const record = (k: string, v: string) => {
        const body = ` ${k}=${v}\n`;
        let len = body.length + 1;
        if (String(len).length + body.length !== len) len = String(len + 1).length + body.length;
        return `${len}${body}`;
      };
      const text = Buffer.from(record(key, uid));
      const file = writeTar([{ path: "f", data: "x" }]);
      const header = writeTar([{ path: "PaxHeaders/f", data: text }]).subarray(0, 512 + Math.ceil(text.length / 512) * 512);
      header[156] = "x".charCodeAt(0);
      header.fill(0x20, 148, 156);
      let sum = 0;
      for (let i = 0; i < 512; i++) sum += header[i];
      header.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, "latin1");
      return Buffer.concat([header, file]);
    };
    for (const uid of ["-1", "abc", "1e3", "4294967295"]) {
      const src = dirOf(a, "pax");
      writeFileSync(join(src, "l.tar"), pax(uid));
      give(a, src);
      const r = nsrun(a, dirOf(a, "store"), ["image", "import", join(src, "l.tar"), "--name", "pax"]);
      expect(r.code).toBe(125);
      expect(r.stderr).toContain(`"f": its PAX uid ${JSON.stringify(uid)} is not an id (0-4294967294)`);
    }
    // A NUL in a PAX name would end it at the syscall: "etc/passwd\0junk" would write etc/passwd.
    const nul = dirOf(a, "pax");
    writeFileSync(join(nul, "l.tar"), pax("etc/passwd\0junk", "path"));
    give(a, nul);
    const n = nsrun(a, dirOf(a, "store"), ["image", "import", join(nul, "l.tar"), "--name", "pax"]);
    expect(n.code).toBe(125);
    expect(n.stderr).toContain('"etc/passwd\\u0000junk": its name or link target contains NUL');
    const src = dirOf(a, "pax");
    writeFileSync(join(src, "l.tar"), pax("1000"));
    give(a, src);
    expect(nsrun(a, dirOf(a, "store"), ["image", "import", join(src, "l.tar"), "--name", "pax"]).code).toBe(0);
  });
});

describe.skipIf(why !== null).each(area.actors)("a store that checks itself ($name)", (a) => {
  test("a corrupt image.json shows as broken in ls, the box says so, and rm ID and prune remove it (control: the intact image)", () => {
    const store = imported(a, layout(a, {}), "one");
    expect(nsrun(a, store, ["image", "import", layout(a, {}), "--name", "two"]).code).toBe(0);
    const [dir] = readdirSync(join(store, "images")).filter((id) => JSON.parse(readFileSync(join(store, "images", id, "image.json"), "utf8")).name === "one:latest");
    writeFileSync(join(store, "images", dir, "image.json"), "{ not json");
    const ls = nsrun(a, store, ["image", "ls"]);
    expect(ls.stdout).toContain(`(broken; nsrun image rm ${dir})`);
    expect(ls.stdout).toContain("two:latest");
    const json = JSON.parse(nsrun(a, store, ["image", "ls", "--json"]).stdout);
    expect(json.find((e: { broken?: boolean }) => e.broken)).toEqual({ broken: true, folder: dir, problem: `its record "${join(store, "images", dir, "image.json")}" is not valid JSON` });
    const box = nsrun(a, store, ["run", "--image", "one", "--", "true"]);
    expect(box.code).toBe(125);
    expect(box.stderr).toContain(`image "one:latest": its record "${join(store, "images", dir, "image.json")}" is not valid JSON`);
    expect(nsrun(a, store, ["run", "--image", "two", "-u", "0:0", "--", "true"]).code).toBe(0);
    const rm = nsrun(a, store, ["image", "rm", dir]);
    expect([rm.code, rm.stdout]).toEqual([0, `${dir}\n`]);
    expect(readdirSync(join(store, "images")).includes(dir)).toBe(false);
    // prune: a record that names another image is broken as well.
    const [two] = readdirSync(join(store, "images"));
    const rec = JSON.parse(readFileSync(join(store, "images", two, "image.json"), "utf8"));
    writeFileSync(join(store, "images", two, "image.json"), JSON.stringify({ ...rec, name: "someone-else:latest" }));
    const prune = nsrun(a, store, ["image", "prune"]);
    expect(prune.code).toBe(0);
    expect(prune.stderr).toContain(`removing broken image ${two}: its record`);
    expect(readdirSync(join(store, "images"))).toEqual([]);
    expect(readdirSync(join(store, "tmp"))).toEqual([]);
  });
});

describe.skipIf(why !== null).each(area.actors)("one line naming the image, the file or the field ($name)", (a) => {
  test("a base-256 mtime of 2^88 is refused naming the entry, not Node's range error (control: an ordinary mtime)", () => {
    const src = dirOf(a, "mtime");
    const t = writeTar([{ path: "f", data: "x" }]);
    t[136] = 0x80;
    t.fill(0xff, 137, 148);
    t.fill(0x20, 148, 156);
    let sum = 0;
    for (let i = 0; i < 512; i++) sum += t[i];
    t.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, "latin1");
    writeFileSync(join(src, "t.tar"), t);
    writeFileSync(join(src, "ok.tar"), writeTar([{ path: "f", data: "x", mtime: 1_700_000_000 }]));
    give(a, src);
    const r = nsrun(a, dirOf(a, "store"), ["image", "import", join(src, "t.tar"), "--name", "t"]);
    expect(r.code).toBe(125);
    expect(oneLine(r)).toEqual([`nsrun: "${join(src, "t.tar")}": "f": its mtime 3.094850098213451e+26 is out of range`]);
    expect(nsrun(a, dirOf(a, "store"), ["image", "import", join(src, "ok.tar"), "--name", "t"]).code).toBe(0);
  });

  test("a layer that is not its digest names the layer once (control: the intact layout imports)", () => {
    const dir = dirOf(a, "badblob");
    writeOciLayout(dir, [busyboxLayer()], { tag: "x", compression: "none" });
    give(a, dir);
    expect(nsrun(a, dirOf(a, "store"), ["image", "import", dir, "--name", "ok"]).code).toBe(0);
    const blobsDir = join(dir, "blobs/sha256");
    const [biggest] = readdirSync(blobsDir).sort((x, y) => readFileSync(join(blobsDir, y)).length - readFileSync(join(blobsDir, x)).length);
    const b = readFileSync(join(blobsDir, biggest));
    b[b.indexOf("\x7fELF", 0, "latin1") + 1000] ^= 0xff; // inside busybox's content: every header stays intact
    writeFileSync(join(blobsDir, biggest), b);
    const r = nsrun(a, dirOf(a, "store"), ["image", "import", dir, "--name", "bad"]);
    expect(r.code).toBe(125);
    const lines = oneLine(r);
    expect(lines.length).toBe(1);
    expect(lines[0]).toContain(`layer 1/1 sha256:${biggest.slice(0, 12)}: digest mismatch: expected sha256:${biggest}`);
    expect(lines[0].split("layer 1/1").length).toBe(2);
  });

  test("citty's errors reach a pipe without colour codes; a deeply nested TOML says so (controls: the name is kept; shallow nesting parses)", () => {
    const r = run(area.bin, a, ["image", "bogus"]);
    expect([r.code, r.stderr]).toEqual([125, "nsrun: Unknown command bogus\n"]);
    const deep = join(a.area, "configs", "deep.toml");
    writeFileSync(deep, `a = ${"[".repeat(100_000)}${"]".repeat(100_000)}\n`);
    const shallow = join(a.area, "configs", "shallow.toml");
    writeFileSync(shallow, `a = ${"[".repeat(3)}${"]".repeat(3)}\n`);
    give(a, deep);
    give(a, shallow);
    expect(run(area.bin, a, ["run", "--config", deep]).stderr).toBe(`nsrun: ${deep}: not valid TOML: values nested too deeply\n`);
    expect(run(area.bin, a, ["run", "--config", shallow]).stderr).toContain(`${shallow}: a: unknown key`);
  });
});

describe.skipIf(why !== null || process.getuid?.() !== 0)("a read-only store (root: a read-only bind mount)", () => {
  test("EROFS is named with a hint (control: the same store writable)", () => {
    const a = area.actors[0];
    const store = dirOf(a, "rostore");
    expect(nsrun(a, store, ["image", "prune"]).code).toBe(0);
    expect(spawnSync(["mount", "--bind", store, store]).exitCode).toBe(0);
    try {
      expect(spawnSync(["mount", "-o", "remount,ro,bind", store]).exitCode).toBe(0);
      const r = nsrun(a, store, ["image", "import", layout(a, {}), "--name", "x"]);
      expect([r.code, r.stderr]).toEqual([125, `nsrun: cannot open the image store's lock "${store}/lock": read-only file system (EROFS)\n  hint: the image store is on a read-only file system: set NSRUN_STORE to a folder on a writable one\n`]);
    } finally {
      spawnSync(["umount", store]);
    }
    expect(nsrun(a, store, ["image", "import", layout(a, {}), "--name", "x"]).code).toBe(0);
  });
});

describe.skipIf(why !== null).each(area.actors)("a kept layer is opened without following symlinks ($name)", (a) => {
  test("upper/ planted as a symlink to a host folder is refused, and the host folder is untouched (control: a real upper/ takes the write)", () => {
    const store = imported(a, layout(a, {}), "img");
    const target = dirOf(a, "host-folder");
    const layer = dirOf(a, "layer");
    symlinkSync(target, join(layer, "upper"));
    give(a, layer);
    const r = nsrun(a, store, ["run", "--image", "img", "--layer", layer, "-u", "0:0", "--", "sh", "-c", "echo pwned > /etc/owned"]);
    expect(r.code).toBe(125);
    expect(r.stderr).toContain(`open the box's layer "${layer}"`);
    expect(r.stderr).toContain("ELOOP");
    expect(readdirSync(target)).toEqual([]);
    const honest = dirOf(a, "layer");
    expect(nsrun(a, store, ["run", "--image", "img", "--layer", honest, "-u", "0:0", "--", "sh", "-c", "echo mine > /etc/owned"]).code).toBe(0);
    expect(readFileSync(join(honest, "upper/etc/owned"), "utf8")).toBe("mine\n");
  });
});
