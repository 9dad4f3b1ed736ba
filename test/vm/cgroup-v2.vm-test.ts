// [limits] on a real cgroup v2 host, as root and as an ordinary user. Only inside the test VM
// (`bun run test:vm`, which sets NSRUN_VM=1): these tests rearrange the machine's cgroup tree and
// turn swap on and off. The file name does not match bun test's patterns, so a plain `bun test`
// never picks it up.
//
// Where nsrun runs matters on cgroup v2, so every box here is started inside a cgroup laid out as
// systemd would (cgroups.ts): root in a scope of its own, the ordinary user in a delegated
// user@UID.service, or in a login session it cannot write. Each test then checks that nothing is
// left below the cgroup it started nsrun in. Every limit is shown against a control: the same box
// with a higher limit, or without it.
import { afterAll, beforeEach, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, rmdirSync } from "node:fs";
import { join } from "node:path";
import { type Actor, command, processesWith, type Result, setupTestArea, waitFor, writeConfig } from "../helpers";
import { makeBundle } from "../../fixtures/oci/bundle";
import { ALL_CONTROLLERS, CGROUP_ROOT, cgroupOf, childCgroups, delegate, inCgroup, makeCgroup, members, removeCgroupTree } from "./cgroups";

const inVm = process.env.NSRUN_VM === "1";
if (!inVm) console.warn("skipped: cgroup v2 VM tests: they run only inside the test VM (bun run test:vm)");
const area = inVm ? setupTestArea() : null;
const made: string[] = [];
afterAll(() => {
  for (const dir of made.reverse()) removeCgroupTree(dir);
  area?.cleanup();
});
const PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const BOX_TIMEOUT_MS = 300_000;
const ALLOCATE_200M = "exec dd if=/dev/zero of=/dev/null bs=200M count=1 2>/dev/null";

/** A cgroup made for these tests, removed at the end. */
function cgroup(path: string, controllers = ALL_CONTROLLERS): string {
  const dir = makeCgroup(path, controllers);
  made.push(join(CGROUP_ROOT, path.split("/")[0]));
  return dir;
}

const actor = (name: Actor["name"]) => area?.actors.find((a) => a.name === name) as Actor;
const config = (a: Actor, name: string, toml: string) => writeConfig(a, name, `rootfs = "../rootfs"\n${toml}\n`);

let outputs = 0;
/**
 * nsrun as `a`, started as a member of the cgroup `dir`. Its output goes to files, not pipes: a
 * detached OCI container keeps nsrun's stdio, and a pipe would not reach its end while it runs.
 */
function nsrunIn(dir: string, a: Actor, args: string[]): Result {
  const [out, err] = [join(a.area, `out${++outputs}`), join(a.area, `err${outputs}`)];
  const r = Bun.spawnSync(inCgroup(dir, command(area?.bin ?? "", a, args)), { env: { PATH }, cwd: a.area, stdin: "ignore", stdout: Bun.file(out), stderr: Bun.file(err), timeout: BOX_TIMEOUT_MS });
  return { code: r.exitCode ?? 128 + 9, stdout: readFileSync(out, "utf8"), stderr: readFileSync(err, "utf8"), pid: r.pid };
}
const shIn = (dir: string, a: Actor, cfg: string, script: string) => nsrunIn(dir, a, ["run", "--config", cfg, "--", "/bin/sh", "-c", script]);

/**
 * A box that runs `script`, says "ready", then waits for its stdin to close. While it waits, the
 * test reads its cgroup: the folder of the box's PID 1, found by a marker in its command line.
 */
