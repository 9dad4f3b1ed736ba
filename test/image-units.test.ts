// Unit tests of the image code that needs no store: the tar reader (against GNU tar's output as
// well as our writer's), names inside the image, the owners an ordinary user's extraction records
// and the tape that gives them, compression, references and auth files.
import { describe, expect, test } from "bun:test";
import { spawnSync } from "bun";
import { closeSync, mkdtempSync, mkdirSync, openSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { close as closeFd, fsetxattr, openat2 } from "../ffi/fs";
import { join } from "node:path";
import { parseChallenge, findCredentials } from "../core/image/auth";
import { decompress, sniffCompression } from "../core/image/compression";
import { cleanName, extractLayers } from "../core/image/layers";
import { emitOwners } from "../core/image/owners";
import { Tape } from "../core/tape/tape";
import * as F from "../ffi/flags";
import { normalizeName } from "../core/image/store";
import { isLoopback, parseReference } from "../core/image/registry";
import { readTar, parseNumber, type TarEntry } from "../core/image/tar";
import { compress } from "../fixtures/images/build";
import { writeTar } from "../fixtures/images/tar-writer";

async function* chunks(data: Uint8Array, size = 7): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < data.length; i += size) yield data.subarray(i, i + size);
}

async function entries(data: Uint8Array, size?: number): Promise<Array<TarEntry & { body: string }>> {
  const out: Array<TarEntry & { body: string }> = [];
  for await (const m of readTar(chunks(data, size))) {
    const parts: Uint8Array[] = [];
    for await (const p of m.body()) parts.push(p);
    out.push({ ...m.entry, body: Buffer.concat(parts).toString() });
  }
  return out;
}

