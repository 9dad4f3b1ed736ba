// nsrun as an OCI runtime: the lifecycle create -> start -> exec -> kill -> delete with real bundles,
// as root and as the ordinary user nsrun-test (setpriv), every error path of each command, the
// security settings of config.json with positive controls, hooks, locking, and how `run` tells an
// OCI call from a box. Each test uses its own container IDs in its own --root folder.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawn, spawnSync } from "bun";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { isOciCommandLine as isOciLine } from "../core/oci/argv";
import { ownArgs } from "../cmd/args";

/** As cmd/main.ts asks. */
const isOciCommandLine = (argv: string[], cwd: string) => isOciLine(argv, cwd, ownArgs);
import { installNsrun, editBundle, makeBundle, type Spec } from "../fixtures/oci/bundle";
import { command, TEST_USER, waitFor } from "./helpers";

const PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
let top = "";
let bin = "";
const isRoot = (process.getuid?.() ?? 0) === 0;

interface Actor {
  name: "root" | "user";
  uid: number;
  gid: number;
  area: string;
}
const actors: Actor[] = [];

function idOf(flag: string): number {
  return Number(spawnSync(["id", flag, TEST_USER], { stdout: "pipe" }).stdout.toString().trim());
}

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
  const out = join(top, `out${++calls}`);
  const err = join(top, `err${calls}`);
  const r = spawnSync(command(bin, a as never, ["--root", join(a.area, "state"), ...args]), {
    env: { PATH },
    cwd: opts.cwd ?? a.area,
    stdin: "ignore",
    stdout: Bun.file(out),
    stderr: Bun.file(err),
    timeout: 30_000,
  });
  const read = (f: string) => (existsSync(f) ? readFileSync(f, "utf8") : "");
  return { code: r.exitCode ?? 128, stdout: read(out), stderr: read(err) };
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

const forEachActor = (name: string, fn: (a: Actor) => void | Promise<void>, timeout = 60_000) => {
  test.each(["root", "user"] as const)(`${name} (%s)`, async (who) => {
    const a = actors.find((x) => x.name === who);
    if (!a) return void console.warn(`skipped: ${name} (${who}): that actor is not available here (see above)`);
    await fn(a);
  }, timeout);
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
      [["pause", "errs"], /pause: not supported by nsrun/],
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
      [(s) => (s.hooks = { createContainer: [{ path: "/bin/true" }] }), "hooks.createContainer: hooks that run inside the container's namespaces are not supported"],
      [(s) => (s.linux.sysctl = { "kernel.panic": "1" }), "linux.sysctl.kernel.panic: is not a sysctl of a namespace the container has"],
      [(s) => (s.linux.namespaces = s.linux.namespaces.filter((n: { type: string }) => n.type !== "mount")), "linux.namespaces: nsrun needs a new mount namespace"],
      [(s) => (s.process.capabilities.bounding = ["CAP_NOPE"]), 'process.capabilities.bounding[0]: unknown capability "CAP_NOPE"'],
      [(s) => (s.mounts[0].options = ["rshared"]), 'mounts[0].options[0]: "rshared": nsrun\'s mounts are private'],
      [(s) => (s.process.rlimits = [{ type: "RLIMIT_FOO", hard: 1, soft: 1 }]), 'process.rlimits[0].type: unknown rlimit "RLIMIT_FOO"'],
      [(s) => (s.linux.rootfsPropagation = "rslave"), 'linux.rootfsPropagation: "rslave" is not supported'],
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
    const run = () => spawn(command(bin, a as never, ["--root", join(a.area, "state"), "create", "--bundle", b, "race"]), { env: { PATH }, stdout: "ignore", stderr: "pipe" });
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
    const box = spawnSync(command(bin, a as never, ["run", "--", "/bin/echo", "from-box"]), { cwd: b, env: { PATH }, stdout: "pipe", stderr: "pipe" });
    expect([box.exitCode, box.stdout.toString()]).toEqual([0, "from-box\n"]);
  });

  test("features and spec", () => {
    const a = actors[0];
    const f = JSON.parse(oci(a, ["features"]).stdout);
    expect(f).toMatchObject({ ociVersionMin: "1.0.0", linux: { cgroup: { systemd: false } } });
    expect(f.hooks).toContain("poststop");
    const dir = mkdtempSync(join(top, "spec-"));
    chmodSync(dir, 0o777);
    expect(oci(a, ["spec", "--bundle", dir]).code).toBe(0);
    expect(oci(a, ["spec", "--bundle", dir]).stderr).toContain("exists already");
    editBundle(dir, (s) => expect(s.ociVersion).toBe("1.0.2"));
  });
});