async function withRunningBox<T>(dir: string, a: Actor, cfg: string, script: string, inspect: (boxCgroup: string) => Promise<T> | T): Promise<{ result: T; code: number }> {
  const marker = `nsrun-vm-marker-${Date.now()}-${Math.random().toString(36).slice(2)}`;
  const args = ["run", "--config", cfg, "--", "/bin/sh", "-c", `${script}\necho ready\nread x\n: ${marker}`];
  const box = Bun.spawn(inCgroup(dir, command(area?.bin ?? "", a, args)), { env: { PATH }, cwd: a.area, stdin: "pipe", stdout: "pipe", stderr: "pipe" });
  try {
    const reader = box.stdout.getReader();
    let out = "";
    while (!out.includes("ready\n")) {
      const chunk = await reader.read();
      if (chunk.done) throw new Error(`the box ended before it was ready (exit ${await box.exited}): ${await new Response(box.stderr).text()}`);
      out += new TextDecoder().decode(chunk.value);
    }
    // The box's PID 1: in a PID namespace of its own, so its NSpid line ends in 1.
    const pid1 = processesWith(marker).find((pid) => /\s1$/.test(readFileSync(`/proc/${pid}/status`, "utf8").match(/^NSpid:(.*)$/m)?.[1].trim() ?? ""));
    if (!pid1) throw new Error("cannot find the box's PID 1");
    return { result: await inspect(cgroupOf(pid1)), code: await endBox(box) };
  } finally {
    await endBox(box);
  }
}

/** Let the box's `read` return, so that nsrun ends it and cleans up; SIGKILL only if that hangs. */
async function endBox(box: Bun.Subprocess<"pipe", "pipe", "pipe">): Promise<number> {
  box.stdin.end();
  const code = await Promise.race([box.exited, Bun.sleep(BOX_TIMEOUT_MS).then(() => null)]);
  if (code !== null) return code;
  box.kill("SIGKILL");
  return box.exited;
}

const cgroupValue = (dir: string, file: string) => readFileSync(join(dir, file), "utf8").trim();
const statValue = (dir: string, key: string) => Number(cgroupValue(dir, "cpu.stat").match(new RegExp(`^${key} (\\d+)`, "m"))?.[1]);

/** Where each actor runs its boxes: root in a scope of its own, the user in its delegated cgroup. */
function placeOf(a: Actor): string {
  if (a.name === "root") return cgroup("system.slice/nsrun-vm-root.scope");
  const dir = cgroup(`user.slice/user-${a.uid}.slice/user@${a.uid}.service`);
  delegate(dir, a.uid, a.gid);
  return dir;
}

const places = inVm ? [{ label: "root: in a scope of its own", a: actor("root") }, { label: "rootless: in a delegated cgroup (Delegate=yes)", a: actor("user") }] : [];

