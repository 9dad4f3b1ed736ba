// apt-get in a box: a Debian rootfs, with apt's sandbox user `_apt`, runs `apt-get update` and
// `apt-get install` against a local file: repository (no network). apt's fetch methods drop
// privileges to _apt (setgroups, setresgid, seteuid to uid 42 and gid 65534 on Debian 12), so a box
// with a user namespace needs those ids mapped: a rootless box maps 1..65536 to the user's
// subordinate range (newuidmap), root's user-namespace box maps 0..65535 to its range. The control
// is the same rootless box with `[user_namespace] mode = "single"`: only the user's own id is
// mapped, and apt's privilege drop fails.
//
// The rootfs (fixtures/debian-rootfs.ts) is made of the host's own apt, dpkg and their libraries,
// one copy per box, in the actor's area. The repository, /repo in the rootfs, holds one .deb built
// here with dpkg-deb and a Packages file written here (dpkg-scanpackages is in dpkg-dev, which
// the host may not have).
import { afterAll, describe, expect, test } from "bun:test";
import { spawnSync } from "bun";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { release } from "node:os";
import { join } from "node:path";
import { ROOT_DEFAULT_RANGE, subordinateRanges } from "../core/stages/userns";
import { buildAptRootfs, hostAptUser } from "../fixtures/debian-rootfs";
import { type Actor, run, setupTestArea, writeConfig } from "./helpers";

const GREETING = "hello from an apt-installed package\n";
const SCRIPT = "cat /proc/self/uid_map; echo ---; apt-get update && apt-get install -y nsrun-hello && echo --- && cat /usr/share/nsrun-hello/greeting";

