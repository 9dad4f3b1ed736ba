// nsrun as an OCI runtime: the lifecycle create -> start -> exec -> kill -> delete with real bundles,
// as root and as the ordinary user nsrun-test (setpriv), every error path of each command, the
// security settings of config.json with positive controls, hooks, locking, and how `run` tells an
// OCI call from a box. Each test uses its own container IDs in its own --root folder.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawn, spawnSync } from "bun";
import { chmodSync, existsSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { isOciCommandLine as isOciLine } from "../core/oci/argv";
import { planOciCgroup } from "../core/oci/resources";
import { ownArgs } from "../cmd/args";

/** As cmd/main.ts asks. */
const isOciCommandLine = (argv: string[], cwd: string) => isOciLine(argv, cwd, ownArgs);
import { installNsrun, editBundle, makeBundle, type Spec } from "../fixtures/oci/bundle";
import { type Actor, command, TEST_USER, waitFor } from "./helpers";
import { runAs } from "./runtimes";

const PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
let top = "";
let bin = "";
const isRoot = (process.getuid?.() ?? 0) === 0;

const actors: Actor[] = [];

function idOf(flag: string): number {
  return Number(spawnSync(["id", flag, TEST_USER], { stdout: "pipe" }).stdout.toString().trim());
}

/** Why an actor's tests cannot run here (known when the tests are declared), or null. */
const unavailable = {
  root: isRoot ? null : "the tests run as an ordinary user",
  user: isRoot && spawnSync(["id", "-u", TEST_USER]).exitCode !== 0 ? `no user ${TEST_USER} (test/helpers.ts makes it; run the box tests once)` : null,
};

beforeAll(() => {
  top = mkdtempSync("/tmp/nsrun-oci-test-");
  chmodSync(top, 0o755);
  bin = installNsrun(join(top, "nsrun"));
  if (isRoot) {
    actors.push({ name: "root", uid: 0, gid: 0, area: join(top, "root") });
    if (spawnSync(["id", "-u", TEST_USER]).exitCode === 0) actors.push({ name: "user", uid: idOf("-u"), gid: idOf("-g"), area: join(top, "user") });
    else console.warn(`skipped: rootless OCI tests: no user ${TEST_USER} (test/helpers.ts makes it; run the box tests once)`);
  } else {
    console.warn("skipped: root OCI tests: the tests run as an ordinary user");
    actors.push({ name: "user", uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, area: join(top, "user") });
  }
  for (const a of actors) {
    spawnSync(["mkdir", "-p", a.area]);
    spawnSync(["chown", `${a.uid}:${a.gid}`, a.area]);
  }
}, 120_000);

afterAll(() => {
  // Our own containers only: everything lives in our own --root folders below `top`.
  for (const a of actors) for (const id of listIds(a)) oci(a, ["delete", "--force", id]);
  rmSync(top, { recursive: true, force: true });
});

let calls = 0;
/**
 * nsrun as the actor. Its output goes to files, not pipes: a created container inherits nsrun's
 * stdio and keeps it open, and a pipe would not reach end of file until the container ends.
 */
function oci(a: Actor, args: string[], opts: { cwd?: string } = {}) {
  return runAs(a, bin, ["--root", join(a.area, "state"), ...args], { env: { PATH }, cwd: opts.cwd, timeoutMs: 30_000 });
}

function listIds(a: Actor): string[] {
  const r = oci(a, ["list", "-q"]);
  return r.code === 0 ? r.stdout.split("\n").filter(Boolean) : [];
}

function state(a: Actor, id: string): Record<string, any> {
  const r = oci(a, ["state", id]);
  if (r.code !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout);
}

const NS_FILES: Record<string, string> = { mount: "mnt", network: "net" };
/** Namespaces of `kinds` joined by path (PATH: /proc/PID/ns/KIND, nsrun's own by default), the others as the template has them. */
function joinOwn(s: Spec, kinds: string[], pid: number | "self" = "self"): void {
  const path = (type: string) => `/proc/${pid}/ns/${NS_FILES[type] ?? type}`;
  s.linux.namespaces = s.linux.namespaces.map((n: { type: string }) => (kinds.includes(n.type) ? { type: n.type, path: path(n.type) } : n));
  for (const type of kinds) if (!s.linux.namespaces.some((n: { type: string }) => n.type === type)) s.linux.namespaces.push({ type, path: path(type) });
  if (kinds.includes("user")) {
    delete s.linux.uidMappings;
    delete s.linux.gidMappings;
  }
}

let bundles = 0;
/** A fresh bundle for `a`, its config from `nsrun spec` (--rootless for the ordinary user), then edited. */
function bundle(a: Actor, edit: (s: Spec) => void = () => {}): string {
  const dir = join(a.area, `bundle${++bundles}`);
  return makeBundle(
    dir,
    (d) => {
      const r = oci(a, ["spec", ...(a.name === "user" ? ["--rootless"] : []), "--bundle", d]);
      if (r.code !== 0) throw new Error(r.stderr);
    },
    a,
    (s) => {
      s.process.args = ["sleep", "1000"];
      // The template's root is read-only: a writable /tmp for the tests' commands.
      s.mounts.push({ destination: "/tmp", type: "tmpfs", source: "tmpfs", options: ["mode=1777"] });
      edit(s);
    },
  );
}

function stopped(a: Actor, id: string): Promise<boolean> {
  return waitFor(() => state(a, id).status === "stopped", 10_000);
}

/** The test once for root and once for the ordinary user; skipped, saying why, for an actor not available here or when `skip` says so. */
const forEachActor = (name: string, fn: (a: Actor) => void | Promise<void>, timeout = 60_000, skip: string | null = null) => {
  for (const who of ["root", "user"] as const) {
    const why = skip ?? unavailable[who];
    test.skipIf(why !== null)(`${name} (${who})${why ? ` (skipped: ${why})` : ""}`, async () => fn(actors.find((x) => x.name === who) as Actor), timeout);
  }
};

describe("lifecycle", () => {
  forEachActor("create, state created, start, state running, exec, kill, state stopped, delete", async (a) => {
    const b = bundle(a, (s) => (s.process.args = ["sh", "-c", "echo started > /tmp/marker; exec sleep 1000"]));
    const pidFile = join(a.area, "lifecycle.pid");
    let r = oci(a, ["create", "--bundle", b, "--pid-file", pidFile, "life"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const created = state(a, "life");
    expect(created).toMatchObject({ ociVersion: "1.0.2", id: "life", status: "created", bundle: b, annotations: {} });
    expect(Number(readFileSync(pidFile, "utf8"))).toBe(created.pid);
    // Nothing of nsrun stays behind: the only process is the container's, waiting.
    expect(readFileSync(`/proc/${created.pid}/cmdline`, "utf8")).toContain("nsrun");
    expect(oci(a, ["ps", "--format", "json", "life"]).stdout.trim()).toBe(`[${created.pid}]`);
    // A root container has cgroups of its own (nsrun/life below nsrun's, in each hierarchy it joins):
    // there while it lives, gone after delete (below). An ordinary user's gets one only with limits.
    const cgroups = readFileSync(`/proc/${created.pid}/cgroup`, "utf8")
      .split("\n")
      .map((l) => l.split(":"))
      .filter(([, , path]) => path?.endsWith("/nsrun/life"))
      // cgroup2 ("0::") is /sys/fs/cgroup itself on a v2 host, /sys/fs/cgroup/unified on a hybrid one.
      .map(([, controllers, path]) => `/sys/fs/cgroup${controllers ? `/${controllers.replace(/^name=/, "")}` : existsSync("/sys/fs/cgroup/unified/cgroup.procs") ? "/unified" : ""}${path}`);
    expect(cgroups.length > 0 && cgroups.every((d) => existsSync(d))).toBe(a.name === "root");

    r = oci(a, ["start", "life"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(state(a, "life")).toMatchObject({ status: "running", pid: created.pid });
    expect(readFileSync(`/proc/${created.pid}/cmdline`, "utf8")).toBe("sleep\u00001000\u0000");

    // exec joins its namespaces: it sees the container's /tmp and hostname, and its own PID namespace.
    r = oci(a, ["exec", "life", "sh", "-c", "cat /tmp/marker; hostname; echo $$; cat /proc/1/cmdline"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const [marker, host, ownPid, pid1] = r.stdout.split("\n");
    expect([marker, host, pid1]).toEqual(["started", "nsrun", "sleep\u00001000\u0000"]);
    expect(Number(ownPid)).toBeGreaterThan(1);
    // ... and its status is the command's.
    expect(oci(a, ["exec", "life", "sh", "-c", "exit 7"]).code).toBe(7);
    expect(oci(a, ["list"]).stdout).toMatch(/^ID\s+PID\s+STATUS\s+BUNDLE\s+CREATED\s+OWNER\nlife\s+\d+\s+running\s/);
    expect(JSON.parse(oci(a, ["list", "--format", "json"]).stdout)).toMatchObject([{ id: "life", status: "running" }]);

    r = oci(a, ["kill", "life", "KILL"]);
    expect(r.code).toBe(0);
    expect(await stopped(a, "life")).toBe(true);
    expect(state(a, "life").pid).toBe(0);
    r = oci(a, ["delete", "life"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(existsSync(join(a.area, "state", "life"))).toBe(false);
    expect(cgroups.filter((d) => existsSync(d))).toEqual([]);
    expect(oci(a, ["state", "life"]).stderr).toContain('container "life" does not exist');
  });

  forEachActor("run ID waits for the container, returns its status and deletes it; run -d leaves it running", (a) => {
    const b = bundle(a, (s) => (s.process.args = ["sh", "-c", "echo out; exit 3"]));
    const r = oci(a, ["run", "--bundle", b, "attached"]);
    expect([r.code, r.stdout]).toEqual([3, "out\n"]);
    expect(oci(a, ["state", "attached"]).code).not.toBe(0);
    const d = bundle(a);
    expect(oci(a, ["run", "-d", "--bundle", d, "detached"]).code).toBe(0);
    expect(state(a, "detached").status).toBe("running");
    expect(oci(a, ["delete", "--force", "detached"]).code).toBe(0);
  });

  forEachActor("a command that does not exist fails at start with status 127, and the container is stopped", async (a) => {
    const b = bundle(a, (s) => (s.process.args = ["/no/such/command"]));
    expect(oci(a, ["create", "--bundle", b, "nocmd"]).code).toBe(0);
    const r = oci(a, ["start", "nocmd"]);
    expect(r.code).toBe(127);
    expect(r.stderr).toContain('"/no/such/command": executable file not found');
    expect(await stopped(a, "nocmd")).toBe(true);
    expect(oci(a, ["delete", "nocmd"]).code).toBe(0);
  });
});

describe("error paths (each changes nothing)", () => {
  forEachActor("every command's refusals", async (a) => {
    const b = bundle(a);
    expect(oci(a, ["create", "--bundle", b, "errs"]).code).toBe(0);
    const before = state(a, "errs");
    const refusals: Array<[string[], RegExp]> = [
      [["create", "--bundle", b, "errs"], /container "errs" already exists/],
      [["create", "--bundle", b, "bad/id"], /invalid container ID/],
      [["create", "--bundle", join(a.area, "nowhere"), "nob"], /config\.json: cannot read the bundle's config\.json \(ENOENT\)/],
      [["create", "--bundle", b], /expected one container ID/],
      [["create", "--bogus", "x"], /unknown option --bogus/],
      [["kill", "errs", "SIGNOPE"], /unknown signal "SIGNOPE"/],
      [["exec", "errs"], /no command/],
      [["state", "ghost"], /container "ghost" does not exist/],
      [["start", "ghost"], /container "ghost" does not exist/],
      [["kill", "ghost"], /container "ghost" does not exist/],
      [["delete", "ghost"], /container "ghost" does not exist/],
      [["events", "errs"], /events: not supported by nsrun/],
      [["resume", "errs"], /cannot resume container "errs": it is created/],
      [["--systemd-cgroup", "state", "errs"], /no systemd cgroup driver/],
      [["list", "--format", "yaml"], /expected table or json/],
    ];
    for (const [args, message] of refusals) {
      const r = oci(a, args);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(message);
      expect(r.stderr.trim().split("\n").length).toBeLessThanOrEqual(2);
    }
    expect(oci(a, ["delete", "--force", "ghost"]).code).toBe(0); // runc: --force ignores a missing container
    expect(state(a, "errs")).toEqual(before);
    expect(oci(a, ["start", "errs"]).code).toBe(0);
    // The spec's MUSTs: start twice, delete of a running container without --force.
    let r = oci(a, ["start", "errs"]);
    expect([r.code, r.stderr]).toEqual([1, 'nsrun: cannot start container "errs": it is running, not created\n']);
    r = oci(a, ["delete", "errs"]);
    expect(r.stderr).toBe('nsrun: cannot delete container "errs" that is not stopped: running\n');
    expect(state(a, "errs")).toMatchObject({ status: "running", pid: before.pid });
    expect(oci(a, ["kill", "errs", "9"]).code).toBe(0);
    expect(await stopped(a, "errs")).toBe(true);
    r = oci(a, ["kill", "errs"]);
    expect(r.stderr).toContain('container "errs" is not running');
    r = oci(a, ["exec", "errs", "true"]);
    expect(r.stderr).toContain("it is stopped");
    expect(oci(a, ["delete", "errs"]).code).toBe(0);
  });

  forEachActor("config.json: unknown and unsupported fields are errors naming their JSON path; nothing is left behind", (a) => {
    const cases: Array<[(s: Spec) => void, string]> = [
      [(s) => (s.process.usr = {}), "process.usr: unknown field"],
      [(s) => (s.linux.maskedPath = []), "linux.maskedPath: unknown field"],
      [(s) => (s.process.user.uid = "0"), "process.user.uid: expected number"],
      [(s) => (s.process.apparmorProfile = "docker-default"), "process.apparmorProfile: this host has no AppArmor"],
      [(s) => (s.linux.timeOffsets = { boottime: { secs: 10 } }), 'linux.timeOffsets: offsets need a new time namespace ({"type": "time"})'],
      [(s) => (s.linux.timeOffsets = { boottime: { nanosecs: 1e9 } }), "linux.timeOffsets.boottime.nanosecs: expected 0 to 999999999"],
      [(s) => (s.linux.sysctl = { "kernel.panic": "1" }), "linux.sysctl.kernel.panic: is not a sysctl of a namespace the container has"],
      [(s) => (s.linux.namespaces = s.linux.namespaces.filter((n: { type: string }) => n.type !== "mount")), "linux.namespaces: nsrun needs a mount namespace: a new one"],
      [(s) => { joinOwn(s, ["user", "uts"]); s.hostname = "x"; }, "hostname: setting a hostname needs a uts namespace of the container's own ({\"type\": \"uts\"}, or one joined by path); the one linux.namespaces["],
      [(s) => joinOwn(s, ["user", "mount", "pid"]), "linux.namespaces[3].path: is nsrun's own mount namespace or PID 1's (the host's): setting the container's root up there"],
      [(s) => (s.process.capabilities.bounding = ["CAP_NOPE"]), 'process.capabilities.bounding[0]: unknown capability "CAP_NOPE"'],
      [(s) => (s.mounts[0].options = ["rshared", "rslave"]), 'mounts[0].options[1]: "rslave" contradicts an earlier propagation option'],
      [(s) => (s.process.rlimits = [{ type: "RLIMIT_FOO", hard: 1, soft: 1 }]), 'process.rlimits[0].type: unknown rlimit "RLIMIT_FOO"'],
      [(s) => (s.linux.rootfsPropagation = "rsleeve"), 'linux.rootfsPropagation: "rsleeve": expected one of shared, rshared, slave, rslave'],
      [(s) => (s.linux.cgroupsPath = "machine.slice:libpod:x"), "linux.cgroupsPath"],
    ];
    for (const [edit, message] of cases) {
      const b = bundle(a, edit);
      const r = oci(a, ["create", "--bundle", b, "bad"]);
      expect([r.code, r.stderr]).toEqual([125, expect.stringContaining(message)]);
      expect(r.stderr.startsWith(`nsrun: ${b}/config.json: `)).toBe(true);
      expect(existsSync(join(a.area, "state", "bad"))).toBe(false);
    }
  });
});

describe("config.json's security settings (each with a positive control)", () => {
  const status = (a: Actor, edit: (s: Spec) => void, script: string) => {
    const b = bundle(a, (s) => {
      s.process.args = ["sh", "-c", script];
      edit(s);
    });
    return oci(a, ["run", "--bundle", b, `sec${bundles}`]);
  };
  forEachActor("capabilities, no_new_privs and seccomp are what the config says", (a) => {
    const show = "grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status";
    const dflt = status(a, () => {}, show).stdout;
    expect(dflt).toContain("NoNewPrivs:\t1");
    expect(dflt).toContain("Seccomp:\t0");
    expect(dflt).toContain("CapEff:\t00000000800405fb"); // the spec template's default set
    const changed = status(a, (s) => {
      s.process.noNewPrivileges = false;
      s.process.capabilities = { bounding: ["CAP_CHOWN", "CAP_KILL"], effective: ["CAP_KILL"], permitted: ["CAP_KILL"] };
      s.linux.seccomp = { defaultAction: "SCMP_ACT_ALLOW", syscalls: [{ names: ["mkdir", "mkdirat"], action: "SCMP_ACT_ERRNO", errnoRet: 1 }] };
    }, `${show}; mkdir /tmp/x && echo made`).stdout;
    expect(changed).toContain("NoNewPrivs:\t0");
    expect(changed).toContain("Seccomp:\t2");
    // uid 0 gets its bounding set at execve(2) whatever capset said (capabilities(7)), as with runc.
    expect(changed).toContain("CapEff:\t0000000000000021");
    expect(changed).toContain("CapBnd:\t0000000000000021");
    expect(changed).not.toContain("made");
    expect(status(a, () => {}, "mkdir /tmp/x && echo made").stdout).toBe("made\n");
  });

  forEachActor("masked and read-only paths, read-only root, hostname and env", (a) => {
    const out = status(a, (s) => {
      s.hostname = "oci-host";
      s.process.env = ["PATH=/bin", "ONLY=this"];
      s.linux.maskedPaths = ["/etc/hostname"];
      s.linux.readonlyPaths = ["/tmp"];
    }, "hostname; env | sort | tr '\\n' ' '; echo; wc -c < /etc/hostname; touch /tmp/t 2>&1 || echo tmp-ro; touch /x 2>&1 || echo root-ro").stdout;
    expect(out).toBe("oci-host\nONLY=this PATH=/bin PWD=/ SHLVL=1 \n0\ntouch: /tmp/t: Read-only file system\ntmp-ro\ntouch: /x: Read-only file system\nroot-ro\n");
    // Positive control: without them the file has its content and /tmp is writable.
    expect(status(a, () => {}, "wc -c < /etc/hostname; touch /tmp/t && echo tmp-rw").stdout).toBe("7\ntmp-rw\n");
  });
});

/** /proc/uptime's first field (CLOCK_BOOTTIME) in hundredths of a second, a whole number. */
const centiseconds = (text: string) => Math.round(Number(text.split(" ")[0]) * 100);
const uptime = () => centiseconds(readFileSync("/proc/uptime", "utf8"));

describe("time namespace offsets", () => {
  forEachActor("linux.timeOffsets: the container's boot and monotonic clocks are offset (control: a time namespace without offsets is not)", (a) => {
    const clocks = (offsets: object | null) => {
      const b = bundle(a, (s) => {
        s.process.args = ["sh", "-c", "cut -d' ' -f1 /proc/uptime; cat /proc/self/timens_offsets"];
        s.linux.namespaces.push({ type: "time" });
        if (offsets) s.linux.timeOffsets = offsets;
      });
      const before = uptime();
      const r = oci(a, ["run", "--bundle", b, `time${bundles}`]);
      const after = uptime();
      expect([r.code, r.stderr]).toEqual([0, ""]);
      const [inside, ...offsetLines] = r.stdout.trim().split("\n");
      return { inside: centiseconds(inside), before, after, offsets: offsetLines.map((l) => l.trim().split(/\s+/).join(" ")) };
    };
    const shifted = clocks({ boottime: { secs: 1000000 }, monotonic: { secs: 500000, nanosecs: 250 } });
    // The container read its uptime between our two readings, a million seconds on.
    expect(shifted.inside).toBeGreaterThanOrEqual(shifted.before + 100000000);
    expect(shifted.inside).toBeLessThanOrEqual(shifted.after + 100000000);
    expect(shifted.offsets).toEqual(["monotonic 500000 250", "boottime 1000000 0"]);
    const control = clocks(null);
    expect(control.inside).toBeGreaterThanOrEqual(control.before);
    expect(control.inside).toBeLessThanOrEqual(control.after);
    expect(control.offsets).toEqual(["monotonic 0 0", "boottime 0 0"]);
  });

  forEachActor("box.toml [namespaces] time = { boottime, monotonic }: the same offsets for a box (control: time = true)", (a) => {
    const rootfs = join(bundle(a), "rootfs");
    const box = (time: string) => {
      const file = join(a.area, `time${++calls}.toml`);
      writeFileSync(file, `rootfs = "${rootfs}"\n[namespaces]\ntime = ${time}\n[process]\nargs = ["/bin/sh", "-c", "cut -d' ' -f1 /proc/uptime; cat /proc/self/timens_offsets"]\n`);
      const before = uptime();
      const r = spawnSync(command(bin, a, ["--config", file]), { env: { PATH }, stdout: "pipe", stderr: "pipe" });
      const after = uptime();
      expect([r.exitCode, r.stderr.toString()]).toEqual([0, ""]);
      const [inside, ...rest] = r.stdout.toString().trim().split("\n");
      return { inside: centiseconds(inside), before, after, offsets: rest.map((l) => l.trim().split(/\s+/).join(" ")) };
    };
    const shifted = box("{ boottime = 86400.5, monotonic = -1.25 }");
    expect(shifted.inside).toBeGreaterThanOrEqual(shifted.before + 8640050);
    expect(shifted.inside).toBeLessThanOrEqual(shifted.after + 8640050);
    expect(shifted.offsets).toEqual(["monotonic -2 750000000", "boottime 86400 500000000"]);
    const control = box("true");
    expect([control.inside >= control.before, control.inside <= control.after]).toEqual([true, true]);
    expect(control.offsets).toEqual(["monotonic 0 0", "boottime 0 0"]);
    // An offset the kernel refuses (the clock would go below zero) is a one-line error naming the step.
    const file = join(a.area, `time${++calls}.toml`);
    writeFileSync(file, `rootfs = "${rootfs}"\n[namespaces]\ntime = { boottime = -4000000000 }\n`);
    const r = spawnSync(command(bin, a, ["--config", file]), { env: { PATH }, stdout: "pipe", stderr: "pipe" });
    expect(r.exitCode).toBe(125);
    expect(r.stderr.toString()).toContain("namespaces: set the time namespace's clock offsets: write(timens, ");
    expect(r.stderr.toString()).toContain("ERANGE");
  });
});

describe("createContainer and startContainer hooks", () => {
  forEachActor("createContainer runs in the container's namespaces before pivot_root, startContainer in its root before the command; each gets the state", async (a) => {
    const evidence = join(a.area, `evidence${bundles}`);
    spawnSync(["mkdir", "-p", evidence]);
    spawnSync(["chown", `${a.uid}:${a.gid}`, evidence]);
    const log = join(evidence, "log");
    // The same lines from each hook: its name, its mount namespace, where its / is, the state.
    // (/only-in-rootfs exists only in the container's root; ROOT/proc is a mount when the container's
    // /proc is mounted at the rootfs's path, as it is before pivot_root.)
    const probe = (name: string, logFile: string, root: string) =>
      `{ echo ${name}; readlink /proc/self/ns/mnt; test -e /only-in-rootfs && echo container-root || echo host-root; grep -c " ${root}/proc " /proc/self/mountinfo; cat; echo; } >> ${logFile}`;
    let rootfs = "";
    const b = bundle(a, (s) => {
      rootfs = join(a.area, `bundle${bundles}`, "rootfs");
      s.mounts.push({ destination: "/data", type: "bind", source: evidence, options: ["rbind", "rw"] });
      s.hooks = {
        createRuntime: [{ path: "/bin/sh", args: ["sh", "-c", probe("createRuntime", log, rootfs)] }],
        createContainer: [{ path: "/bin/sh", args: ["sh", "-c", probe("createContainer", log, rootfs)] }],
        // Resolved in the container's root: its /bin/sh (busybox), its /only-in-rootfs, the bind.
        startContainer: [{ path: "/bin/sh", args: ["sh", "-c", probe("startContainer", "/data/log", "")], env: ["PATH=/bin"] }],
        poststart: [{ path: "/bin/sh", args: ["sh", "-c", `echo poststart >> ${log}`] }],
      };
    });
    writeFileSync(join(rootfs, "only-in-rootfs"), "");
    const id = `inside${bundles}`;
    let r = oci(a, ["create", "--bundle", b, id]);
    expect([r.code, r.stderr]).toEqual([0, ""]);
    const pid = state(a, id).pid;
    const hostMnt = readlinkSync("/proc/self/ns/mnt");
    r = oci(a, ["start", id]);
    expect([r.code, r.stderr]).toEqual([0, ""]);
    // Read once the command runs: until start the container's process is the non-dumpable stub,
    // whose namespaces an ordinary user may not read (core/launch/launch.ts).
    const containerMnt = readlinkSync(`/proc/${pid}/ns/mnt`);
    expect(containerMnt).not.toBe(hostMnt);
    expect(await waitFor(() => existsSync(log) && readFileSync(log, "utf8").includes("poststart"), 10_000)).toBe(true);
    const blocks = readFileSync(log, "utf8").trim().split("\n");
    // createRuntime (4 lines + state), createContainer, startContainer, poststart.
    const take = (name: string) => {
      const at = blocks.indexOf(name);
      return { at, mnt: blocks[at + 1], root: blocks[at + 2], procMounts: blocks[at + 3], state: JSON.parse(blocks[at + 4] ?? "null") };
    };
    const runtime = take("createRuntime");
    const create = take("createContainer");
    const start = take("startContainer");
    expect([runtime.at, create.at, start.at, blocks.indexOf("poststart")]).toEqual([0, 5, 10, 15]);
    // Where each ran: createRuntime in the host's mount namespace (the control), the other two in the container's.
    expect([runtime.mnt, create.mnt, start.mnt]).toEqual([hostMnt, containerMnt, containerMnt]);
    // createContainer sees the host's / with the container's root prepared at the rootfs's path, its
    // /proc mounted there (before pivot_root); startContainer sees the container's own root.
    expect([runtime.root, create.root, start.root]).toEqual(["host-root", "host-root", "container-root"]);
    expect([runtime.procMounts, create.procMounts, start.procMounts]).toEqual(["0", "1", "1"]);
    expect([create.state.status, start.state.status, create.state.id]).toEqual(["creating", "created", id]);
    // The PID as each hook's namespace sees it: the host's for createRuntime, 1 inside (own PID namespace).
    expect([runtime.state.pid, create.state.pid, start.state.pid]).toEqual([pid, 1, 1]);
    expect(oci(a, ["delete", "--force", id]).code).toBe(0);
  });

  forEachActor("a failing createContainer hook fails create, a failing startContainer hook fails start; the errors name the hook", async (a) => {
    const cases: Array<[string, object, string]> = [
      ["createContainer", { path: "/bin/sh", args: ["sh", "-c", "exit 3"] }, 'hooks.createContainer[0] "/bin/sh": exited with status 3'],
      ["createContainer", { path: "/no/such/hook" }, 'hooks.createContainer[0] "/no/such/hook": cannot run it (ENOENT)'],
      ["startContainer", { path: "/bin/sh", args: ["sh", "-c", "kill -9 $$"] }, 'hooks.startContainer[0] "/bin/sh": killed by signal 9'],
      ["startContainer", { path: "/bin/sleep", args: ["sleep", "1000"], timeout: 1 }, 'hooks.startContainer[0] "/bin/sleep": timed out after 1s'],
    ];
    for (const [list, hook, message] of cases) {
      const b = bundle(a, (s) => (s.hooks = { [list]: [hook] }));
      const id = `hookfail${bundles}`;
      let r = oci(a, ["create", "--bundle", b, id]);
      if (list === "createContainer") {
        expect([r.code, r.stderr]).toEqual([125, `nsrun: ${message}\n`]);
        expect(existsSync(join(a.area, "state", id))).toBe(false);
        continue;
      }
      expect(r.code).toBe(0);
      r = oci(a, ["start", id]);
      expect([r.code, r.stderr]).toEqual([1, `nsrun: ${message}\n`]);
      expect(await stopped(a, id)).toBe(true);
      expect(oci(a, ["delete", id]).code).toBe(0);
    }
    // Control: the same hook lists with hooks that succeed start the container.
    const b = bundle(a, (s) => {
      s.process.args = ["true"];
      s.hooks = { createContainer: [{ path: "/bin/true" }], startContainer: [{ path: "/bin/true" }] };
    });
    expect(oci(a, ["run", "--bundle", b, `hookok${bundles}`])).toEqual({ code: 0, stdout: "", stderr: "" });
  });
});

describe("joining another container's namespaces by path", () => {
  forEachActor("a container that joins another's user, mount and PID namespaces (and more) sees its files and processes (control: one of its own sees neither)", async (a) => {
    const first = bundle(a, (s) => (s.process.args = ["sh", "-c", "echo from-first > /tmp/first-marker; exec sleep 1000"]));
    const firstId = `first${bundles}`;
    expect(oci(a, ["run", "-d", "--bundle", first, firstId]).code).toBe(0);
    const pid = state(a, firstId).pid;
    // The command: the first container's file, its sleep among our processes, our namespaces.
    const look = (s: Spec) => {
      s.process.args = ["sh", "-c", "cat /tmp/first-marker 2>&1; ps -o args | grep -c '^sleep 1000'; for n in mnt pid user ipc uts; do readlink /proc/self/ns/$n; done; sleep 1000"];
    };
    // rootless: the first container's user namespace first, which gives the rights to the others.
    const kinds = a.name === "root" ? ["mount", "pid", "ipc", "uts", "network"] : ["user", "mount", "pid", "ipc", "uts"];
    const second = bundle(a, (s) => {
      look(s);
      joinOwn(s, kinds, pid);
      // A joined mount namespace is another's: no mounts, masks or read-only root of our own.
      s.mounts = [];
      s.linux.maskedPaths = [];
      s.linux.readonlyPaths = [];
      s.root.readonly = false;
      delete s.hostname; // the uts namespace is joined too
    });
    const control = bundle(a, look);
    const outOf = async (b: string, id: string) => {
      // Files, not pipes: the container keeps run's stdout and stderr.
      const out = join(a.area, `${id}.out`);
      const err = join(a.area, `${id}.err`);
      const r = spawnSync(command(bin, a, ["--root", join(a.area, "state"), "run", "-d", "--bundle", b, id]), { env: { PATH }, cwd: a.area, stdin: "ignore", stdout: Bun.file(out), stderr: Bun.file(err) });
      expect([r.exitCode, readFileSync(err, "utf8")]).toEqual([0, ""]);
      expect(await waitFor(() => readFileSync(out, "utf8").split("\n").length > 7, 10_000)).toBe(true);
      return readFileSync(out, "utf8").split("\n").slice(0, 7);
    };
    const ns = (p: number) => ["mnt", "pid", "user", "ipc", "uts"].map((n) => readlinkSync(`/proc/${p}/ns/${n}`));
    const secondId = `second${bundles}`;
    const joined = await outOf(second, secondId);
    expect(joined).toEqual(["from-first", "1", ...ns(pid)]);
    // Its own process is one of ours, in the first container's PID namespace (not its PID 1).
    const secondPid = state(a, secondId).pid;
    expect(readFileSync(`/proc/${secondPid}/status`, "utf8").match(/^NSpid:\s+\d+\s+(\d+)$/m)?.[1]).not.toBe("1");
    // exec into it joins the same namespaces.
    const r = oci(a, ["exec", secondId, "cat", "/tmp/first-marker"]);
    expect([r.code, r.stdout]).toEqual([0, "from-first\n"]);
    const own = await outOf(control, `control${bundles}`);
    expect(own[0]).toContain("No such file");
    expect(own[1]).toBe("0");
    expect(own.slice(2, 4)).toEqual(expect.not.arrayContaining(ns(pid).slice(0, 2)));
    for (const id of [secondId, `control${bundles}`, firstId]) expect(oci(a, ["delete", "--force", id]).code).toBe(0);
  });
});

describe("id-mapped mounts", () => {
  forEachActor("an id-mapped bind shows and writes its files through the mount's maps (control: a plain bind); an ordinary user is refused", (a) => {
    const src = join(a.area, `idmapped${bundles}`);
    spawnSync(["mkdir", "-p", src]);
    writeFileSync(join(src, "owned"), "");
    // On disk, everything belongs to 1000.
    spawnSync(["chown", "-R", "1000:1000", src]);
    const map = (inside: number, outside: number) => [{ containerID: inside, hostID: outside, size: 1 }];
    const idmapped = (s: Spec, host: number) => s.mounts.push({ destination: "/data", type: "bind", source: src, options: ["rbind", "idmap"], uidMappings: map(1000, host), gidMappings: map(1000, host) });
    const probe = (s: Spec) => (s.process.args = ["sh", "-c", "stat -c %u:%g /data/owned; touch /data/new && stat -c %u:%g /data/new"]);
    const onDisk = () => {
      const r = spawnSync(["stat", "-c", "%u:%g", join(src, "new")], { stdout: "pipe" }).stdout.toString().trim();
      rmSync(join(src, "new"), { force: true });
      return r;
    };
    if (a.name === "user") {
      const b = bundle(a, (s) => idmapped(s, a.uid));
      const r = oci(a, ["create", "--bundle", b, "idmap"]);
      expect([r.code, r.stderr]).toEqual([125, expect.stringContaining("uidMappings: an id-mapped mount of a host folder needs root (CAP_SYS_ADMIN in the initial user namespace")]);
      expect(existsSync(join(a.area, "state", "idmap"))).toBe(false);
      return;
    }
    // Root's container: 1000 on disk is 0 inside, and what it writes as 0 is 1000 on disk.
    let r = oci(a, ["run", "--bundle", bundle(a, (s) => (probe(s), idmapped(s, 0))), `idmap${bundles}`]);
    expect([r.code, r.stdout, r.stderr, onDisk()]).toEqual([0, "0:0\n0:0\n", "", "1000:1000"]);
    // With a user namespace of the container's own (0 is 100000 outside): nsrun made the copy, the container attached it.
    r = oci(a, ["run", "--bundle", bundle(a, (s) => {
      probe(s);
      s.linux.namespaces.push({ type: "user" });
      s.linux.uidMappings = [{ containerID: 0, hostID: 100000, size: 65536 }];
      s.linux.gidMappings = [{ containerID: 0, hostID: 100000, size: 65536 }];
      idmapped(s, 100000);
    }), `idmapns${bundles}`]);
    expect([r.code, r.stdout, r.stderr, onDisk()]).toEqual([0, "0:0\n0:0\n", "", "1000:1000"]);
    // Control: the same folder bound plainly shows its owners as they are.
    r = oci(a, ["run", "--bundle", bundle(a, (s) => (probe(s), s.mounts.push({ destination: "/data", type: "bind", source: src, options: ["rbind"] }))), `plain${bundles}`]);
    expect([r.code, r.stdout, onDisk()]).toEqual([0, "1000:1000\n0:0\n", "0:0"]);
    // Both maps, and only on a bind.
    const half = bundle(a, (s) => s.mounts.push({ destination: "/data", type: "bind", source: src, options: ["idmap"], uidMappings: map(1000, 0) }));
    expect(oci(a, ["create", "--bundle", half, "half"]).stderr).toContain("gidMappings: an id-mapped mount needs both uidMappings and gidMappings");
  });
});

/** Host mounts the propagation tests make: removed again, whatever happens. */
function hostMount(args: string[]): void {
  const r = spawnSync(["mount", ...args], { stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`mount ${args.join(" ")}: ${r.stderr}`);
}
const isMountPoint = (path: string) => readFileSync("/proc/self/mountinfo", "utf8").split("\n").some((l) => l.split(" ")[4] === path);

describe("mount propagation", () => {
  const forEachActorAsRoot = (name: string, fn: (a: Actor) => Promise<void>) =>
    forEachActor(name, fn, 60_000, isRoot ? null : "the host mounts this test makes need root");

  forEachActorAsRoot("a bind with rslave sees a host mount made after create (control: rprivate does not); rshared reaches the host only for root", async (a) => {
    const src = join(a.area, `shared${bundles}`);
    for (const d of ["sub", "fromc", "fromc2"]) spawnSync(["mkdir", "-p", join(src, d)]);
    spawnSync(["chown", "-R", `${a.uid}:${a.gid}`, src]);
    const id = `prop${bundles}`;
    hostMount(["--bind", src, src]);
    try {
      hostMount(["--make-shared", src]);
      const b = bundle(a, (s) => {
        s.root.readonly = false;
        for (const set of ["bounding", "effective", "permitted"]) s.process.capabilities[set].push("CAP_SYS_ADMIN");
        s.mounts.push(
          { destination: "/slave", type: "bind", source: src, options: ["rbind", "rslave"] },
          { destination: "/private", type: "bind", source: src, options: ["rbind", "rprivate"] },
          { destination: "/shared", type: "bind", source: src, options: ["rbind", "rshared"] },
        );
        s.process.args = ["sh", "-c", "{ ls /slave/sub; echo --; ls /private/sub; } > /slave/result; mount -t tmpfs none /shared/fromc && mount -t tmpfs none /slave/fromc2 && echo mounted >> /slave/result; exec sleep 1000"];
      });
      expect(oci(a, ["create", "--bundle", b, id]).code).toBe(0);
      // After the container's binds exist: a mount on the host, below the bound folder.
      hostMount(["-t", "tmpfs", "none", join(src, "sub")]);
      writeFileSync(join(src, "sub", "marker"), "");
      expect(oci(a, ["start", id]).code).toBe(0);
      expect(await waitFor(() => existsSync(join(src, "result")) && readFileSync(join(src, "result"), "utf8").includes("mounted"), 10_000)).toBe(true);
      expect(readFileSync(join(src, "result"), "utf8")).toBe("marker\n--\nmounted\n");
      // The container's own mounts: through the rshared bind to the host (root, no user namespace),
      // never through the rslave one. A rootless container's copies of the host's mounts are slaves
      // (mount_namespaces(7)): even rshared reaches nothing; the root case is the positive control.
      expect([isMountPoint(join(src, "fromc")), isMountPoint(join(src, "fromc2"))]).toEqual([a.name === "root", false]);
    } finally {
      oci(a, ["delete", "--force", id]);
      for (const d of ["fromc", "sub", ""]) spawnSync(["umount", "-l", join(src, d)]);
    }
  });

  forEachActorAsRoot("rootfsPropagation rslave: the root follows host mounts below the rootfs (control: the default, private, does not)", async (a) => {
    const sees = async (propagation: string | null) => {
      let rootfs = "";
      const evidence = join(a.area, `evidence${bundles + 1}`);
      spawnSync(["mkdir", "-p", evidence]);
      spawnSync(["chown", `${a.uid}:${a.gid}`, evidence]);
      const b = bundle(a, (s) => {
        rootfs = join(a.area, `bundle${bundles}`, "rootfs");
        if (propagation) s.linux.rootfsPropagation = propagation;
        s.mounts.push({ destination: "/home", type: "bind", source: evidence, options: ["rbind", "rw"] });
        s.process.args = ["sh", "-c", "{ ls /data; echo end; } > /home/out"];
      });
      const id = `rootprop${bundles}`;
      hostMount(["--bind", rootfs, rootfs]);
      try {
        hostMount(["--make-shared", rootfs]);
        expect(oci(a, ["create", "--bundle", b, id]).code).toBe(0);
        // After create: a mount on the host below the rootfs folder.
        hostMount(["-t", "tmpfs", "none", join(rootfs, "data")]);
        writeFileSync(join(rootfs, "data", "from-host"), "");
        expect(oci(a, ["start", id]).code).toBe(0);
        const out = join(evidence, "out");
        expect(await waitFor(() => existsSync(out) && readFileSync(out, "utf8").endsWith("end\n"), 10_000)).toBe(true);
        return readFileSync(out, "utf8");
      } finally {
        oci(a, ["delete", "--force", id]);
        for (const d of ["data", ""]) spawnSync(["umount", "-l", join(rootfs, d)]);
      }
    };
    expect(await sees("rslave")).toBe("from-host\nend\n");
    expect(await sees(null)).toBe("end\n");
  });
});

describe("hooks, locking, disambiguation", () => {
  forEachActor("createRuntime, poststart and poststop hooks get the state on stdin", (a) => {
    const log = join(a.area, `hooks${bundles}.log`);
    const hook = (name: string) => ({ path: "/bin/sh", args: ["sh", "-c", `{ echo ${name}; cat; echo; } >> ${log}`] });
    const b = bundle(a, (s) => {
      s.process.args = ["true"];
      s.hooks = { createRuntime: [hook("createRuntime")], poststart: [hook("poststart")], poststop: [hook("poststop")] };
    });
    expect(oci(a, ["run", "--bundle", b, "hooked"]).code).toBe(0);
    const lines = readFileSync(log, "utf8").trim().split("\n");
    expect(lines.filter((_, i) => i % 2 === 0)).toEqual(["createRuntime", "poststart", "poststop"]);
    const states = lines.filter((_, i) => i % 2 === 1).map((l) => JSON.parse(l));
    expect(states.map((s) => [s.id, s.status])).toEqual([["hooked", "creating"], ["hooked", "running"], ["hooked", "stopped"]]);
    expect(states[0].pid).toBeGreaterThan(0);
  });

  forEachActor("two creates of one ID at once: exactly one wins", async (a) => {
    const b = bundle(a);
    const run = () => spawn(command(bin, a, ["--root", join(a.area, "state"), "create", "--bundle", b, "race"]), { env: { PATH }, stdout: "ignore", stderr: "pipe" });
    const [p1, p2] = [run(), run()];
    const codes = (await Promise.all([p1.exited, p2.exited])).sort();
    expect(codes).toEqual([0, 1]);
    expect(oci(a, ["delete", "--force", "race"]).code).toBe(0);
  });

  test("which command lines are OCI calls", () => {
    const dir = mkdtempSync(join(top, "cwd-"));
    const no = mkdtempSync(join(top, "cwd-"));
    writeFileSync(join(dir, "config.json"), '{"ociVersion": "1.0.2"}');
    expect(isOciCommandLine(["--root", "/x", "run", "id"], no)).toBe(true);
    expect(isOciCommandLine(["run", "--bundle", "/b", "id"], no)).toBe(true);
    expect(isOciCommandLine(["run", "-d", "id"], no)).toBe(true);
    expect(isOciCommandLine(["run", "id"], dir)).toBe(true);
    expect(isOciCommandLine(["create", "id"], no)).toBe(true);
    expect(isOciCommandLine(["state", "id"], no)).toBe(true);
    // nsrun's own boxes
    expect(isOciCommandLine(["run", "id"], no)).toBe(false); // no config.json here
    expect(isOciCommandLine(["run", "--", "sh"], dir)).toBe(false);
    expect(isOciCommandLine(["run", "--config", "box.toml"], dir)).toBe(false);
    expect(isOciCommandLine(["run", "echo", "hi"], dir)).toBe(false);
    expect(isOciCommandLine(["run"], dir)).toBe(false);
    expect(isOciCommandLine(["--config", "box.toml"], dir)).toBe(false);
    expect(isOciCommandLine(["ns", "1"], dir)).toBe(false);
    // OCI's run flags count only before the box's command
    expect(isOciCommandLine(["run", "--rootfs", "/r", "ls", "-d", "/etc"], no)).toBe(false);
    expect(isOciCommandLine(["run", "-t", "ls", "--pid-file"], no)).toBe(false);
    expect(isOciCommandLine(["run", "--pid-file", "/p", "-d", "id"], no)).toBe(true);
  });

  forEachActor("`nsrun run ID` in a bundle runs the bundle; `nsrun run -- CMD` there is still a box", (a) => {
    const b = bundle(a, (s) => (s.process.args = ["echo", "from-bundle"]));
    expect(oci(a, ["run", "inplace"], { cwd: b }).stdout).toBe("from-bundle\n");
    const box = spawnSync(command(bin, a, ["run", "--", "/bin/echo", "from-box"]), { cwd: b, env: { PATH }, stdout: "pipe", stderr: "pipe" });
    expect([box.exitCode, box.stdout.toString()]).toEqual([0, "from-box\n"]);
  });

  test("features and spec", () => {
    const a = actors[0];
    const f = JSON.parse(oci(a, ["features"]).stdout);
    expect(f).toMatchObject({ ociVersionMin: "1.0.0", linux: { cgroup: { systemd: false } } });
    expect(f.hooks).toEqual(["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"]);
    expect(f.mountOptions).toEqual(expect.arrayContaining(["rshared", "rslave", "rprivate", "runbindable", "idmap", "ridmap"]));
    expect(f.linux.mountExtensions).toEqual({ idmap: { enabled: true } });
    const dir = mkdtempSync(join(top, "spec-"));
    chmodSync(dir, 0o777);
    expect(oci(a, ["spec", "--bundle", dir]).code).toBe(0);
    expect(oci(a, ["spec", "--bundle", dir]).stderr).toContain("exists already");
    editBundle(dir, (s) => expect(s.ociVersion).toBe("1.0.2"));
  });
});

describe("linux.cgroupsPath (planning, a fake host)", () => {
  const root = { uid: 0, gid: 0, hostRoot: true };
  const own = "/user.slice/user-1000.slice/session-3.scope";
  const v2 = { v2: { mount: "/nonexistent/v2", own, controllers: ["memory", "pids"], delegated: [] }, v1: {} };
  const v1 = { v2: null, v1: { memory: { mount: "/nonexistent/memory", own } } };
  const leafOf = (host: typeof v2 | typeof v1, path: string | undefined) => planOciCgroup({ memory: { limit: 1 << 26 } }, path, "c1", root, host as never)?.procs;

  test("cgroup v2: a relative path is below the parent of nsrun's cgroup (which has processes), as with runc; an absolute one from the root", () => {
    expect(leafOf(v2, undefined)).toEqual(["/nonexistent/v2/user.slice/user-1000.slice/nsrun/c1/cgroup.procs"]);
    expect(leafOf(v2, "pods/c1")).toEqual(["/nonexistent/v2/user.slice/user-1000.slice/pods/c1/cgroup.procs"]);
    expect(leafOf(v2, "/libpod_parent/libpod-c1")).toEqual(["/nonexistent/v2/libpod_parent/libpod-c1/cgroup.procs"]);
  });

  test("cgroup v1 (no internal-process rule): a relative path is below nsrun's own cgroup (control for the v2 rule)", () => {
    expect(leafOf(v1, undefined)).toEqual([`/nonexistent/memory${own}/nsrun/c1/cgroup.procs`]);
    expect(leafOf(v1, "/libpod_parent/libpod-c1")).toEqual(["/nonexistent/memory/libpod_parent/libpod-c1/cgroup.procs"]);
  });
});