describe.each(places)("$label", ({ a }) => {
  const place = placeOf(a);
  // A fresh cgroup for each test, so that one that failed halfway leaves nothing to the next.
  beforeEach(() => {
    removeCgroupTree(place);
    placeOf(a);
  });
  /** Nothing nsrun made is left below the cgroup it ran in, and nsrun itself has left it. */
  const expectClean = () => {
    expect(childCgroups(place)).toEqual([]);
    expect(members(place)).toEqual([]);
  };

  test("memory: 48M OOM-kills a box that allocates 200M, exit 137 and a one-line reason (control: 512M lets it finish)", () => {
    const r = shIn(place, a, config(a, "mem48.toml", '[limits]\nmemory = "48M"'), ALLOCATE_200M);
    expect(r.code).toBe(137);
    expect(r.stderr).toContain("the box ran out of memory");
    expect(r.stderr).toContain("48M");
    const c = shIn(place, a, config(a, "mem512.toml", '[limits]\nmemory = "512M"'), ALLOCATE_200M);
    expect({ code: c.code, stderr: c.stderr }).toEqual({ code: 0, stderr: "" });
    expectClean();
  });

  // The guest's swap is a zram device (no disk): off except in this test, so that the other
  // memory tests see the usual kernel default of no swap.
  const swap = process.env.NSRUN_VM_SWAP;
  if (inVm && !swap) console.warn("skipped: memory_swap: the guest has no swap device (zram)");
  test.if(Boolean(swap))("memory_swap: with swap on, 0 keeps the box at its 48M (OOM), 512M lets it swap and finish", () => {
    const on = Bun.spawnSync(["swapon", swap ?? ""], { stderr: "pipe" });
    expect(on.stderr.toString()).toBe("");
    try {
      const r = shIn(place, a, config(a, "swap0.toml", '[limits]\nmemory = "48M"\nmemory_swap = "0"'), ALLOCATE_200M);
      expect(r.code).toBe(137);
      expect(r.stderr).toContain("the box ran out of memory");
      const c = shIn(place, a, config(a, "swap512.toml", '[limits]\nmemory = "48M"\nmemory_swap = "512M"'), ALLOCATE_200M);
      expect({ code: c.code, stderr: c.stderr }).toEqual({ code: 0, stderr: "" });
    } finally {
      Bun.spawnSync(["swapoff", swap ?? ""]);
    }
    expectClean();
  });

  test("pids: 16 caps the box's processes (control: 64 lets all 30 children start)", () => {
    // A shell that cannot fork gives up, so the forking is done by a shell of its own. The children
    // never end by themselves: the box's PID namespace ends them when its PID 1 exits.
    const script = 'sh -c "for i in \\$(seq 30); do sleep 1000 & done" 2>/dev/null; set -- /proc/[0-9]*; echo $#';
    const r = shIn(place, a, config(a, "pids16.toml", "[limits]\npids = 16"), script);
    expect(r.code).toBe(0);
    expect(Number(r.stdout.trim())).toBeGreaterThan(1);
    expect(Number(r.stdout.trim())).toBeLessThanOrEqual(16);
    const c = shIn(place, a, config(a, "pids64.toml", "[limits]\npids = 64"), script);
    expect(Number(c.stdout.trim())).toBe(31);
    expectClean();
  });

  test("cpu: 0.25 sets cpu.max and throttles a busy loop (control: 4 CPUs' worth never throttles one loop)", async () => {
    const busy = "while :; do :; done &";
    const limited = await withRunningBox(place, a, config(a, "cpu025.toml", "[limits]\ncpu = 0.25"), busy, async (dir) => {
      const throttled = await waitFor(() => statValue(dir, "nr_throttled") > 0, 120_000);
      return { max: cgroupValue(dir, "cpu.max"), throttled };
    });
    expect(limited).toEqual({ result: { max: "25000 100000", throttled: true }, code: 0 });
    // One busy process can use at most one CPU per period, far below a quota of four.
    const control = await withRunningBox(place, a, config(a, "cpu4.toml", "[limits]\ncpu = 4"), busy, async (dir) => {
      const ran = await waitFor(() => statValue(dir, "usage_usec") > 500_000, 120_000);
      return { max: cgroupValue(dir, "cpu.max"), ran, throttled: statValue(dir, "nr_throttled") };
    });
    expect(control).toEqual({ result: { max: "400000 100000", ran: true, throttled: 0 }, code: 0 });
    expectClean();
  });

  // The weights are relative shares: their effect shows only under contention, which a test could
  // judge only by timing. So these check what the kernel was given. io_weight also needs a disk
  // with an io scheduler or io.cost, and this guest has none: the kernel accepts the weight, and
  // that is all a diskless guest can show.
  test("cpu_weight and io_weight reach cpu.weight and io.weight (control: without them, 100 and no io controller)", async () => {
    const weighted = await withRunningBox(place, a, config(a, "weights.toml", "[limits]\ncpu_weight = 50\nio_weight = 200"), "true", (dir) => ({
      cpu: cgroupValue(dir, "cpu.weight"),
      io: cgroupValue(dir, "io.weight"),
    }));
    expect(weighted).toEqual({ result: { cpu: "50", io: "default 200" }, code: 0 });
    const plain = await withRunningBox(place, a, config(a, "cpu-only.toml", "[limits]\ncpu = 4"), "true", (dir) => ({
      cpu: cgroupValue(dir, "cpu.weight"),
      io: existsSync(join(dir, "io.weight")),
    }));
    expect(plain).toEqual({ result: { cpu: "100", io: false }, code: 0 });
    expectClean();
  });

  test("the box sees its cgroup as / (control: with [namespaces] cgroup = false it sees where it really is)", () => {
    const r = shIn(place, a, config(a, "cgns.toml", "[limits]\npids = 64"), "cat /proc/self/cgroup");
    expect({ code: r.code, stdout: r.stdout }).toEqual({ code: 0, stdout: "0::/\n" });
    const c = shIn(place, a, config(a, "no-cgns.toml", "[namespaces]\ncgroup = false\n[limits]\npids = 64"), "cat /proc/self/cgroup");
    expect(c.stdout).toStartWith(`0::${place.slice(CGROUP_ROOT.length)}/`);
    expectClean();
  });

  test("processes a box leaves behind are killed with its cgroup (control: without [limits] they outlive it)", () => {
    // Without a PID namespace nothing else ends the box's children when its command exits. The
    // child is a sleep whose (fractional) duration is unique: the marker that finds it.
    const marker = `1000.${Date.now()}${a.uid}`;
    const script = `sleep ${marker} >/dev/null 2>&1 & echo started`; // the output pipes must not wait for the sleep
    const control = shIn(place, a, config(a, "nopid.toml", "[namespaces]\npid = false"), script);
    const survivors = processesWith(marker);
    for (const pid of survivors) process.kill(pid, "SIGKILL");
    expect(control.stdout).toBe("started\n");
    expect(survivors.length).toBeGreaterThan(0);
    const r = shIn(place, a, config(a, "nopid-limits.toml", "[namespaces]\npid = false\n[limits]\npids = 64"), script);
    expect({ code: r.code, stdout: r.stdout }).toEqual({ code: 0, stdout: "started\n" });
    expect(processesWith(marker)).toEqual([]);
    expectClean();
  });

  // The OCI runtime's cgroup (core/oci/resources.ts): linux.resources become the container's own
  // cgroup, which outlives nsrun until `delete`. Its default cgroupsPath, nsrun/ID, is relative: as
  // with runc, below the parent of nsrun's cgroup (that one holds processes). So nsrun runs in a
  // scope below the actor's place, as a terminal's shell runs in a scope below user@UID.service.
  test("OCI linux.resources: memory 48M OOM-kills the container (137), memory.max and pids.max are set inside, delete removes its cgroup (control: 512M lets it finish)", () => {
    const state = join(a.area, "oci-state");
    const scope = join(place, "oci.scope");
    mkdirSync(scope);
    if (a.name === "user") delegate(scope, a.uid, a.gid);
    const ociRun = (name: string, memory: number, script: string, flags: string[] = []) => {
      const b = makeBundle(join(a.area, `oci-${name}`), (d) => {
        const r = Bun.spawnSync(command(area?.bin ?? "", a, ["--root", state, "spec", ...(a.name === "user" ? ["--rootless"] : []), "--bundle", d]), { env: { PATH }, stderr: "pipe" });
        if (r.exitCode !== 0) throw new Error(r.stderr.toString());
      }, a, (s) => {
        s.process.terminal = false;
        s.process.args = ["/bin/sh", "-c", script];
        s.linux.resources = { memory: { limit: memory }, pids: { limit: 40 } };
      });
      return nsrunIn(scope, a, ["--root", state, "run", ...flags, "--bundle", b, `vm-${name}`]);
    };
    const limits = ociRun("limits", 48 << 20, "cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max; cat /proc/self/cgroup");
    expect(limits).toMatchObject({ code: 0, stdout: `${48 << 20}\n40\n0::/\n`, stderr: "" });
    const oom = ociRun("oom", 48 << 20, ALLOCATE_200M);
    expect(oom.code).toBe(137);
    const control = ociRun("enough", 512 << 20, ALLOCATE_200M);
    expect({ code: control.code, stderr: control.stderr }).toEqual({ code: 0, stderr: "" });
    // exec joins the running container's cgroup and cgroup namespace. (A detached container keeps
    // the stdio nsrun had: files here, since a pipe would not end while it runs.)
    const detached = ociRun("exec", 48 << 20, "exec sleep 1000", ["-d"]);
    expect({ code: detached.code, stderr: detached.stderr }).toEqual({ code: 0, stderr: "" });
    const joined = nsrunIn(scope, a, ["--root", state, "exec", "vm-exec", "/bin/sh", "-c", "cat /proc/self/cgroup; grep -qx $$ /sys/fs/cgroup/cgroup.procs && echo member"]);
    expect({ code: joined.code, stdout: joined.stdout, stderr: joined.stderr }).toEqual({ code: 0, stdout: "0::/\nmember\n", stderr: "" });
    expect(nsrunIn(scope, a, ["--root", state, "delete", "--force", "vm-exec"]).code).toBe(0);
    // Each run deleted its container and the cgroups it made (nsrun/ too, once empty).
    expect(childCgroups(place)).toEqual(["oci.scope"]);
    expect(members(scope)).toEqual([]);
    rmdirSync(scope);
    expectClean();
  });

  test("nsrun not alone in its cgroup (a login shell beside it) cannot hand controllers down: exit 125 with a hint, nothing left", async () => {
    const neighbour = Bun.spawn(inCgroup(place, ["cat"]), { stdin: "pipe", stdout: "ignore" });
    try {
      expect(await waitFor(() => members(place).length === 1, 60_000)).toBe(true);
      const r = shIn(place, a, config(a, "crowded.toml", '[limits]\nmemory = "64M"'), "true");
      expect(r.code).toBe(125);
      expect(r.stderr).toMatch(/^nsrun: .*cgroup/);
      expect(r.stderr).toMatch(/alone|Delegate=yes|systemd-run/);
      expect(childCgroups(place)).toEqual([]);
      expect(members(place)).toEqual([neighbour.pid]);
    } finally {
      neighbour.stdin.end();
      await neighbour.exited;
    }
    expectClean();
  });
});