const has = (tool: string) => spawnSync(["sh", "-c", `command -v ${tool}`], { stdout: "ignore", env: { PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" } }).exitCode === 0;
const hostWhy = !has("apt-get") ? "apt-get is not installed on the host" : !has("dpkg-deb") ? "dpkg-deb is not installed on the host" : !hostAptUser() ? "the host has no _apt user" : null;

const area = setupTestArea();
// The .deb's source tree and the repository, shared by every box (each gets a copy of it).
const scratch = mkdtempSync("/tmp/nsrun-apt-");
// Rootfs folders where apt chowned its folders to a subordinate id. An ordinary user running these
// tests cannot list or remove those from the host, so a box (whose root can) gives them back first.
const handBack: Array<{ a: Actor; name: string }> = [];
afterAll(() => {
  for (const { a, name } of handBack) {
    const cfg = writeConfig(a, `${name}-hand-back.toml`, `rootfs = "../${name}"\n`);
    run(area.bin, a, ["run", "--config", cfg, "--", "/bin/chown", "-R", "0:0", "/var/lib/apt", "/var/cache/apt"]);
  }
  try {
    area.cleanup();
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
});

/** nsrun-hello_1.0_all.deb and a Packages file naming it, in `repo`. Returns why not, or null. */
function buildRepo(repo: string): string | null {
  const src = join(scratch, "nsrun-hello");
  mkdirSync(join(src, "DEBIAN"), { recursive: true });
  mkdirSync(join(src, "usr/share/nsrun-hello"), { recursive: true });
  writeFileSync(join(src, "usr/share/nsrun-hello/greeting"), GREETING);
  const fields = ["Package: nsrun-hello", "Version: 1.0", "Architecture: all", "Maintainer: nsrun tests <nsrun-tests@example.invalid>"];
  const description = "Description: a greeting for nsrun's apt test";
  writeFileSync(join(src, "DEBIAN/control"), `${[...fields, description].join("\n")}\n`);
  mkdirSync(repo, { recursive: true });
  const deb = "nsrun-hello_1.0_all.deb";
  const b = spawnSync(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", src, join(repo, deb)], { stdout: "pipe", stderr: "pipe", env: { PATH: "/usr/bin:/bin", SOURCE_DATE_EPOCH: "1700000000" } });
  if (b.exitCode !== 0) return `dpkg-deb --build failed: ${b.stderr}`;
  const bytes = readFileSync(join(repo, deb));
  const sha256 = new Bun.CryptoHasher("sha256").update(bytes).digest("hex");
  writeFileSync(join(repo, "Packages"), `${[...fields, `Filename: ./${deb}`, `Size: ${bytes.length}`, `SHA256: ${sha256}`, description].join("\n")}\n\n`);
  return null;
}

const repo = join(scratch, "repo");
// A first build of the rootfs tells whether this host can make one (each box then gets its own).
const why = hostWhy ?? buildAptRootfs(join(scratch, "probe-rootfs")) ?? buildRepo(repo);
if (why) console.warn(`skipped: apt in a box: ${why}`);
const apt = hostAptUser() ?? { uid: 42, gid: 65534 };

/** A fresh apt rootfs for one box, in the actor's area, with the repository at /repo, owned by `owner`. */
function aptRootfs(a: Actor, name: string, owner: { uid: number; gid: number } | null): string {
  const dir = join(a.area, name);
  const failed = buildAptRootfs(dir);
  if (failed) throw new Error(`buildAptRootfs: ${failed}`);
  cpSync(repo, join(dir, "repo"), { recursive: true });
  // -h: the rootfs holds absolute symlinks (usr/lib64/ld-linux-x86-64.so.2 -> /lib/...) that must
  // not lead chown to the host's own files.
  if (owner) spawnSync(["chown", "-R", "-h", `${owner.uid}:${owner.gid}`, dir]);
  return dir;
}

/** Runs SCRIPT in the box; splits its output into the uid_map, apt's output and the greeting. */
function aptBox(a: Actor, cfgName: string, toml: string) {
  const cfg = writeConfig(a, cfgName, toml);
  const r = run(area.bin, a, ["run", "--config", cfg, "--", "/bin/sh", "-c", SCRIPT], { timeoutMs: 100_000 });
  const [uidMap = "", aptOut = "", greeting = ""] = r.stdout.split("---\n");
  const lines = uidMap.trim().split("\n").map((l) => l.trim().split(/\s+/).map(Number));
  return { ...r, mapLines: lines, mapped: lines.reduce((n, l) => n + (l[2] ?? 0), 0), aptOut, greeting };
}

/** The host id that `inside` maps to, by the map's lines [inside, outside, count]. */
function outside(map: number[][], inside: number): number {
  const l = map.find(([i, , c]) => inside >= i && inside < i + c);
  if (!l) throw new Error(`${inside} is not mapped by ${JSON.stringify(map)}`);
  return l[1] + inside - l[0];
}

/** apt chowns its partial folders to _apt:root as root inside the box: on the host they belong to the ids those map to. */
function partialOwner(rootfs: string) {
  const st = statSync(join(rootfs, "var/lib/apt/lists/partial"));
  return [st.uid, st.gid];
}

function subIds(file: string, name: string, id: number) {
  return subordinateRanges(existsSync(file) ? readFileSync(file, "utf8") : "", { name, id });
}

const root = area.actors.find((a) => a.name === "root");
const user = area.actors.find((a) => a.name === "user");

const rootWhy = why ?? (root ? null : "the tests run as an ordinary user (run them as root to cover root boxes)");
describe.skipIf(rootWhy !== null)(`apt-get in a root box${rootWhy ? ` (skipped: ${rootWhy})` : ""}`, () => {
  const a = root as Actor;

  test("without a user namespace: apt-get update and install work as real root, and _apt owns the partial folders on the host", () => {
    const rootfs = aptRootfs(a, "apt-plain", null);
    const r = aptBox(a, "apt-plain.toml", 'rootfs = "../apt-plain"\n');
    expect(r.stderr).not.toContain("E:");
    expect(r.code).toBe(0);
    expect(r.mapLines).toEqual([[0, 0, 4294967295]]);
    expect(r.aptOut).toContain("Setting up nsrun-hello (1.0)");
    expect(r.greeting).toBe(GREETING);
    expect(partialOwner(rootfs)).toEqual([apt.uid, 0]);
  });

  test("with [namespaces] user = true: like a rootless box, 0..65535 map to root's range, _apt among them", () => {
    // planIdMaps: root's box maps 0.. to root's first range in /etc/subuid and /etc/subgid, the
    // whole range, else ROOT_DEFAULT_RANGE. The rootfs belongs to the range's first id, the box's root.
    const u = subIds("/etc/subuid", "root", 0)[0] ?? ROOT_DEFAULT_RANGE;
    const g = subIds("/etc/subgid", "root", 0)[0] ?? ROOT_DEFAULT_RANGE;
    const rootfs = aptRootfs(a, "apt-userns", { uid: u.start, gid: g.start });
    const r = aptBox(a, "apt-userns.toml", 'rootfs = "../apt-userns"\n[namespaces]\nuser = true\n');
    expect(r.stderr).not.toContain("E:");
    expect(r.code).toBe(0);
    expect(r.mapLines).toEqual([[0, u.start, u.count]]);
    expect(r.mapped).toBeGreaterThan(apt.uid);
    expect(r.greeting).toBe(GREETING);
    expect(partialOwner(rootfs)).toEqual([u.start + apt.uid, g.start]);
  });
});

const helpers = has("newuidmap") && has("newgidmap");
const userName = user ? spawnSync(["id", "-nu", String(user.uid)], { stdout: "pipe" }).stdout.toString().trim() : "";
const userSub = user ? { u: subIds("/etc/subuid", userName, user.uid)[0], g: subIds("/etc/subgid", userName, user.gid)[0] } : null;
const rootlessWhy =
  why ??
  (!user
    ? "no ordinary test user"
    : !helpers
      ? "newuidmap/newgidmap are not installed (apt-get install uidmap)"
      : !userSub?.u || !userSub.g
        ? `${userName} has no range in /etc/subuid and /etc/subgid`
        : null);
if (rootlessWhy && !why) console.warn(`skipped: apt in a rootless box: ${rootlessWhy}`);

describe.skipIf(rootlessWhy !== null)(`apt-get in a rootless box${rootlessWhy ? ` (skipped: ${rootlessWhy})` : ""}`, () => {
  const a = user as Actor;
  // The rootfs belongs to the user, the box's root. Nothing in it needs to belong to _apt
  // beforehand: apt-get, as the box's root, chowns its partial folders to _apt:root itself, which
  // on the host is the subordinate range's id for 42 (start + 42 - 1) and the user's own gid.
  const owner = { uid: a.uid, gid: a.gid };

  test("with subordinate ids (mode = \"auto\"): apt-get update and install work; uid_map has more than one line (control: mode = \"single\" fails in apt's privilege drop)", () => {
    const rootfs = aptRootfs(a, "apt-auto", owner);
    if (process.getuid?.() !== 0) handBack.push({ a, name: "apt-auto" });
    const r = aptBox(a, "apt-auto.toml", 'rootfs = "../apt-auto"\n');
    expect(r.stderr).not.toContain("E:");
    expect(r.code).toBe(0);
    expect(r.mapLines.length).toBeGreaterThan(1);
    expect(r.mapLines[0]).toEqual([0, a.uid, 1]);
    expect(r.aptOut).toContain("Setting up nsrun-hello (1.0)");
    expect(r.greeting).toBe(GREETING);
    expect(partialOwner(rootfs)).toEqual([outside(r.mapLines, apt.uid), a.gid]);

    // The control: the same box with only the user's own id mapped. setgroups is denied and 42
    // is not mapped, so the fetch method cannot become _apt and apt-get update fails.
    aptRootfs(a, "apt-single", owner);
    const c = aptBox(a, "apt-single.toml", 'rootfs = "../apt-single"\n[user_namespace]\nmode = "single"\n');
    expect(c.mapLines).toEqual([[0, a.uid, 1]]);
    expect(c.code).toBe(100);
    expect(c.stderr).toContain("setgroups");
    expect(c.stderr).toContain(`seteuid ${apt.uid} failed`);
    expect(c.greeting).toBe("");
  });

  const [major, minor] = release().split(".").map(Number);
  const ephemeralWhy = major > 6 || (major === 6 && minor >= 6) ? null : `Linux ${release()} is older than 6.6 (rootless overlayfs keeps user.* xattrs on tmpfs)`;
  if (ephemeralWhy) console.warn(`skipped: apt in an ephemeral rootless box: ${ephemeralWhy}`);
  test.skipIf(ephemeralWhy !== null)(`ephemeral: apt-get installs into the throw-away layer; the rootfs on disk is unchanged${ephemeralWhy ? ` (skipped: ${ephemeralWhy})` : ""}`, () => {
    const rootfs = aptRootfs(a, "apt-ephemeral", owner);
    const r = aptBox(a, "apt-ephemeral.toml", 'rootfs = "../apt-ephemeral"\nephemeral = true\n');
    expect(r.stderr).not.toContain("E:");
    expect(r.code).toBe(0);
    expect(r.greeting).toBe(GREETING);
    expect(existsSync(join(rootfs, "usr/share/nsrun-hello"))).toBe(false);
    expect(partialOwner(rootfs)).toEqual([a.uid, a.gid]);
  });
});
