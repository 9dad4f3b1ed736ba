// The OCI `cgroup` mount on a cgroup v1 (or hybrid) host (issue 22): runc's layout, a tmpfs with a
// folder per host hierarchy, each the container's own cgroup (a fresh mount in its cgroup namespace,
// else a bind), links for co-mounted controllers, read-only unless "rw". Bundles from `runc spec`,
// run by nsrun and, where installed, by runc, as root and as the ordinary user nsrun-test. The
// layout's planning is checked against fake hosts (a co-mounted hierarchy this host lacks), and its
// tape for the order of its steps and the fallback a real box here never takes (the kernel refuses
// no fresh cgroup mount on this host, root or rootless).
import { afterAll, describe, expect, test } from "bun:test";
import { spawnSync } from "bun";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { editBundle, type Spec } from "../fixtures/oci/bundle";
import { planCgroupV1Mount, planOciCgroup } from "../core/oci/resources";
import type { CgroupHost, CgroupPlan } from "../core/stages/cgroup";
import { emitMounts } from "../core/stages/mounts";
import { Tape } from "../core/tape/tape";
import * as F from "../ffi/flags";
import { type Actor, setupTestArea } from "./helpers";
import { runcPath, runtimes } from "./runtimes";

const noRunc = runcPath ? null : "runc is not installed (apt-get install runc): nsrun's layout is not compared with runc's";
if (noRunc) console.warn(`skipped: ${noRunc}`);
const v1 = existsSync("/sys/fs/cgroup/memory/memory.limit_in_bytes") && existsSync("/sys/fs/cgroup/pids") && !existsSync("/sys/fs/cgroup/cgroup.controllers");
const notV1 = v1 ? null : "this host has no cgroup v1 memory and pids hierarchies at /sys/fs/cgroup (cgroup v2: test:vm covers the cgroup2 mount)";
if (notV1) console.warn(`skipped: ${notV1}`);
const area = setupTestArea();
const { nsrun, runc, deleteAll, bundle: specBundle } = runtimes(area.bin);

afterAll(() => {
  for (const a of area.actors) deleteAll(a);
  area.cleanup();
});

/** A bundle `runc spec` wrote, running `script`, root read-only: it has the cgroup mount. */
function bundle(a: Actor, script: string, edit: (s: Spec) => void = () => {}): string {
  return specBundle(a, (s) => {
    s.root.readonly = true;
    s.process.args = ["sh", "-c", script];
    expect(s.mounts.filter((m: Spec) => m.type === "cgroup")).toEqual([expect.objectContaining({ destination: "/sys/fs/cgroup", options: expect.arrayContaining(["ro"]) })]);
    edit(s);
  });
}

const withCgroupns = (s: Spec) => s.linux.namespaces.push({ type: "cgroup" });
const limits = (s: Spec) => (s.linux.resources = { ...s.linux.resources, memory: { limit: 100 * 2 ** 20 }, pids: { limit: 77 } });
const cgroupOptions = (s: Spec, options: (o: string[]) => string[]) => {
  const m = s.mounts.find((x: Spec) => x.type === "cgroup");
  m.options = options(m.options);
};

let names = 0;
/** `run` by nsrun and (when installed) runc. */
function both(a: Actor, b: string) {
  const id = `cg${++names}`;
  const n = nsrun(a, ["run", "--bundle", b, `n-${id}`]);
  const r = runcPath ? runc(a, ["run", "--bundle", b, `r-${id}`]) : null;
  return { n, r };
}

const forEachActor = (name: string, fn: (a: Actor) => void, only?: "root" | "user") => {
  for (const who of ["root", "user"] as const) {
    const a = area.actors.find((x) => x.name === who);
    const why = notV1 ?? (!a ? `no ${who} actor here (${area.skipped.join("; ") || "the tests run as an ordinary user"})` : only && only !== who ? `${only} only: an ordinary user gets no cgroup of its own on cgroup v1` : null);
    test.skipIf(why !== null)(`${name} (${who})${why ? ` (skipped: ${why})` : ""}`, () => fn(a as Actor), 120_000);
  }
};

const LIMITS = "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max";
/**
 * The mounts at and below /sys/fs/cgroup, the last one at each point (a rootless container's sysfs is
 * a bind of the host's /sys, with the host's cgroup mounts below it): point, options, type, source,
 * superblock options (not the root: the cgroup's name differs between runtimes). Only cgroup v1 and
 * tmpfs: a rootless container's /sys shows the host's cgroup2 at /sys/fs/cgroup/unified, and
 * neither runtime mounts one there.
 */