describe.if(inVm)("rootless: where the user's cgroup is not delegated", () => {
  const a = actor("user");
  test("a login session's cgroup: limits exit 125 with a hint naming Delegate=yes (control: delegated, the same box runs)", () => {
    const session = inVm ? cgroup(`user.slice/user-${a.uid}.slice/session-1.scope`) : "";
    const cfg = config(a, "session.toml", "[limits]\npids = 16");
    const r = shIn(session, a, cfg, "true");
    expect(r.code).toBe(125);
    expect(r.stderr).toContain("systemd-run --user --scope -p Delegate=yes");
    expect(r.stderr.trim().split("\n").length).toBeLessThanOrEqual(2);
    expect(childCgroups(session)).toEqual([]);
    const delegated = placeOf(a);
    expect(shIn(delegated, a, cfg, "true").code).toBe(0);
  });

  test("systemd's default delegation (cpu memory pids): io_weight exits 125 naming io (control: memory works)", () => {
    const dir = inVm ? cgroup(`vm-default.slice/user-${a.uid}.slice/user@${a.uid}.service`, ["cpu", "memory", "pids"]) : "";
    delegate(dir, a.uid, a.gid);
    const r = shIn(dir, a, config(a, "io.toml", "[limits]\nio_weight = 200"), "true");
    expect(r.code).toBe(125);
    expect(r.stderr).toMatch(/limits: .*\bio\b/);
    const c = shIn(dir, a, config(a, "mem-default.toml", '[limits]\nmemory = "64M"'), "true");
    expect({ code: c.code, stderr: c.stderr }).toEqual({ code: 0, stderr: "" });
    expect(childCgroups(dir)).toEqual([]);
  });
});