describe("tar reader", () => {
  test("ustar, PAX (long names, nanosecond times, xattrs) and GNU long names, read in 7-byte chunks", async () => {
    const long = `${"d".repeat(120)}/${"f".repeat(150)}`;
    const items = [
      { path: "dir/", type: "dir" as const, mode: 0o1777, uid: 5, gid: 6 },
      { path: "dir/file", data: "hello", mode: 0o4755, mtime: 1_700_000_000.25, xattrs: { "user.a": "1", "security.capability": Buffer.from([1, 0, 0, 2, 0xff]) } },
      { path: long, data: "x".repeat(1000) },
      { path: "ln", type: "symlink" as const, linkname: "l".repeat(200) },
      { path: "hl", type: "hardlink" as const, linkname: "dir/file" },
      { path: "dev", type: "chardev" as const, devmajor: 1, devminor: 3 },
    ];
    for (const gnu of [false, true]) {
      const got = await entries(writeTar(items, { gnu }));
      expect(got.map((e) => [e.path, e.type])).toEqual([
        ["dir/", "dir"],
        ["dir/file", "file"],
        [long, "file"],
        ["ln", "symlink"],
        ["hl", "hardlink"],
        ["dev", "chardev"],
      ]);
      expect(got[0].mode).toBe(0o1777);
      expect([got[0].uid, got[0].gid]).toEqual([5, 6]);
      expect(got[1].body).toBe("hello");
      expect(got[1].mode).toBe(0o4755);
      expect(got[2].body).toBe("x".repeat(1000));
      expect(got[3].linkname).toBe("l".repeat(200));
      expect([got[5].devmajor, got[5].devminor]).toEqual([1, 3]);
      if (!gnu) {
        expect(got[1].mtime).toEqual({ sec: 1_700_000_000, nsec: 250_000_000 });
        expect(got[1].xattrs.get("user.a")?.toString()).toBe("1");
        expect([...(got[1].xattrs.get("security.capability") ?? [])]).toEqual([1, 0, 0, 2, 0xff]);
      }
    }
  });

  test("reads what GNU tar writes (--format=posix with --xattrs, and gnu format), skipping unread bodies", async () => {
    const dir = mkdtempSync("/tmp/nsrun-image-unit-");
    try {
      mkdirSync(join(dir, "src/sub"), { recursive: true });
      writeFileSync(join(dir, "src/sub", "n".repeat(130)), "long");
      writeFileSync(join(dir, "src/a"), "A".repeat(10_000));
      symlinkSync("a", join(dir, "src/link"));
      const fd = openSync(join(dir, "src/a"), "r");
      fsetxattr(fd, "user.k", Buffer.from("v"), "a");
      closeSync(fd);
      for (const format of ["posix", "gnu"]) {
        const r = spawnSync(["tar", `--format=${format}`, "--xattrs", "-C", join(dir, "src"), "-cf", "-", "."], { stdout: "pipe", stderr: "pipe" });
        expect(r.exitCode).toBe(0);
        const got: string[] = [];
        let xattr: string | undefined;
        for await (const m of readTar(chunks(r.stdout, 4096))) {
          got.push(`${m.entry.path} ${m.entry.type}`); // bodies never read
          if (m.entry.path === "./a") xattr = m.entry.xattrs.get("user.k")?.toString();
        }
        if (format === "posix") expect(xattr).toBe("v");
        expect(got.sort()).toEqual(["./ dir", "./a file", "./link symlink", "./sub/ dir", `./sub/${"n".repeat(130)} file`]);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("base-256 numbers, bad checksums and truncated archives", async () => {
    expect(parseNumber(Uint8Array.from([0x80, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]))).toBe(2 ** 32);
    expect(parseNumber(Buffer.from("0000755 \0"))).toBe(0o755);
    const tar = writeTar([{ path: "f", data: "x".repeat(600) }]);
    const bad = Buffer.from(tar);
    bad[0] ^= 1;
    await expect(entries(bad)).rejects.toThrow(/bad checksum/);
    await expect(entries(tar.subarray(0, 700))).rejects.toThrow(/truncated/);
  });
});

describe("names inside the image", () => {
  test("absolute names and .. stay inside; [] is the root", () => {
    expect(cleanName("./a/b/")).toEqual({ parts: ["a", "b"], contained: false });
    expect(cleanName("/etc/passwd")).toEqual({ parts: ["etc", "passwd"], contained: true });
    expect(cleanName("../../../etc/shadow")).toEqual({ parts: ["etc", "shadow"], contained: true });
    expect(cleanName("a/../../b")).toEqual({ parts: ["b"], contained: true });
    expect(cleanName("./")).toEqual({ parts: [], contained: false });
  });

  test("store names get :latest, and odd names are refused", () => {
    expect(normalizeName("busybox")).toBe("busybox:latest");
    expect(normalizeName("localhost:5000/test/busybox")).toBe("localhost:5000/test/busybox:latest");
    expect(normalizeName("localhost:5000/test/busybox:1")).toBe("localhost:5000/test/busybox:1");
    for (const bad of ["", "../x", "a//b", "a b", "-x", "a/../b"]) expect(() => normalizeName(bad)).toThrow(/image name/);
  });
});

describe("owners to give later (an ordinary user's import with subordinate ids)", () => {
  test("recorded by real path, the last layer's word: whiteouts, replacements and opaque directories drop what they remove", async () => {
    const lower = writeTar([
      { path: "home/", type: "dir" },
      { path: "home/u/", type: "dir", mode: 0o750, uid: 1000, gid: 1000 },
      { path: "home/u/f", data: "x", uid: 1000, gid: 1000 },
      { path: "home/u/gone", data: "x", uid: 1000, gid: 1000 },
      { path: "suid", data: "x", mode: 0o4755, uid: 1000, gid: 1000 },
      { path: "suid-link", type: "hardlink", linkname: "suid" },
      { path: "sym", type: "symlink", linkname: "home/u/f", uid: 7, gid: 7 },
      { path: "fifo", type: "fifo", mode: 0o2620, uid: 5, gid: 5 },
      { path: "dir/", type: "dir", uid: 2, gid: 2 },
      { path: "dir/inner", data: "x", uid: 2, gid: 2 },
      { path: "opq/", type: "dir" },
      { path: "opq/below", data: "x", uid: 3, gid: 3 },
      { path: "later", data: "x", uid: 9, gid: 9 },
      { path: "real/", type: "dir" },
      { path: "other/", type: "dir" },
      { path: "via", type: "symlink", linkname: "real" },
      { path: "via/f", data: "x", uid: 4, gid: 4 },
    ]);
    const upper = writeTar([
      { path: "home/u/.wh.gone", data: "" },
      { path: "dir", data: "a file now" },
      { path: "opq/.wh..wh..opq", data: "" },
      { path: "opq/above", data: "x", uid: 6, gid: 6 },
      { path: "later", data: "root's now" },
      { path: "via", type: "symlink", linkname: "other" },
      { path: "via/g", data: "x", uid: 8, gid: 8 },
    ]);
    const dir = mkdtempSync("/tmp/nsrun-owners-unit-");
    const rootfd = openat2(F.AT_FDCWD, dir, F.O_PATH | F.O_DIRECTORY, 0);
    try {
      const layers = [lower, upper].map((l, i) => ({ label: `layer ${i + 1}`, open: () => chunks(l, 4096) }));
      const { owners } = await extractLayers(rootfd, layers, { keepOwners: false, recordOwners: true, whiteouts: true });
      const rec = (uid: number, mode: number | null = null) => ({ uid, gid: uid, mode, capability: null });
      expect(Object.fromEntries([...owners].sort(([a], [b]) => a.localeCompare(b)))).toEqual({
        "home/u": rec(1000),
        "home/u/f": rec(1000),
        "opq/above": rec(6),
        "other/g": rec(8), // through the symlink as it is when the entry comes
        "real/f": rec(4), // kept under its real path, though "via" now leads elsewhere
        fifo: rec(5, 0o2620),
        suid: rec(1000, 0o4755),
        "suid-link": rec(1000, 0o4755), // the same file as suid
        sym: rec(7),
      });
    } finally {
      closeFd(rootfd);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("the tape: chown through an O_PATH fd from the image root, then the mode and the capability that chown clears", () => {
    const t = new Tape("x64");
    emitOwners(t, 5, [
      ["usr/bin/x", { uid: 1000, gid: 1000, mode: 0o4755, capability: new Uint8Array(20) }],
      ["", { uid: 0, gid: 50, mode: null, capability: null }],
    ]);
    expect(t.listing()).toBe(
      [
        '   0  openat2(5, "usr/bin/x", {O_NOFOLLOW|O_CLOEXEC|O_PATH, RESOLVE_NO_MAGICLINKS|RESOLVE_IN_ROOT}) -> entry  [again on EAGAIN]',
        '   1  fchownat(entry, "", 1000, 1000, AT_EMPTY_PATH)',
        "   2  fdpath(entry)",
        '   3  fchmodat(AT_FDCWD, "/proc/self/fd/entry", 04755)',
        "   4  fdpath(entry)",
        '   5  setxattr("/proc/self/fd/entry", "security.capability", [20 bytes], 20, 0)',
        "   6  close(entry)",
        '   7  openat2(5, ".", {O_NOFOLLOW|O_CLOEXEC|O_PATH, RESOLVE_NO_MAGICLINKS|RESOLVE_IN_ROOT}) -> entry  [again on EAGAIN]',
        '   8  fchownat(entry, "", 0, 50, AT_EMPTY_PATH)',
        "   9  close(entry)",
        "  10  exit_group(0)",
        "",
      ].join("\n"),
    );
  });
});

describe("compression", () => {
  test("gzip, zstd and xz are found by their magic bytes and decompressed in chunks", async () => {
    const data = Buffer.from("a tar would be here ".repeat(5000));
    for (const how of ["none", "gzip", "zstd", "xz"] as const) {
      const packed = compress(data, how);
      expect(sniffCompression(packed)).toBe(how);
      const parts: Uint8Array[] = [];
      for await (const c of decompress(chunks(packed, 1000), how)) parts.push(c);
      expect(Buffer.concat(parts).equals(data)).toBe(true);
    }
  });

  test("corrupt xz is reported with the source's name", async () => {
    const packed = compress(Buffer.from("x".repeat(10000)), "xz");
    const broken = Buffer.concat([packed.subarray(0, 40), Buffer.alloc(40, 1)]);
    const run = async () => {
      for await (const _ of decompress(chunks(broken, 1000), '"rootfs.tar.xz"'));
    };
    await expect(run()).rejects.toThrow(/"rootfs.tar.xz": xz failed/);
  });
});

describe("references and credentials", () => {
  test("docker's reference rules", () => {
    expect(parseReference("localhost:5000/test/busybox:latest")).toEqual({ registry: "localhost:5000", repository: "test/busybox", tag: "latest", digest: undefined });
    expect(parseReference("busybox")).toEqual({ registry: "docker.io", repository: "library/busybox", tag: "latest", digest: undefined });
    expect(parseReference("127.0.0.1:5000/a/b@sha256:" + "a".repeat(64)).digest).toBe(`sha256:${"a".repeat(64)}`);
    expect(() => parseReference("Upper/Case")).toThrow(/not an image reference/);
    expect(isLoopback("127.0.0.1:5000") && isLoopback("localhost") && isLoopback("[::1]:5000")).toBe(true);
    expect(isLoopback("registry.example:5000")).toBe(false);
  });

  test("challenges and auth files (podman's auth.json and docker's config.json)", () => {
    expect(parseChallenge('Bearer realm="http://127.0.0.1:1/token",service="reg",scope="repository:a/b:pull"')).toEqual({
      scheme: "bearer",
      params: { realm: "http://127.0.0.1:1/token", service: "reg", scope: "repository:a/b:pull" },
    });
    expect(parseChallenge('Basic realm="x"')?.scheme).toBe("basic");
    const dir = mkdtempSync("/tmp/nsrun-image-unit-");
    try {
      const podman = join(dir, "auth.json");
      const docker = join(dir, "config.json");
      writeFileSync(podman, JSON.stringify({ auths: { "127.0.0.1:5000/team": { auth: Buffer.from("alice:s3cret").toString("base64") } } }));
      writeFileSync(docker, JSON.stringify({ auths: { "https://127.0.0.1:5000": { auth: Buffer.from("bob:pw:with:colons").toString("base64") } } }));
      expect(findCredentials("127.0.0.1:5000", "team/app", [podman, docker])).toMatchObject({ username: "alice", password: "s3cret", file: podman });
      expect(findCredentials("127.0.0.1:5000", "other/app", [podman, docker])).toMatchObject({ username: "bob", password: "pw:with:colons", file: docker });
      expect(findCredentials("elsewhere:1", "x", [podman, docker])).toBeNull();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