const MOUNTS = "awk '$5 ~ \"^/sys/fs/cgroup\" && / - (cgroup|tmpfs) / { p = $5; o = $6; sub(/.* - /, \"\"); last[p] = o \" \" $0 } END { for (m in last) print m, last[m] }' /proc/self/mountinfo | sort";
/** Each entry of /sys/fs/cgroup with its type (a link with its target), then the cgroup mounts. */
const LAYOUT = `cd /sys/fs/cgroup && for f in *; do if [ -L "$f" ]; then echo "$f -> $(readlink "$f")"; elif [ -d "$f" ]; then echo "$f/"; else echo "$f"; fi; done; ${MOUNTS} | grep '^/sys/fs/cgroup/'`;

describe("what the container sees in /sys/fs/cgroup", () => {
  for (const ns of [false, true])
    forEachActor(`its memory and pids limits ${ns ? "in its cgroup namespace (fresh cgroup mounts)" : "without a cgroup namespace (binds of its cgroups)"}; control: without limits, unlimited`, (a) => {
      const b = bundle(a, LIMITS, (s) => {
        limits(s);
        if (ns) withCgroupns(s);
      });
      const { n, r } = both(a, b);
      expect([n.code, n.stderr, n.stdout]).toEqual([0, "", `${100 * 2 ** 20}\n77\n`]);
      if (r) expect([r.code, r.stdout]).toEqual([0, n.stdout]);
      // Control: the same read in a container without limits shows none (the files are the container's, not a fixed tmpfs).
      editBundle(b, (s) => {
        delete s.linux.resources.memory;
        delete s.linux.resources.pids;
      });
      const control = nsrun(a, ["run", "--bundle", b, `n-nolimit${++names}`]);
      expect([control.code, control.stderr]).toEqual([0, ""]);
      const [memory, pids] = control.stdout.trim().split("\n");
      expect(BigInt(memory)).toBeGreaterThan(BigInt(2 ** 40));
      expect(pids).toBe("max");
    }, "root");

  forEachActor("a hostile rootfs whose cgroup mount target is a symlink to a host folder: the layout lands inside the rootfs, the host folder stays empty (control: the container sees its hierarchies there)", (a) => {
    // A copy of the rootfs where the cgroup mount's target (moved out from under /sys, which sysfs
    // would cover) is a link, absolute, to a folder of the host's. The target is resolved once inside
    // the rootfs (RESOLVE_IN_ROOT): the link leads to the rootfs's own copy of that path.
    const host = join(a.area, `cgroup-escape-${++names}`);
    const rootfs = join(a.area, `rootfs-cgroup-link-${names}`);
    mkdirSync(host);
    spawnSync(["cp", "-a", join(a.area, "rootfs"), rootfs]);
    symlinkSync(host, join(rootfs, "cgroup-link"));
    mkdirSync(join(rootfs, host), { recursive: true });
    spawnSync(["chown", "-R", `${a.uid}:${a.gid}`, host, rootfs]);
    const b = bundle(a, `ls ${host}`, (s) => {
      s.root.path = rootfs;
      const m = s.mounts.find((x: Spec) => x.type === "cgroup");
      m.destination = "/cgroup-link";
    });
    const n = nsrun(a, ["run", "--bundle", b, `n-link${names}`]);
    expect([n.code, n.stderr]).toEqual([0, ""]);
    // Control: the hierarchies are there, at the path the link names inside the rootfs.
    expect(n.stdout.split("\n")).toContain("memory");
    expect(readdirSync(host)).toEqual([]);
    expect(readFileSync("/proc/self/mountinfo", "utf8").includes(` ${host} `)).toBe(false);
    rmSync(rootfs, { recursive: true, force: true });
  }, "root");

  forEachActor("the container's own cgroup: the bind's root in the memory hierarchy is the cgroup /proc/self/cgroup names, nsrun/ID", (a) => {
    const b = bundle(a, "sed -n 's/^[0-9]*:memory://p' /proc/self/cgroup; awk '$5 == \"/sys/fs/cgroup/memory\" { print $4 }' /proc/self/mountinfo", limits);
    const id = `own${++names}`;
    const n = nsrun(a, ["run", "--bundle", b, id]);
    expect([n.code, n.stderr]).toEqual([0, ""]);
    const [own, root] = n.stdout.trim().split("\n");
    // Without a cgroup namespace the bind's root is the container's cgroup, as /proc/self/cgroup names it.
    expect(root).toBe(own);
    expect(own.endsWith(`/nsrun/${id}`)).toBe(true);
  }, "root");

  for (const ns of [false, true])
    forEachActor(`read-only: a write to the tmpfs or a hierarchy fails with EROFS ${ns ? "(cgroup namespace)" : ""}; control: with "rw" the tmpfs takes a folder and the mounts are rw`, (a) => {
      const script = `mkdir /sys/fs/cgroup/probe && echo made; touch /sys/fs/cgroup/pids/probe 2>&1; ${MOUNTS}`;
      const b = bundle(a, script, (s) => ns && withCgroupns(s));
      const n = nsrun(a, ["run", "--bundle", b, `n-ro${++names}`]);
      expect(n.code).toBe(0);
      expect(n.stderr).toContain("mkdir: can't create directory '/sys/fs/cgroup/probe': Read-only file system");
      expect(n.stdout).toContain("touch: /sys/fs/cgroup/pids/probe: Read-only file system");
      expect(n.stdout).not.toContain("made");
      expect(n.stdout).toMatch(/^\/sys\/fs\/cgroup ro,\S+ tmpfs tmpfs /m);
      expect(n.stdout).toMatch(/^\/sys\/fs\/cgroup\/pids ro,\S+ cgroup /m);
      expect(n.stdout).not.toMatch(/^\S+ rw,/m);
      editBundle(b, (s) => cgroupOptions(s, (o) => o.filter((x) => x !== "ro").concat("rw")));
      const control = nsrun(a, ["run", "--bundle", b, `n-rw${++names}`]);
      expect([control.code, control.stderr]).toEqual([0, ""]);
      expect(control.stdout).toContain("made\n");
      // A cgroup folder takes no plain file (EPERM or EACCES), but not because the mount is read-only.
      expect(control.stdout).not.toContain("Read-only file system");
      expect(control.stdout).toMatch(/^\/sys\/fs\/cgroup rw,\S+ tmpfs tmpfs /m);
      expect(control.stdout).toMatch(/^\/sys\/fs\/cgroup\/pids rw,\S+ cgroup /m);
      expect(control.stdout).not.toMatch(/^\S+ ro,/m);
    });
});