describe.if(inVm)("rootless: nsrun doctor tells the delegated user from the one without delegation", () => {
  const a = actor("user");
  type Check = { id: string; status: string; summary: string; fix?: string };
  const doctorIn = (dir: string) => {
    const r = nsrunIn(dir, a, ["doctor", "--json"]);
    const checks = JSON.parse(r.stdout) as Check[];
    return checks.find((c) => c.id === "cgroup");
  };
  const allLimits = () => config(a, "all-limits.toml", '[limits]\nmemory = "64M"\npids = 64\ncpu = 1\ncpu_weight = 50\nio_weight = 50');

  // Each verdict is checked against a real box with every limit, started from the same cgroup.
  test("delegated: the cgroup check is ok, and a box with every limit runs there", () => {
    const dir = placeOf(a);
    const check = doctorIn(dir);
    const box = shIn(dir, a, allLimits(), "true");
    expect({ doctor: check?.status, summary: check?.summary, box: box.code, stderr: box.stderr }).toMatchObject({ doctor: "ok", box: 0, stderr: "" });
    expect(check?.summary).toContain("memory pids cpu io");
  });

  test("not delegated: the cgroup check warns, with a fix naming Delegate=yes, and a box with limits is refused there", () => {
    const session = inVm ? cgroup(`user.slice/user-${a.uid}.slice/session-2.scope`) : "";
    const check = doctorIn(session);
    const box = shIn(session, a, allLimits(), "true");
    expect({ doctor: check?.status, summary: check?.summary, box: box.code }).toMatchObject({ doctor: "warn", box: 125 });
    expect(check?.fix).toContain("Delegate=yes");
  });
});
