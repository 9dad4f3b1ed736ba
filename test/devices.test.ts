// A box must not change the mode, owner or times of a host file through /dev or a masked path.
// A root box keeps CAP_CHOWN and CAP_FOWNER: its /dev has device nodes of its own (mknod in its /dev
// tmpfs), and its masks cover files with its own null device, read-only. A box in a user namespace
// (rootless, or root with user = true) gets read-only binds of the host's nodes, whose inodes a user
// namespace's root cannot change anyway (their owner is not mapped). Each probe tries chmod, chown
// and touch from the box, then compares the host's inodes; the positive controls run the same
// probe on a host file the box may change (a read-write bind of a file its root owns), and see it change.
import { afterAll, describe, expect, test } from "bun:test";
import { spawnSync } from "bun";
import { chmodSync, chownSync, existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { DEFAULT_MASKED } from "../core/stages/plan";
import { makeBundle, type Spec } from "../fixtures/oci/bundle";
import { type Actor, command, run, setupTestArea, writeConfig } from "./helpers";

const area = setupTestArea();
afterAll(() => area.cleanup());

const NODES = ["null", "zero", "full", "random", "urandom", "tty"].map((n) => `/dev/${n}`);
/** Every path the probe aims at: the /dev nodes and the default masked paths (files and folders). */
const TARGETS = [...NODES, ...DEFAULT_MASKED];

/** chmod, chown and touch of each path; prints "OP PATH" for each that succeeds. */
const probe = (paths: string[]) =>
  `for p in ${paths.join(" ")}; do [ -e $p ] || continue; chmod 600 $p 2>/dev/null && echo "chmod $p"; chown 65534:65534 $p 2>/dev/null && echo "chown $p"; touch -c $p 2>/dev/null && echo "touch $p"; done; true`;

/** What chmod, chown and touch change of a host inode (mtime of /dev/tty moves whenever a tty is written: ctime does not). */
function inode(path: string) {
  const s = statSync(path, { bigint: true });
  return { path, mode: s.mode, uid: s.uid, gid: s.gid, ctime: s.ctimeNs, mtime: path === "/dev/tty" ? 0n : s.mtimeNs };
}
const hostInodes = () => NODES.filter(existsSync).map(inode);

/**
 * The host's nodes as they were, if a probe changed their mode or owner (an nsrun without this
 * protection does): other tests and users on this machine need /dev/null. Checked before this runs.
 */
function restore(before: ReturnType<typeof hostInodes>): void {
  for (const b of before) {
    const now = inode(b.path);
    if (now.mode !== b.mode) chmodSync(b.path, Number(b.mode & 0o7777n));
    if (now.uid !== b.uid || now.gid !== b.gid) chownSync(b.path, Number(b.uid), Number(b.gid));
  }
}

/** Run `probe` (which returns its result), compare the host's nodes, and put them back whatever happened. */
function guarded<T>(probe: () => T): { result: T; before: ReturnType<typeof hostInodes>; after: ReturnType<typeof hostInodes> } {
  const before = hostInodes();
  try {
    const result = probe();
    return { result, before, after: hostInodes() };
  } finally {
    if ((process.getuid?.() ?? 0) === 0) restore(before);
  }
}

const sh = (a: Actor, args: string[], script: string) => run(area.bin, a, [...args, "--", "/bin/sh", "-c", script]);

/** A host file for a control: owned by `uid:gid`, mode 0644, bound read-write at /scratch; `device`: a null device node made for the test (root only). */
function scratch(a: Actor, name: string, uid: number, gid: number, device = false): { path: string; cfg: string } {
  const path = join(a.area, "data", name);
  if (device) expect(spawnSync(["mknod", path, "c", "1", "3"]).exitCode).toBe(0);
  else writeFileSync(path, "scratch\n");
  chmodSync(path, 0o644);
  chownSync(path, uid, gid);
  return { path, cfg: `[[mounts]]\ntype = "bind"\nsource = "${path}"\ntarget = "/scratch"\n` };
}

/** The host uid and gid that are the box's root (the first line of its maps), from a box of the same config. */
function boxRoot(a: Actor, cfg: string): { uid: number; gid: number } {
  const r = sh(a, ["run", "--config", cfg], "head -n1 /proc/self/uid_map; head -n1 /proc/self/gid_map");
  const [uid, gid] = r.stdout.trim().split("\n").map((l) => l.trim().split(/\s+/).map(Number));
  expect([uid[0], gid[0]]).toEqual([0, 0]);
  return { uid: uid[1], gid: gid[1] };
}

const root = area.actors.find((a) => a.name === "root");

describe.each(area.actors)("device nodes and masks ($name)", (a) => {
  const variants: Array<{ label: string; config: string; userns: boolean }> = [
    { label: a.name === "root" ? "a root box" : "a rootless box", config: `rootfs = "../rootfs"\n`, userns: a.name !== "root" },
    ...(a.name === "root" ? [{ label: "a root box with user = true", config: `rootfs = "../rootfs"\n[namespaces]\nuser = true\n`, userns: true }] : []),
  ];

  test.each(variants)("$label: chmod, chown and touch of every /dev node and masked path leave the host's inodes as they were", ({ config, userns }) => {
    const cfg = writeConfig(a, `dev-${userns ? "userns" : "own"}.toml`, config);
    const { result: r, before, after } = guarded(() => sh(a, ["run", "--config", cfg], probe(TARGETS)));
    expect(r.code).toBe(0);
    expect(after).toEqual(before);
    const changed = r.stdout.trim().split("\n").filter(Boolean);
    // A masked path never changes, from any box: its cover is read-only.
    expect(changed.filter((l) => !NODES.includes(l.split(" ")[1]))).toEqual([]);
    if (userns) {
      // The host's nodes, bound read-only: nothing changes.
      expect(changed).toEqual([]);
    } else {
      // The box's own nodes: root changes them, and the host's stay as they were (checked above).
      // (/dev/tty: touch -c of a tty the box has no terminal for still works; all three on each node.)
      expect(changed).toContain("chmod /dev/null");
      expect(changed).toContain("chown /dev/full");
      expect(changed).toContain("touch /dev/tty");
    }
  });

  test.each(variants)("$label: control: the same probe on a host file the box's root owns (for a root box, a device node), bound read-write, changes it", ({ config, userns }) => {
    const base = writeConfig(a, `dev-owner-${userns}.toml`, config);
    const owner = userns ? boxRoot(a, base) : { uid: 0, gid: 0 };
    // A root box's control is a device node of the host's, as /dev/null would be if it were bound.
    const s = scratch(a, `owned-${userns}`, owner.uid, owner.gid, !userns);
    const cfg = writeConfig(a, `dev-control-${userns}.toml`, `${config}${s.cfg}`);
    const before = inode(s.path);
    const r = sh(a, ["run", "--config", cfg], probe(["/scratch"]));
    expect(r.stdout).toBe("chmod /scratch\nchown /scratch\ntouch /scratch\n");
    const after = inode(s.path);
    expect(after.mode & 0o777n).toBe(0o600n);
    expect(after.ctime).not.toBe(before.ctime);
    if (!userns) expect([after.uid, after.gid]).toEqual([65534n, 65534n]);
  });

  const asRoot = (process.getuid?.() ?? 0) === 0;
  test.skipIf(!asRoot)(`a box in a user namespace cannot change a host inode whose owner is not mapped, even bound read-write (control above: one it owns changes)${asRoot ? "" : " (skipped: making a file of root's needs root)"}`, () => {
      const cfgText = a.name === "root" ? `rootfs = "../rootfs"\n[namespaces]\nuser = true\n` : `rootfs = "../rootfs"\n`;
      const s = scratch(a, "unmapped", 0, 0);
      const cfg = writeConfig(a, "dev-unmapped.toml", `${cfgText}${s.cfg}`);
      const before = inode(s.path);
      const r = sh(a, ["run", "--config", cfg], `cat /scratch; ${probe(["/scratch"])}`);
      expect(r.stdout).toBe("scratch\n");
      expect(inode(s.path)).toEqual(before);
    });
});

describe.skipIf(!root)(`the default box (nsrun run CMD) as root${root ? "" : " (skipped: not root)"}`, () => {
  test("has device nodes of its own: the host's /dev nodes stay as they were (control: the box's own do change)", () => {
    const a = root as Actor;
    const { result: r, before, after } = guarded(() => sh(a, ["run"], `${probe(TARGETS)}; stat -c '%a %u' /dev/null /dev/full`));
    expect(after).toEqual(before);
    expect(r.stdout).toContain("chmod /dev/null");
    expect(r.stdout).toContain("600 65534\n600 65534\n");
    expect(r.stdout.split("\n").filter((l) => /^(chmod|chown|touch) \/(proc|sys)\//.test(l))).toEqual([]);
  });
});

/** nsrun's OCI runtime as the actor, state in its own --root; output in files (a created container keeps nsrun's stdio). */
let ociCalls = 0;
function oci(a: Actor, args: string[]) {
  const out = join(a.area, `dev-oci-out${++ociCalls}`);
  const err = `${out}.err`;
  const r = spawnSync(command(area.bin, a, ["--root", join(a.area, "dev-oci-state"), ...args]), { cwd: a.area, stdin: "ignore", stdout: Bun.file(out), stderr: Bun.file(err), timeout: 30_000 });
  const read = (f: string) => (existsSync(f) ? readFileSync(f, "utf8") : "");
  return { code: r.exitCode ?? 128, stdout: read(out), stderr: read(err) };
}

describe.each(area.actors)("an OCI container's /dev and masks ($name)", (a) => {
  const bundle = (name: string, edit: (s: Spec) => void) =>
    makeBundle(
      join(a.area, name),
      (d) => expect(oci(a, ["spec", ...(a.name === "user" ? ["--rootless"] : []), "--bundle", d]).code).toBe(0),
      a,
      edit,
    );

  test("chmod, chown and touch of every /dev node and masked path leave the host's inodes as they were (control: a host file the container's root owns, bound read-write, changes)", () => {
    const b = bundle("dev-oci", (s) => {
      s.process.args = ["sh", "-c", probe([...NODES, ...s.linux.maskedPaths])];
    });
    const { result: r, before, after } = guarded(() => oci(a, ["run", "--bundle", b, `dev-oci-${a.name}`]));
    expect(r.code).toBe(0);
    expect(after).toEqual(before);
    expect(r.stdout).toBe("");
    // Control: the same probe on a host file the container's root owns (the rootless template maps the user as 0).
    const s = scratch(a, "oci-owned", a.uid, a.gid);
    const c = bundle("dev-oci-control", (spec) => {
      spec.process.args = ["sh", "-c", probe(["/scratch"]).replace(/chown 65534:65534/g, "chown 0:0")];
      spec.mounts.push({ destination: "/scratch", type: "bind", source: s.path, options: ["bind", "rw"] });
      spec.root.readonly = false; // the bind's target is made in the rootfs
    });
    const before2 = inode(s.path);
    const rc = oci(a, ["run", "--bundle", c, `dev-oci-control-${a.name}`]);
    expect(rc.stdout).toBe("chmod /scratch\nchown /scratch\ntouch /scratch\n");
    expect(inode(s.path).mode & 0o777n).toBe(0o600n);
    expect(inode(s.path).ctime).not.toBe(before2.ctime);
  });
});