/** The host's cgroup hierarchies: each v1 one's mount point with its options, and a hybrid host's cgroup2 (options ""). */
function hostHierarchies(): Array<{ mount: string; options: string }> {
  return readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .filter((l) => / - cgroup2? /.test(l))
    .map((l) => ({ mount: l.split(" ")[4], options: l.split(" - ")[1].split(" ")[0] === "cgroup2" ? "" : l.split(" - ")[1].split(" ")[2] }));
}
/** /proc/self/cgroup's lines as [hierarchy, path], in order. */
const membership = (text: string) => text.trim().split("\n").map((l) => [l.split(":")[1], l.split(":").slice(2).join(":")]);

describe("a root container's own cgroup in every hierarchy, cpuset and name=systemd too (no cgroup namespace)", () => {
  // Without a PID namespace cgroup.procs shows the host's PIDs: the container's own cgroup lists its
  // few processes, the hierarchy's root (what the container saw of cpuset and name=systemd before)
  // the whole host's.
  const SCRIPT = [
    "cat /proc/self/cgroup",
    "echo --",
    "for h in cpuset systemd; do echo \"$h $(wc -l < /sys/fs/cgroup/$h/cgroup.procs) $(grep -cx $$ /sys/fs/cgroup/$h/cgroup.procs) $(find /sys/fs/cgroup/$h/ -mindepth 1 -type d | wc -l)\"; done",
    "echo --",
    "cat /sys/fs/cgroup/cpuset/cpuset.cpus /sys/fs/cgroup/cpuset/cpuset.mems",
  ].join("; ");
  const noPidns = (s: Spec) => (s.linux.namespaces = s.linux.namespaces.filter((n: Spec) => n.type !== "pid"));

  forEachActor(`/proc/self/cgroup names the container's cgroup in every hierarchy, as runc's does; cpuset and systemd hold only its processes; cpuset.cpus/mems are the parent's${noRunc ? ` (runc part skipped: ${noRunc})` : ""}; control: the host's hierarchy roots hold many`, (a) => {
    const b = bundle(a, SCRIPT, noPidns);
    const { n, r } = both(a, b);
    const id = `cg${names}`;
    expect([n.code, n.stderr]).toEqual([0, ""]);
    const [cgroups, views, cpuset] = n.stdout.split("--\n");
    const lines = membership(cgroups);
    // Every hierarchy of the host (v1, and a hybrid host's cgroup2, "0::"), each with the container's own path.
    expect(lines.map(([h]) => h).sort()).toEqual(hostHierarchies().map((h) => h.options.split(",").filter((o) => o !== "rw" && o !== "xattr").join(",")).sort());
    for (const [h, path] of lines) expect([h, path.endsWith(`/nsrun/n-${id}`)]).toEqual([h, true]);
    for (const line of views.trim().split("\n")) {
      const [h, count, self, children] = line.split(" ");
      // Its own processes only (the shell, a subshell, wc), the shell among them; no cgroup below it.
      expect([h, Number(count) >= 1 && Number(count) <= 5, self, children]).toEqual([h, true, "1", "0"]);
    }
    const host = (f: string) => readFileSync(`/sys/fs/cgroup/cpuset/${f}`, "utf8").trim();
    expect(cpuset.trim().split("\n")).toEqual([host("cpuset.cpus"), host("cpuset.mems")]);
    // Control: the hierarchies' roots, as nsrun saw them before, hold every process of the host and cgroups below.
    for (const h of ["cpuset", "systemd"]) {
      expect(readFileSync(`/sys/fs/cgroup/${h}/cgroup.procs`, "utf8").trim().split("\n").length).toBeGreaterThan(5);
      expect(spawnSync(["find", `/sys/fs/cgroup/${h}/`, "-mindepth", "1", "-type", "d"], { stdout: "pipe" }).stdout.toString().trim()).not.toBe("");
    }
    if (r) {
      expect([r.code, r.stderr]).toEqual([0, ""]);
      // runc's default path is the ID below its own cgroup; nsrun's nsrun/ID: the same hierarchies, the same parents.
      const theirs = membership(r.stdout.split("--\n")[0]).map(([h, p]) => [h, p.replace(new RegExp(`/r-${id}$`), "/ID")]);
      expect(lines.map(([h, p]) => [h, p.replace(new RegExp(`/nsrun/n-${id}$`), "/ID")])).toEqual(theirs);
      const shape = (v: string) => v.replace(/^(\S+) \d+ /gm, "$1 N "); // how many processes: the shell's forks may differ
      const [, rViews, rCpuset] = r.stdout.split("--\n");
      expect([shape(rViews), rCpuset]).toEqual([shape(views), cpuset]);
    }
  }, "root");

  forEachActor("create makes the container's cgroup in every hierarchy, exec joins them all, delete removes every one it made (control: they exist while it does)", (a) => {
    const top = `nsrun-joinall-test-${process.pid}-${++names}`;
    const id = `life${names}`;
    const b = bundle(a, "sleep 60", (s) => (s.linux.cgroupsPath = `/${top}/c`));
    const made = hostHierarchies().flatMap((h) => [`${h.mount}/${top}`, `${h.mount}/${top}/c`]);
    try {
      expect(nsrun(a, ["create", "--bundle", b, id])).toMatchObject({ code: 0, stderr: "" });
      const pid = JSON.parse(nsrun(a, ["state", id]).stdout).pid as number;
      for (const dir of made) expect([dir, existsSync(dir)]).toEqual([dir, true]);
      for (const h of hostHierarchies()) expect([h.mount, readFileSync(`${h.mount}/${top}/c/cgroup.procs`, "utf8").split("\n")]).toEqual([h.mount, expect.arrayContaining([String(pid)])]);
      expect(nsrun(a, ["start", id]).code).toBe(0);
      const exec = nsrun(a, ["exec", id, "cat", "/proc/self/cgroup", "/sys/fs/cgroup/cpuset/cpuset.cpus"]);
      expect([exec.code, exec.stderr]).toEqual([0, ""]);
      const lines = exec.stdout.trim().split("\n");
      const cpus = lines.pop();
      expect(membership(lines.join("\n")).map(([h, p]) => [h, p])).toEqual(membership(readFileSync(`/proc/${pid}/cgroup`, "utf8")));
      for (const [h, p] of membership(lines.join("\n"))) expect([h, p]).toEqual([h, `/${top}/c`]);
      expect(cpus).toBe(readFileSync("/sys/fs/cgroup/cpuset/cpuset.cpus", "utf8").trim());
      expect(nsrun(a, ["delete", "--force", id])).toMatchObject({ code: 0, stderr: "" });
      for (const dir of made) expect([dir, existsSync(dir)]).toEqual([dir, false]);
    } finally {
      for (const dir of made.reverse()) if (existsSync(dir)) spawnSync(["rmdir", dir]);
    }
  }, "root");

  forEachActor("a cgroup that cannot be made is an error naming linux.cgroupsPath, and no hierarchy keeps a folder of it (control: the same bundle with a path that can be made runs)", (a) => {
    const top = `nsrun-joinall-test-${process.pid}-${++names}`;
    // cgroup.procs is a file of the folder nsrun makes first: the next mkdir fails (EEXIST).
    const b = bundle(a, "true", (s) => (s.linux.cgroupsPath = `/${top}/cgroup.procs/c`));
    const made = hostHierarchies().map((h) => `${h.mount}/${top}`);
    try {
      const n = nsrun(a, ["run", "--bundle", b, `fail${names}`]);
      expect(n.code).not.toBe(0);
      expect(n.stderr).toContain("linux.cgroupsPath: the container's cgroup: mkdir");
      expect(n.stderr).toContain("EEXIST");
      for (const dir of made) expect([dir, existsSync(dir)]).toEqual([dir, false]);
      editBundle(b, (s) => (s.linux.cgroupsPath = `/${top}/c`));
      expect(nsrun(a, ["run", "--bundle", b, `fail${names}`])).toMatchObject({ code: 0, stderr: "" });
      for (const dir of made) expect([dir, existsSync(dir)]).toEqual([dir, false]);
    } finally {
      for (const dir of made) if (existsSync(`${dir}/c`)) spawnSync(["rmdir", `${dir}/c`]);
      for (const dir of made) if (existsSync(dir)) spawnSync(["rmdir", dir]);
    }
  }, "root");

  test("planning against a fake host: root joins every hierarchy (cpuset, name=systemd, a hybrid host's cgroup2); cpuset folders get their parent's cpus and mems first, an existing empty one too, the config's after; an ordinary user none", () => {
    const fake = mkdtempSync(join(tmpdir(), "nsrun-cpuset-"));
    try {
      for (const h of ["cpuset", "memory", "systemd", "unified"]) mkdirSync(join(fake, h));
      writeFileSync(join(fake, "cpuset/cpuset.cpus"), "0-7\n");
      writeFileSync(join(fake, "cpuset/cpuset.mems"), "0\n");
      mkdirSync(join(fake, "cpuset/pods")); // made before, by someone else, and left without cpus
      writeFileSync(join(fake, "cpuset/pods/cpuset.cpus"), "\n");
      writeFileSync(join(fake, "cpuset/pods/cpuset.mems"), "0\n");
      const host: CgroupHost = {
        v2: { mount: `${fake}/unified`, own: "/", controllers: [], delegated: [] },
        v1: { cpuset: { mount: `${fake}/cpuset`, own: "/" }, memory: { mount: `${fake}/memory`, own: "/" }, "name=systemd": { mount: `${fake}/systemd`, own: "/" } },
      };
      const root = { uid: 0, gid: 0, hostRoot: true };
      const plan = planOciCgroup({ cpu: { cpus: "2-3" } }, "/pods/c1", "c1", root, host);
      expect(plan?.procs).toEqual([`${fake}/cpuset/pods/c1/cgroup.procs`, `${fake}/memory/pods/c1/cgroup.procs`, `${fake}/systemd/pods/c1/cgroup.procs`, `${fake}/unified/pods/c1/cgroup.procs`]);
      expect(plan?.dirs).toEqual([`${fake}/cpuset/pods/c1`, `${fake}/memory/pods`, `${fake}/memory/pods/c1`, `${fake}/systemd/pods`, `${fake}/systemd/pods/c1`, `${fake}/unified/pods`, `${fake}/unified/pods/c1`]);
      expect(plan?.writes).toEqual([
        [`${fake}/cpuset/pods/cpuset.cpus`, "0-7"],
        [`${fake}/cpuset/pods/c1/cpuset.cpus`, "0-7"],
        [`${fake}/cpuset/pods/c1/cpuset.mems`, "0"],
        [`${fake}/cpuset/pods/c1/cpuset.cpus`, "2-3"],
      ]);
      expect(planOciCgroup(undefined, "/pods/c1", "c1", { uid: 1000, gid: 1000, hostRoot: false }, host)).toBeNull();
    } finally {
      rmSync(fake, { recursive: true, force: true });
    }
  });
});

