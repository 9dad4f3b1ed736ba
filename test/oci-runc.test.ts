// nsrun as a drop-in for runc (issue 22): bundles made by `runc spec` (or by podman and containerd),
// run by nsrun and, where runc is installed, by runc too, with the same result: capabilities as runc
// applies them (exec --user, ambient for a non-root user), a read-only root with new mount targets,
// bind data options, linux.devices made with mknod, cpuset, pause/resume/update, joined mount and
// UTS namespaces, and rootless podman --init. As root and as the ordinary user nsrun-test.
import { afterAll, describe, expect, test } from "bun:test";
import { spawn, spawnSync } from "bun";
import { existsSync, mkdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { hintFor } from "../ffi/hints";
import { editBundle, type Spec } from "../fixtures/oci/bundle";
import { type Actor, command, setupTestArea, waitFor } from "./helpers";
import { runcPath, runtimes } from "./runtimes";

const have = (p: string) => spawnSync(["sh", "-c", `command -v ${p}`]).exitCode === 0;
const noRunc = runcPath ? null : "runc is not installed (apt-get install runc): nsrun's results are not compared with runc's";
if (noRunc) console.warn(`skipped: ${noRunc}`);
const area = setupTestArea();
const { run, nsrun, runc, deleteAll, bundle } = runtimes(area.bin);
const cgroupV1 = existsSync("/sys/fs/cgroup/freezer");

/** Actors whose own podman ran: its storage and pause process are removed at the end. */
const podmanUsers = new Set<Actor>();

afterAll(() => {
  for (const a of podmanUsers) {
    const env = podmanEnv(a);
    if (a.name === "user") spawnSync(command("podman", a, ["unshare", "rm", "-rf", join(env.HOME, ".local")]), { env });
    // Rootless podman's pause process (catatonit) holds its user namespace: ours has its PID file in our runtime folder.
    const pause = join(env.XDG_RUNTIME_DIR, "libpod/tmp/pause.pid");
    if (existsSync(pause)) spawnSync(["kill", "-9", readFileSync(pause, "utf8").trim()]);
  }
  for (const a of area.actors) deleteAll(a);
  area.cleanup();
});

/** `run` of the bundle by nsrun and (when installed) runc: [nsrun's result, runc's or null]. */
function both(a: Actor, b: string, name: string) {
  const n = nsrun(a, ["run", "--bundle", b, `n-${name}`]);
  const r = runcPath ? runc(a, ["run", "--bundle", b, `r-${name}`]) : null;
  return { n, r };
}

const forEachActor = (name: string, fn: (a: Actor) => void | Promise<void>, only?: "root" | "user", timeout = 120_000) => {
  for (const who of ["root", "user"] as const) {
    const a = area.actors.find((x) => x.name === who);
    const why = !a ? `no ${who} actor here (${area.skipped.join("; ") || "the tests run as an ordinary user"})` : only && only !== who ? `${only} only` : null;
    test.skipIf(why !== null)(`${name} (${who})${why ? ` (skipped: ${why})` : ""}`, async () => fn(a as Actor), timeout);
  }
};

/** The actor's own podman: its HOME (storage) and XDG_RUNTIME_DIR inside its test area. */
function podmanEnv(a: Actor): Record<string, string> {
  podmanUsers.add(a);
  const home = join(a.area, "podman-home");
  const runtimeDir = join(a.area, "podman-run");
  mkdirSync(home, { recursive: true });
  mkdirSync(runtimeDir, { recursive: true, mode: 0o700 });
  spawnSync(["chown", `${a.uid}:${a.gid}`, home, runtimeDir]);
  return { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", HOME: home, XDG_RUNTIME_DIR: runtimeDir, USER: spawnSync(["id", "-un", String(a.uid)], { stdout: "pipe" }).stdout.toString().trim() };
}

const CAPS = "id -u; grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb)' /proc/self/status";

describe("capabilities as runc applies them", () => {
  forEachActor("`runc spec`'s config.json runs (its ambient set is not inheritable: left out, as runc does)", (a) => {
    const b = bundle(a, (s) => (s.process.args = ["sh", "-c", CAPS]));
    const { n, r } = both(a, b, "spec");
    expect([n.code, n.stderr]).toEqual([0, ""]);
    expect(n.stdout).toContain("CapAmb:\t0000000000000000");
    if (r) expect([r.stderr, r.stdout]).toEqual(["", n.stdout]);
  });

  forEachActor("a non-root process with the container's sets (podman/ctr exec --user): execve leaves it none; control: uid 0 keeps them", (a) => {
    const b = bundle(a, (s) => {
      s.process.args = ["sh", "-c", CAPS];
      s.process.user = { uid: 1000, gid: 1000 };
      s.process.capabilities.ambient = [];
    });
    const { n, r } = both(a, b, "uid1000");
    expect([n.code, n.stderr]).toEqual([0, ""]);
    expect(n.stdout).toMatch(/^1000\nCapInh:\t0+\nCapPrm:\t0+\nCapEff:\t0+\nCapBnd:\t0*[1-9a-f][0-9a-f]*\nCapAmb:\t0+\n$/);
    if (r) expect(n.stdout).toBe(r.stdout);
    editBundle(b, (s) => (s.process.user = { uid: 0, gid: 0 }));
    const control = nsrun(a, ["run", "--bundle", b, "n-uid0"]);
    expect(control.stdout).toMatch(/^0\nCapInh:\t0+\nCapPrm:\t0*[1-9a-f]/);
  }, "root");

  forEachActor("ambient NET_BIND_SERVICE for uid 1000 binds port 80; control: without it, bind is refused", (a) => {
    const listen = "grep CapAmb /proc/self/status; timeout 1 nc -l -p 80 2>&1; echo rc=$?";
    const b = bundle(a, (s) => {
      s.process.args = ["sh", "-c", listen];
      s.process.user = { uid: 1000, gid: 1000 };
      const c = ["CAP_NET_BIND_SERVICE"];
      s.process.capabilities = { bounding: c, effective: c, permitted: c, inheritable: c, ambient: c };
    });
    const { n, r } = both(a, b, "ambient");
    expect(n.stdout).toMatch(/^CapAmb:\t0000000000000400\n(Terminated\n)?rc=143\n$/);
    if (r) expect(n.stdout).toBe(r.stdout);
    editBundle(b, (s) => (s.process.capabilities.ambient = []));
    const denied = nsrun(a, ["run", "--bundle", b, "n-noambient"]);
    expect(denied.stdout).toMatch(/^CapAmb:\t0+\n.*Permission denied\nrc=1\n$/s);
  }, "root");
});

describe("mounts as runc makes them", () => {
  forEachActor("root.readonly with a bind target the rootfs lacks: the target is made first, the root is read-only (control: /tmp writable)", (a) => {
    const src = join(a.area, `ro-src-${a.name}`);
    mkdirSync(src);
    writeFileSync(join(src, "f"), "from-host\n");
    spawnSync(["chown", "-R", `${a.uid}:${a.gid}`, src]);
    const target = `/new-${a.name}/sub`;
    const b = bundle(a, (s) => {
      s.root.readonly = true;
      s.mounts.push({ destination: target, type: "bind", source: src, options: ["rbind", "ro"] }, { destination: "/tmp", type: "tmpfs", source: "tmpfs", options: ["mode=1777"] });
      s.process.args = ["sh", "-c", `cat ${target}/f; touch /x 2>&1 || echo root-ro; touch /tmp/x && echo tmp-rw`];
    });
    expect(existsSync(join(a.area, "rootfs", target))).toBe(false);
    const n = nsrun(a, ["run", "--bundle", b, "n-ro"]);
    expect([n.code, n.stdout]).toEqual([0, "from-host\ntouch: /x: Read-only file system\nroot-ro\ntmp-rw\n"]);
    expect(existsSync(join(a.area, "rootfs", target))).toBe(true);
    if (runcPath) expect(runc(a, ["run", "--bundle", b, "r-ro"]).stdout).toBe(n.stdout);
  });

  forEachActor("a bind's data options (mode=755) are ignored as runc ignores them; a misspelt option is still refused", (a) => {
    const b = bundle(a, (s) => {
      s.mounts.push({ destination: "/mnt", type: "bind", source: join(a.area, "rootfs/etc"), options: ["rbind", "mode=755", "size=1m", "ro"] });
      s.process.args = ["sh", "-c", "test -f /mnt/passwd && echo seen; touch /mnt/x 2>&1 | grep -o Read-only"];
    });
    const { n, r } = both(a, b, "data");
    expect([n.code, n.stdout]).toEqual([0, "seen\nRead-only\n"]);
    if (r) expect(r.stdout).toBe(n.stdout);
    let last = 0;
    editBundle(b, (s) => {
      last = s.mounts.length - 1;
      s.mounts[last].options = ["rbind", "nosiud"];
    });
    const bad = nsrun(a, ["run", "--bundle", b, "n-typo"]);
    expect([bad.code, bad.stderr]).toEqual([125, expect.stringContaining(`mounts[${last}].options[1]: "nosiud" is not an option for a bind mount`)]);
    expect(existsSync(join(a.area, "nsrun-state", "n-typo"))).toBe(false);
  });
});

describe("linux.devices", () => {
  const NODE = "/dev/nsrun-null";
  forEachActor("root makes a node the host lacks with mknod, with its mode, owner and group, as runc; the container itself still cannot mknod (control: the node works)", (a) => {
    expect(existsSync(NODE)).toBe(false);
    const b = bundle(a, (s) => {
      s.linux.devices = [
        { path: NODE, type: "c", major: 1, minor: 3, fileMode: 0o640, uid: 5, gid: 7 },
        { path: "/dev/nsrun-zero", type: "c", major: 1, minor: 5, fileMode: 0o666, uid: 0, gid: 0 },
      ];
      s.process.capabilities.bounding.push("CAP_MKNOD");
      s.process.args = ["sh", "-c", `ls -ln ${NODE} | awk '{print $1, $3, $4, $5, $6}'; head -c 3 /dev/nsrun-zero | od -An -tx1; mknod /dev/mine c 1 3 2>&1 | grep -o 'Operation not permitted'`];
    });
    const { n, r } = both(a, b, "dev");
    expect(n.code).toBe(0);
    expect(n.stdout).toBe("crw-r----- 5 7 1, 3\n 00 00 00\nOperation not permitted\n");
    if (r) expect(r.stdout).toBe(n.stdout);
  }, "root");

  forEachActor("in a user namespace a node the host lacks is refused, naming the key, nothing left (control: one the host has is bound)", (a) => {
    const b = bundle(a, (s) => {
      s.linux.devices = [{ path: NODE, type: "c", major: 1, minor: 3 }];
      s.process.args = ["true"];
    });
    const bad = nsrun(a, ["run", "--bundle", b, "n-nodev"]);
    expect([bad.code, bad.stderr]).toEqual([125, expect.stringContaining(`linux.devices[0]: in a user namespace nsrun binds device nodes from the host`)]);
    expect(existsSync(join(a.area, "nsrun-state", "n-nodev"))).toBe(false);
    editBundle(b, (s) => {
      s.linux.devices = [{ path: "/dev/zero", type: "c", major: 1, minor: 5 }];
      s.process.args = ["sh", "-c", "head -c 2 /dev/zero | od -An -tx1"];
    });
    const host = nsrun(a, ["run", "--bundle", b, "n-hostdev"]);
    expect([host.stderr, host.stdout]).toEqual(["", " 00 00\n"]);
  }, "user");
});

describe("cgroups: cpuset, pause, resume, update", () => {
  forEachActor("linux.resources.cpu.cpus/mems: the process may run only there (as runc)", (a) => {
    const b = bundle(a, (s) => {
      s.linux.resources = { ...s.linux.resources, cpu: { cpus: "0", mems: "0" } };
      s.process.args = ["sh", "-c", "grep -E '^(Cpus|Mems)_allowed_list' /proc/self/status"];
    });
    const { n, r } = both(a, b, "cpuset");
    expect([n.code, n.stdout]).toEqual([0, "Cpus_allowed_list:\t0\nMems_allowed_list:\t0\n"]);
    if (r) expect(r.stdout).toBe(n.stdout);
  }, "root");

  forEachActor("pause freezes (state paused, exec refused), resume thaws, update writes new limits; bad input exits 125", async (a) => {
    const b = bundle(a, (s) => (s.process.args = ["sleep", "1000"]));
    expect(nsrun(a, ["run", "-d", "--bundle", b, "n-pause"]).code).toBe(0);
    const pid = JSON.parse(nsrun(a, ["state", "n-pause"]).stdout).pid;
    const cg = readFileSync(`/proc/${pid}/cgroup`, "utf8");
    const dir = (c: string) => (cgroupV1 ? `/sys/fs/cgroup/${c}${cg.match(new RegExp(`:${c}:(\\S+)`))?.[1]}` : `/sys/fs/cgroup${cg.match(/^0::(\S+)/m)?.[1]}`);
    const frozen = () => (cgroupV1 ? readFileSync(`${dir("freezer")}/freezer.state`, "utf8").trim() === "FROZEN" : readFileSync(`${dir("")}/cgroup.events`, "utf8").includes("frozen 1"));
    expect(frozen()).toBe(false);
    expect(nsrun(a, ["pause", "n-pause"]).code).toBe(0);
    expect(frozen()).toBe(true);
    expect(JSON.parse(nsrun(a, ["state", "n-pause"]).stdout).status).toBe("paused");
    expect(nsrun(a, ["exec", "n-pause", "true"]).stderr).toContain('cannot exec in container "n-pause": it is paused');
    expect(nsrun(a, ["pause", "n-pause"]).stderr).toContain("it is paused");
    expect(nsrun(a, ["resume", "n-pause"]).code).toBe(0);
    expect(frozen()).toBe(false);
    expect(JSON.parse(nsrun(a, ["state", "n-pause"]).stdout).status).toBe("running");
    expect(nsrun(a, ["update", "--memory", "64m", "n-pause"]).code).toBe(0);
    expect(nsrun(a, ["update", "--resources", "-", "n-pause"], { stdin: '{"pids": {"limit": 77}}' }).code).toBe(0);
    if (cgroupV1) {
      expect(readFileSync(`${dir("memory")}/memory.limit_in_bytes`, "utf8").trim()).toBe(String(64 * 2 ** 20));
      expect(readFileSync(`${dir("pids")}/pids.max`, "utf8").trim()).toBe("77");
    }
    const bad = nsrun(a, ["update", "--memory", "12x", "n-pause"]);
    expect([bad.code, bad.stderr]).toEqual([125, 'nsrun: update: --memory: expected a size (bytes, or 512m, 2g), got "12x"\n']);
    const badJson = nsrun(a, ["update", "--resources", "-", "n-pause"], { stdin: '{"pids": {"limit": "x"}}' });
    expect([badJson.code, badJson.stderr]).toEqual([125, expect.stringContaining("linux.resources.pids.limit: expected number")]);
    // A paused container is deleted with --force (thawed after the SIGKILL).
    expect(nsrun(a, ["pause", "n-pause"]).code).toBe(0);
    expect(nsrun(a, ["delete", "--force", "n-pause"]).code).toBe(0);
    expect(await waitFor(() => !existsSync(`/proc/${pid}`), 10_000)).toBe(true);
  }, "root");

  forEachActor("a rootless container on cgroup v1 has no freezer: pause says so, the container runs on", (a) => {
    if (!cgroupV1) return void console.warn("skipped: a rootless container's pause on cgroup v1: this host has cgroup v2 (test:vm covers it)");
    const b = bundle(a, (s) => (s.process.args = ["sleep", "1000"]));
    expect(nsrun(a, ["run", "-d", "--bundle", b, "n-nofreeze"]).code).toBe(0);
    const r = nsrun(a, ["pause", "n-nofreeze"]);
    expect([r.code, r.stderr]).toEqual([1, expect.stringContaining('container "n-nofreeze" has no freezer cgroup')]);
    expect(JSON.parse(nsrun(a, ["state", "n-nofreeze"]).stdout).status).toBe("running");
    expect(nsrun(a, ["delete", "--force", "n-nofreeze"]).code).toBe(0);
  }, "user");
});

describe("namespaces joined by path", () => {
  forEachActor("a mount namespace without the PID one (as it is, or set up inside as runc does), and a UTS namespace joined by path that takes the hostname (as runc)", async (a) => {
    const holder = spawn(["unshare", "--mount", "--uts", "--fork", "sleep", "1000"], { stdout: "ignore", stderr: "ignore" });
    try {
      let pid = 0;
      expect(await waitFor(() => ((pid = Number(spawnSync(["pgrep", "-P", String(holder.pid)], { stdout: "pipe" }).stdout.toString().trim())), pid > 0), 10_000)).toBe(true);
      const b = bundle(a, (s) => {
        s.linux.namespaces = s.linux.namespaces.map((n: { type: string }) => (n.type === "uts" ? { type: "uts", path: `/proc/${pid}/ns/uts` } : n));
        s.hostname = "joined-uts";
        s.process.args = ["hostname"];
      });
      const { n, r } = both(a, b, "uts");
      expect([n.code, n.stdout]).toEqual([0, "joined-uts\n"]);
      if (r) expect(r.stdout).toBe(n.stdout);
      expect(spawnSync(["nsenter", "-t", String(pid), "-u", "hostname"], { stdout: "pipe" }).stdout.toString()).toBe("joined-uts\n");
      editBundle(b, (s) => {
        s.linux.namespaces = [{ type: "pid" }, { type: "mount", path: `/proc/${pid}/ns/mnt` }];
        delete s.hostname;
        s.mounts = [];
        s.root.readonly = false;
        s.linux.maskedPaths = [];
        s.linux.readonlyPaths = [];
        s.process.args = ["sh", "-c", "readlink /proc/self/ns/mnt; echo $$"];
      });
      // Nothing to set up: the joined namespace is used as it is (its root is the host's).
      const marker = `/tmp/nsrun-joined-${process.pid}`;
      writeFileSync(marker, "host\n");
      editBundle(b, (s) => (s.process.args = ["sh", "-c", `readlink /proc/self/ns/mnt; echo $$; cat ${marker}`]));
      const m = nsrun(a, ["run", "--bundle", b, "n-mnt"]);
      expect([m.code, m.stdout]).toEqual([0, `${readlinkSync(`/proc/${pid}/ns/mnt`)}\n1\nhost\n`]);
      // With mounts (runc spec's), the root is set up and pivoted inside it, as runc does: the
      // container sees its rootfs, and so does the namespace's other process afterwards.
      editBundle(b, (s) => {
        s.mounts = [{ destination: "/proc", type: "proc", source: "proc" }];
        s.process.args = ["sh", "-c", `readlink /proc/self/ns/mnt; cat ${marker} 2>&1 | grep -o 'No such file'; test -x /bin/busybox && echo rootfs`];
      });
      const set = nsrun(a, ["run", "--bundle", b, "n-mnt-setup"]);
      expect([set.code, set.stderr, set.stdout]).toEqual([0, "", `${readlinkSync(`/proc/${pid}/ns/mnt`)}\nNo such file\nrootfs\n`]);
      expect(existsSync(`/proc/${pid}/root/bin/busybox`)).toBe(true);
    } finally {
      holder.kill("SIGKILL");
      await holder.exited;
      rmSync(`/tmp/nsrun-joined-${process.pid}`, { force: true });
    }
  }, "root");
});

describe("namespace paths from a hostile config.json", () => {
  // config.json decides what nsrun opens to join: a FIFO there would hang a blocking open(2) until a
  // writer came (runc's does), a regular file or another kind's namespace would only fail later, at
  // setns(2), as EINVAL. nsrun opens without blocking and keeps only a namespace
  // file of the kind the entry names; anything else is refused at once, naming the key.
  forEachActor("a FIFO, a regular file, a directory, or another kind's namespace as linux.namespaces[].path: exit 125 naming the key, nothing left (control: the right kind passes)", (a) => {
    const fifo = join(a.area, "ns-fifo");
    const file = join(a.area, "ns-file");
    spawnSync(["mkfifo", fifo]);
    writeFileSync(file, "");
    spawnSync(["chown", `${a.uid}:${a.gid}`, fifo, file]);
    const utsAt = (path: string) => (s: Spec) => {
      s.linux.namespaces = s.linux.namespaces.filter((n: { type: string }) => n.type !== "uts");
      s.linux.namespaces.push({ type: "uts", path });
      delete s.hostname; // (a joined uts namespace that is nsrun's own may not get one)
      s.process.args = ["true"];
    };
    for (const [path, what] of [[fifo, "is not a namespace file"], [file, "is not a namespace file"], [a.area, "is not a namespace file"], ["/proc/self/ns/net", "is a net namespace, not a uts one"]]) {
      const b = bundle(a, utsAt(path));
      const index = (JSON.parse(readFileSync(join(b, "config.json"), "utf8")).linux.namespaces as Array<{ type: string }>).findIndex((n) => n.type === "uts");
      const r = nsrun(a, ["run", "--bundle", b, "n-badns"], { timeoutMs: 20_000 });
      expect([r.code, r.stderr]).toEqual([125, expect.stringContaining(`linux.namespaces[${index}].path: ${JSON.stringify(path)} ${what}`)]);
      expect(r.stderr.trim().split("\n").length).toBeLessThanOrEqual(2);
      expect(nsrun(a, ["list", "-q"]).stdout).toBe("");
    }
    // Control: a uts namespace file passes this check. Root joins it; the ordinary user's bundle has
    // a new user namespace, which nsrun does not combine with joined ones: that is the error then.
    const b = bundle(a, utsAt("/proc/self/ns/uts"));
    const r = nsrun(a, ["run", "--bundle", b, "n-goodns"], { timeoutMs: 20_000 });
    if (a.name === "root") expect([r.code, r.stderr]).toEqual([0, ""]);
    else expect([r.code, r.stderr]).toEqual([125, expect.stringContaining("joining namespaces by path together with a new user namespace is not supported")]);
    expect(nsrun(a, ["list", "-q"]).stdout).toBe("");
  });
});

describe("podman with nsrun", () => {
  const podman = have("podman") ? spawnSync(["sh", "-c", "command -v podman"], { stdout: "pipe" }).stdout.toString().trim() : "";
  const capBnd = BigInt(`0x${readFileSync("/proc/self/status", "utf8").match(/CapBnd:\s*(\w+)/)?.[1] ?? "0"}`);
  const ulimits = capBnd & (1n << 24n) ? [] : ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=20000:20000"];
  const pmFor = (a: Actor) => {
    const env = podmanEnv(a);
    const pm = (args: string[]) => {
      const r = spawnSync(command(podman, a, ["--runtime", area.bin, ...args]), { env, cwd: a.area, stdout: "pipe", stderr: "pipe", stdin: "ignore", timeout: 90_000 });
      return { code: r.exitCode ?? 128, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
    };
    return { pm };
  };
  const podmanTest = (name: string, fn: (a: Actor, pm: ReturnType<typeof pmFor>["pm"]) => void, only?: "root") =>
    forEachActor(name, (a) => {
      if (!podman) return void console.warn("skipped: podman is not installed (apt-get install podman)");
      fn(a, pmFor(a).pm);
    }, only);

  podmanTest("run --init: catatonit (a system symlink, owned by the overflow uid in rootless podman's namespace) is PID 1", (a, pm) => {
    const r = pm(["run", "--rm", ...ulimits, "--init", "--rootfs", join(a.area, "rootfs"), "sh", "-c", "tr '\\0' ' ' < /proc/1/cmdline"]);
    expect([r.code, r.stdout]).toEqual([0, "/run/podman-init -- sh -c tr '\\0' ' ' < /proc/1/cmdline "]);
  });

  podmanTest("run --user 1000 --cap-add NET_BIND_SERVICE serves on port 80 (ambient); control: without --cap-add, bind is refused", (a, pm) => {
    const listen = ["sh", "-c", "grep CapAmb /proc/self/status; timeout 1 nc -l -p 80 2>&1; echo rc=$?"];
    const r = pm(["run", "--rm", ...ulimits, "--user", "1000", "--cap-add", "NET_BIND_SERVICE", "--rootfs", join(a.area, "rootfs"), ...listen]);
    expect([r.code, r.stdout]).toEqual([0, expect.stringMatching(/^CapAmb:\t0000000000000400\n(Terminated\n)?rc=143\n$/)]);
    const denied = pm(["run", "--rm", ...ulimits, "--user", "1000", "--rootfs", join(a.area, "rootfs"), ...listen]);
    expect(denied.stdout).toMatch(/^CapAmb:\t0+\n.*Permission denied\nrc=1\n$/s);
  }, "root");

  podmanTest("exec --user 1000 into a running container: no capabilities (control: exec as root keeps them); pause/unpause, update", (a, pm) => {
    const r = pm(["run", "-d", ...ulimits, "--rootfs", join(a.area, "rootfs"), "sleep", "1000"]);
    expect(r.code).toBe(0);
    const id = r.stdout.trim();
    try {
      const user = pm(["exec", "--user", "1000", id, "sh", "-c", "id -u; grep CapEff /proc/self/status"]);
      expect([user.code, user.stdout]).toEqual([0, "1000\nCapEff:\t0000000000000000\n"]);
      expect(pm(["exec", id, "sh", "-c", "grep CapEff /proc/self/status"]).stdout).toMatch(/^CapEff:\t0*[1-9a-f]/);
      if (a.name === "root") {
        expect(pm(["pause", id]).code).toBe(0);
        expect(pm(["inspect", "--format", "{{.State.Status}}", id]).stdout.trim()).toBe("paused");
        expect(pm(["unpause", id]).code).toBe(0);
        expect(pm(["inspect", "--format", "{{.State.Status}}", id]).stdout.trim()).toBe("running");
        // podman update hands nsrun update --resources FILE.
        if (cgroupV1) {
          expect(pm(["update", "--memory", "128m", id]).code).toBe(0);
          const pid = Number(pm(["inspect", "--format", "{{.State.Pid}}", id]).stdout.trim());
          const memory = readFileSync(`/proc/${pid}/cgroup`, "utf8").match(/:memory:(\S+)/)?.[1];
          expect(readFileSync(`/sys/fs/cgroup/memory${memory}/memory.limit_in_bytes`, "utf8").trim()).toBe(String(128 * 2 ** 20));
        }
      }
    } finally {
      pm(["rm", "-f", "-t", "0", id]);
    }
  });
});

describe("host paths in a user namespace of the caller's own (rootless podman's)", () => {
  // nsrun as uid 0 of rootless podman's user namespace (`podman unshare`): the caller's uid and its
  // subordinate ids are mapped there, so links of root and of other users show as the overflow uid.
  // Such a link is followed only in a folder neither group nor others may write (the kernel's
  // protected_symlinks rule).
  forEachActor("another user's symlink in a world-writable sticky folder is refused; control: the same link in a closed folder is followed", (a) => {
    if (!have("podman")) return void console.warn("skipped: podman is not installed (apt-get install podman): its user namespace is the one tested");
    if (process.getuid?.() !== 0) return void console.warn("skipped: another user's symlink: only root can make a link owned by another user (run the tests as root)");
    const data = join(a.area, "linkdata");
    mkdirSync(data);
    writeFileSync(join(data, "f"), "through-link\n");
    const stranger = 12345; // not mapped in the caller's namespace
    const place = (dir: string, mode: number) => {
      mkdirSync(join(a.area, dir));
      spawnSync(["ln", "-s", data, join(a.area, dir, "link")]);
      spawnSync(["chown", "-h", `${stranger}:${stranger}`, join(a.area, dir, "link")]);
      spawnSync(["chmod", mode.toString(8), join(a.area, dir)]);
      return join(a.area, dir, "link");
    };
    const sticky = place("sticky", 0o1777);
    const closed = place("closed", 0o755);
    spawnSync(["chown", "-R", `${a.uid}:${a.gid}`, data]);
    const inNs = (source: string, id: string) => {
      const b = bundle(a, (s) => {
        s.linux.uidMappings = [{ containerID: 0, hostID: 0, size: 1 }];
        s.linux.gidMappings = [{ containerID: 0, hostID: 0, size: 1 }];
        s.mounts.push({ destination: "/mnt", type: "bind", source, options: ["rbind", "ro"] });
        s.process.args = ["cat", "/mnt/f"];
      });
      return run(a, "podman", ["unshare", area.bin, "--root", join(a.area, "ns-state"), "run", "--bundle", b, id], { env: podmanEnv(a) });
    };
    const refused = inNs(sticky, "n-sticky");
    expect([refused.code, refused.stderr]).toEqual([125, expect.stringContaining(`${JSON.stringify(sticky)} is a symbolic link owned by uid 65534`)]);
    expect(existsSync(join(a.area, "ns-state", "n-sticky"))).toBe(false);
    const followed = inNs(closed, "n-closed");
    expect([followed.stderr, followed.stdout]).toEqual(["", "through-link\n"]);
  }, "user");
});

describe("hints", () => {
  test("'needs Linux X.Y' only on an older kernel; on a newer one ENOSYS names a seccomp filter", () => {
    expect(hintFor("close_range", 38, "5.4.0-1-amd64")).toBe("close_range(2) needs Linux 5.9 or later");
    expect(hintFor("close_range", 38, "6.18.44-fc")).toMatch(/^this kernel \(6\.18\.44\) has close_range\(2\): a seccomp filter refuses it/);
    expect(hintFor("close_range", 1, "6.18.44")).toMatch(/seccomp filter refuses it/);
  });
});