describe("the layout, side by side with runc", () => {
  for (const ns of [false, true])
    forEachActor(`entries, links and cgroup mounts as runc makes them ${ns ? "in a cgroup namespace" : "without a cgroup namespace"}${noRunc ? ` (skipped: ${noRunc})` : ""}`, (a) => {
      const b = bundle(a, LAYOUT, (s) => ns && withCgroupns(s));
      const { n, r } = both(a, b);
      expect([n.code, n.stderr]).toEqual([0, ""]);
      // Every v1 hierarchy of the host is there, as a folder named after its mount point.
      const host = readFileSync("/proc/self/mountinfo", "utf8").split("\n").filter((l) => l.includes(" - cgroup ")).map((l) => `${l.split(" ")[4].split("/").pop()}/`);
      for (const h of host) expect(n.stdout).toContain(`${h}\n`);
      expect(n.stdout).toContain("/sys/fs/cgroup/memory ro,");
      if (r) {
        expect(r.code).toBe(0);
        // runc names a fresh name=systemd mount's source "systemd"; nsrun names every one "cgroup" (the source shows only in mountinfo).
        expect(n.stdout).toBe(r.stdout.replace(/ cgroup systemd /g, " cgroup cgroup "));
      }
    });
});

describe("planning the layout against fake hosts", () => {
  const comounted: CgroupHost = {
    v2: { mount: "/sys/fs/cgroup/unified", own: "/", controllers: [], delegated: [] },
    v1: {
      cpu: { mount: "/sys/fs/cgroup/cpu,cpuacct", own: "/user.slice" },
      cpuacct: { mount: "/sys/fs/cgroup/cpu,cpuacct", own: "/user.slice" },
      memory: { mount: "/sys/fs/cgroup/memory", own: "/user.slice" },
      net_cls: { mount: "/sys/fs/cgroup/net_cls,net_prio", own: "/" },
      net_prio: { mount: "/sys/fs/cgroup/net_cls,net_prio", own: "/" },
      "name=systemd": { mount: "/sys/fs/cgroup/systemd", own: "/user.slice/session-1.scope" },
    },
  };
  const box: CgroupPlan = { version: 1, dirs: [], writes: [], procs: [], boxDirs: ["/sys/fs/cgroup/cpu,cpuacct/user.slice/nsrun/c1", "/sys/fs/cgroup/memory/user.slice/nsrun/c1"], undo: [], oomFile: null, memoryText: null };

  test("a cgroup namespace: a fresh mount per hierarchy with its controllers (or name=) as options; links for co-mounted controllers", () => {
    expect(planCgroupV1Mount(comounted, box, true, "mounts[5]")).toEqual({
      hierarchies: [
        { name: "cpu,cpuacct", options: ["cpu", "cpuacct"], source: "/sys/fs/cgroup/cpu,cpuacct/user.slice/nsrun/c1" },
        { name: "memory", options: ["memory"], source: "/sys/fs/cgroup/memory/user.slice/nsrun/c1" },
        { name: "net_cls,net_prio", options: ["net_cls", "net_prio"], source: "/sys/fs/cgroup/net_cls,net_prio" },
        { name: "systemd", options: ["name=systemd"], source: "/sys/fs/cgroup/systemd/user.slice/session-1.scope" },
      ],
      links: [
        { name: "cpu", linkTo: "cpu,cpuacct" },
        { name: "cpuacct", linkTo: "cpu,cpuacct" },
        { name: "net_cls", linkTo: "net_cls,net_prio" },
        { name: "net_prio", linkTo: "net_cls,net_prio" },
      ],
    });
  });

  test("no cgroup namespace: binds of the container's cgroups, else of nsrun's own (a rootless container has none); no v1 hierarchy: null", () => {
    const plan = planCgroupV1Mount(comounted, null, false, "mounts[5]");
    expect(plan?.hierarchies.map((h) => [h.name, h.options, h.source])).toEqual([
      ["cpu,cpuacct", null, "/sys/fs/cgroup/cpu,cpuacct/user.slice"],
      ["memory", null, "/sys/fs/cgroup/memory/user.slice"],
      ["net_cls,net_prio", null, "/sys/fs/cgroup/net_cls,net_prio"],
      ["systemd", null, "/sys/fs/cgroup/systemd/user.slice/session-1.scope"],
    ]);
    expect(planCgroupV1Mount({ v2: comounted.v2, v1: {} }, null, true, "mounts[5]")).toBeNull();
  });

  test("a hierarchy whose mount point gives no folder name is refused, naming the key (control: a proper one plans)", () => {
    expect(() => planCgroupV1Mount({ v2: null, v1: { memory: { mount: "/", own: "/" } } }, null, true, "mounts[3]")).toThrow(/mounted on "\/" has no folder name/);
    try {
      planCgroupV1Mount({ v2: null, v1: { memory: { mount: "/", own: "/" } } }, null, true, "mounts[3]");
    } catch (e) {
      expect((e as { key: string }).key).toBe("mounts[3]");
    }
    expect(planCgroupV1Mount({ v2: null, v1: { memory: { mount: "/cg/memory", own: "/" } } }, null, true, "mounts[3]")?.hierarchies).toHaveLength(1);
  });
});

describe("the layout's tape", () => {
  test("folders and links made through the tmpfs's fd before it is attached; a fresh mount refused (EPERM, EBUSY) at any step becomes a bind of the container's cgroup; read-only last (control: with rw, no read-only step)", () => {
    const listing = (attrs: number) => {
      const t = new Tape();
      const hierarchies = [{ name: "cpu,cpuacct", options: ["cpu", "cpuacct"], source: "/sys/fs/cgroup/cpu,cpuacct/nsrun/c1" }];
      emitMounts(t, t.reg("root"), [{ op: "cgroup1", target: "/sys/fs/cgroup", attrs, hierarchies, links: [{ name: "cpu", linkTo: "cpu,cpuacct" }], origin: "mounts[5]" }]);
      return t.listing().split("\n").map((l) => l.replace(/^\s*\d+\s+/, ""));
    };
    const ro = listing(F.MOUNT_ATTR_RDONLY | F.MOUNT_ATTR_NOSUID);
    const at = (re: RegExp) => ro.findIndex((l) => re.test(l));
    const attach = at(/^move_mount\(cgroupfs, "", target/);
    expect(at(/^mkdirat\(cgroupfs, "cpu,cpuacct", 0755\)$/)).toBeLessThan(attach);
    expect(at(/^symlinkat\("cpu,cpuacct", cgroupfs, "cpu"\)$/)).toBeLessThan(attach);
    expect(ro[at(/^fsmount\(ctx, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID\) -> cgroupfs$/)]).toBeDefined();
    expect(ro.filter((l) => /^(fsopen\("cgroup"|fsconfig\(ctx, FSCONFIG_CMD_CREATE, NULL, NULL, 0\) -> created|fsmount\(ctx, .* -> mnt)/.test(l)).every((l) => l.endsWith(`[ok ${[1, 16].join(",")}]`))).toBe(true);
    expect(ro.filter((l) => /^(fsopen\("cgroup"|fsconfig\(ctx, FSCONFIG_CMD_CREATE, NULL, NULL, 0\) -> created|fsmount\(ctx, .* -> mnt)/.test(l))).toHaveLength(3);
    expect(ro).toContain('openat2(AT_FDCWD, "/sys/fs/cgroup/cpu,cpuacct/nsrun/c1", {O_DIRECTORY|O_CLOEXEC|O_PATH, RESOLVE_NO_MAGICLINKS|RESOLVE_NO_SYMLINKS}) -> src');
    expect(ro).toContain('openat2(cgroupfs, "cpu,cpuacct", {O_DIRECTORY|O_CLOEXEC|O_PATH, RESOLVE_NO_MAGICLINKS|RESOLVE_NO_SYMLINKS|RESOLVE_BENEATH}) -> dir  [again on EAGAIN]');
    expect(ro.filter((l) => l.length).at(-2)).toBe('mount_setattr(cgroupfs, "", AT_EMPTY_PATH, {attr_set=MOUNT_ATTR_RDONLY})');
    expect(listing(F.MOUNT_ATTR_NOSUID).some((l) => l.startsWith("mount_setattr(cgroupfs"))).toBe(false);
  });
});
