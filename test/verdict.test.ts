// Running untrusted programs: [limits] cpu_time and wall_time, and the verdict (--report FILE, and
// runBox's `verdict`). Real boxes, as root and as the ordinary user, as flags and as config keys;
// each limit with a control that stays inside it. No timing assertions: ranges are generous, and a
// limit's effect is shown by what would otherwise happen (a sleep of 60s that ends early).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "bun";
import { chmodSync, copyFileSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type CgroupHost, planCgroup } from "../core/stages/cgroup";
import { parseDuration, REASONS, signalName, VERDICT_FIELDS, verdictJson, type Verdict } from "../core/verdict";
import { type Actor, command, processesWith, REPO, run, setupTestArea, start, waitFor, writeConfig } from "./helpers";
import { CASES } from "./verdict-boxes";

const area = setupTestArea();
afterAll(() => area.cleanup());
const nsrun = (actor: Actor, args: string[]) => run(area.bin, actor, args, { timeoutMs: 60_000 });
const rootfsOf = (a: Actor) => join(a.area, "rootfs");
const MiB = 1024 * 1024;

// A program that really faults (a signal the kernel forces, which even a PID 1 cannot ignore):
// freestanding and static, so it runs in the busybox rootfs.
beforeAll(() => {
  const src = join(area.bin, "..", "segv.c");
  writeFileSync(src, "void _start(void) { *(volatile int *)0 = 1; for (;;) {} }\n");
  const out = join(area.bin, "..", "segv");
  const r = spawnSync(["gcc", "-O0", "-static", "-nostdlib", "-fno-stack-protector", "-o", out, src], { stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`gcc: ${r.stderr}`);
  for (const a of area.actors) {
    copyFileSync(out, join(rootfsOf(a), "bin/segv"));
    chmodSync(join(rootfsOf(a), "bin/segv"), 0o755);
    if (a.name === "user") spawnSync(["chown", `${a.uid}:${a.gid}`, join(rootfsOf(a), "bin/segv")]);
  }
});

/** A folder of the actor's own for reports. */
function reportDir(a: Actor, name: string): string {
  const dir = join(a.area, "reports", name);
  mkdirSync(dir, { recursive: true });
  if (a.name === "user") spawnSync(["chown", "-R", `${a.uid}:${a.gid}`, join(a.area, "reports")]);
  return dir;
}

/** Run a box with --report; returns nsrun's result and the verdict it wrote. */
function box(a: Actor, flags: string[], args: string[], name = "v.json"): { code: number; stderr: string; verdict: Verdict; dir: string; pid: number } {
  const dir = reportDir(a, `${Date.now()}-${Math.random().toString(36).slice(2, 8)}`);
  const file = join(dir, name);
  const r = nsrun(a, ["run", "--rootfs", rootfsOf(a), "--report", file, ...flags, "--", ...args]);
  expect(existsSync(file)).toBe(true);
  const verdict = JSON.parse(readFileSync(file, "utf8")) as Verdict;
  expect(Object.keys(verdict)).toEqual([...VERDICT_FIELDS]);
  return { code: r.code, stderr: r.stderr, verdict, dir, pid: r.pid };
}

const busy = ["/bin/sh", "-c", "while :; do :; done"];

describe("the definition (no privileges)", () => {
  test("durations: ms, s, m, h, bare seconds; nothing else, nothing below 1ms or above a week", () => {
    expect(parseDuration("500ms")).toBe(500);
    expect(parseDuration("1.5s")).toBe(1500);
    expect(parseDuration("2m")).toBe(120_000);
    expect(parseDuration("1h")).toBe(3_600_000);
    expect(parseDuration("2")).toBe(2000);
    expect(parseDuration(0.25)).toBe(250);
    for (const bad of ["", "fast", "1x", "-1s", "0", "0ms", "1e3s", "8d", "169h", " s"]) expect(parseDuration(bad)).toBeNull();
    expect(parseDuration(-1)).toBeNull();
    expect(parseDuration(Number.NaN)).toBeNull();
  });

  test("the C writer (verdict.h) writes exactly core/verdict.ts's fields, in order, and its reasons and signal names", () => {
    const c = readFileSync(join(REPO, "ffi/executor/verdict.h"), "utf8");
    const written = [...c.matchAll(/field\(&t, "(\w+)"\)/g)].map((m) => m[1]);
    expect(written).toEqual([...VERDICT_FIELDS]);
    const decide = c.slice(c.indexOf("static const char *verdict_reason"), c.indexOf("/** Write the verdict"));
    const reasons = new Set([...decide.matchAll(/"([a-z-]+)"/g)].map((m) => m[1]));
    for (const r of reasons) expect(REASONS as readonly string[]).toContain(r);
    for (const r of REASONS.filter((x) => x !== "setup-failed")) expect(reasons.has(r)).toBe(true);
    const names = [...(c.match(/SIGNAL_NAMES\[\] = \{([^}]*)\}/)?.[1] ?? "").matchAll(/"(SIG\w+)"/g)].map((m) => m[1]);
    expect(names.length).toBe(31);
    names.forEach((n, i) => expect(signalName(i + 1)).toBe(n));
  });

  test("cpu_time alone: a cgroup only where one can be had (v2 writable, v1 for root), else none (rusage)", () => {
    const v2 = (writable: boolean): CgroupHost => ({ v2: { mount: "/cg", own: "/u/me", controllers: ["cpu", "memory"], delegated: [], writable }, v1: {} });
    const v1: CgroupHost = { v2: null, v1: { cpuacct: { mount: "/v1/cpuacct", own: "/" }, memory: { mount: "/v1/memory", own: "/" } } };
    const a = planCgroup({ cpuAccounting: true }, v2(true), "nsrun-1", null, true);
    expect(a?.stats?.cpu).toEqual({ version: 2, path: "/cg/u/me/nsrun-1/box/cpu.stat" });
    expect(a?.writes.some(([f]) => f.endsWith("subtree_control"))).toBe(false); // no controller is needed for cpu.stat
    expect(planCgroup({ cpuAccounting: true }, v2(false), "nsrun-1", null, true)).toBeNull();
    expect(planCgroup({ cpuAccounting: true }, v1, "nsrun-1", null, false)?.stats?.cpu).toEqual({ version: 1, path: "/v1/cpuacct/nsrun-1" });
    expect(planCgroup({ cpuAccounting: true }, v1, "nsrun-1", null, true)).toBeNull(); // rootless on v1: RLIMIT_CPU and rusage
    // With other limits on v1, cpuacct joins the box's cgroups.
    const both = planCgroup({ cpuAccounting: true, memory: 64 * MiB }, v1, "nsrun-1", "64M", false);
    expect(both?.dirs).toEqual(["/v1/memory/nsrun-1", "/v1/cpuacct/nsrun-1"]);
    expect(both?.stats).toEqual({ cpu: { version: 1, path: "/v1/cpuacct/nsrun-1" }, memoryPeak: "/v1/memory/nsrun-1/memory.max_usage_in_bytes", pidsPeak: null, pidsEvents: null });
  });

  test("the JSON layout: one line, the fields in order", () => {
    const v = Object.fromEntries(VERDICT_FIELDS.map((k) => [k, null])) as unknown as Verdict;
    const text = verdictJson(v);
    expect(text.endsWith("}\n")).toBe(true);
    expect(Object.keys(JSON.parse(text))).toEqual([...VERDICT_FIELDS]);
  });
});

describe.each(area.actors)("limits and the verdict, for $name", (actor) => {
  test("--cpu-time 1s ends a busy loop with reason cpu-time and about 1000ms of CPU (control: a short computation exits)", () => {
    const r = box(actor, ["--cpu-time", "1s"], busy);
    expect(r.verdict.reason).toBe("cpu-time");
    expect(r.verdict.cpu_ms).toBeGreaterThanOrEqual(950);
    expect(r.verdict.cpu_ms).toBeLessThan(2600); // RLIMIT_CPU's hard limit (2s) ends it even if nsrun were late
    expect(r.verdict.user_ms + r.verdict.system_ms).toBeGreaterThanOrEqual(r.verdict.cpu_ms - 1);
    expect(r.verdict.exit_code).toBeNull();
    expect(r.verdict.cpu_time_limit_ms).toBe(1000);
    expect(r.code).toBe(137);
    // The cgroup counts where the box has one: root on this host (cpuacct), a delegated cgroup v2.
    expect(["cgroup", "rusage"]).toContain(r.verdict.cpu_source as string);
    const control = box(actor, ["--cpu-time", "10s"], ["/bin/sh", "-c", "i=0; while [ $i -lt 2000 ]; do i=$((i+1)); done; exit 0"]);
    expect(control.verdict).toMatchObject({ reason: "exited", exit_code: 0, killed_by_nsrun: false });
    expect(control.code).toBe(0);
  });

  test("CPU time of every process counts: two busy children under --cpu-time 1s", () => {
    const r = box(actor, ["--cpu-time", "1s"], ["/bin/sh", "-c", "while :; do :; done & while :; do :; done & wait"]);
    expect(r.verdict.reason).toBe("cpu-time");
    expect(r.verdict.cpu_ms).toBeGreaterThanOrEqual(950);
  });

  test("--wall-time 1s ends a sleep of 60s with reason wall-time (control: a short sleep exits)", () => {
    const r = box(actor, ["--wall-time", "1s"], ["/bin/sleep", "60"]);
    expect(r.verdict).toMatchObject({ reason: "wall-time", killed_by_nsrun: true, signal: "SIGKILL", exit_code: null, wall_time_limit_ms: 1000 });
    expect(r.verdict.wall_ms).toBeGreaterThanOrEqual(1000);
    expect(r.verdict.wall_ms).toBeLessThan(50_000); // the sleep would have taken 60s
    expect(r.verdict.cpu_ms).toBeLessThan(1000); // sleeping uses none
    expect(r.stderr).toContain("limits.wall_time");
    const control = box(actor, ["--wall-time", "30s"], ["/bin/sleep", "0.1"]);
    expect(control.verdict).toMatchObject({ reason: "exited", exit_code: 0, killed_by_nsrun: false });
    expect(control.verdict.wall_ms).toBeGreaterThanOrEqual(100);
  });

  test("a chain of 100 processes, each the parent of the next, is killed whole at wall_time (and without a PID namespace too)", async () => {
    const marker = `verdict-chain-${actor.name}-${Date.now()}`;
    const chain = `f() { if [ $1 -gt 0 ]; then f $(($1 - 1)) & wait; else sleep 60; fi; }; f 100`; // every shell of the chain has the marker in its command line
    for (const config of ['rootfs = "../rootfs"\n', 'rootfs = "../rootfs"\n[namespaces]\npid = false\n']) {
      const file = writeConfig(actor, "chain.toml", config);
      const dir = reportDir(actor, `chain-${Date.now()}`);
      // The chain's output goes nowhere: a process left alive then holds none of nsrun's pipes, so
      // nsrun's own end is seen at once, and the look for leftovers below can fail.
      const r = nsrun(actor, ["run", "--config", file, "--report", join(dir, "v.json"), "--wall-time", "2s", "--", "/bin/sh", "-c", `exec >/dev/null 2>&1; ${chain}; : ${marker}`]);
      expect(r.code).toBe(137);
      expect(JSON.parse(readFileSync(join(dir, "v.json"), "utf8"))).toMatchObject({ reason: "wall-time", killed_by_nsrun: true });
      expect(await waitFor(() => processesWith(marker).length === 0, 10_000)).toBe(true);
    }
  });

  test("exit statuses: exited with the code, no signal", () => {
    for (const code of [0, 1, 3, 255]) {
      const r = box(actor, [], ["/bin/sh", "-c", `exit ${code}`]);
      expect(r.verdict).toMatchObject({ reason: "exited", exit_code: code, signal: null, killed_by_nsrun: false, error: null });
      expect(r.code).toBe(code);
    }
  });

  test("a SIGSEGV: signaled, SIGSEGV (control: the same box exiting)", () => {
    const r = box(actor, [], ["/bin/segv"]);
    expect(r.verdict).toMatchObject({ reason: "signaled", signal: "SIGSEGV", exit_code: null, killed_by_nsrun: false });
    expect(r.code).toBe(139);
    expect(box(actor, [], ["/bin/true"]).verdict).toMatchObject({ reason: "exited", signal: null });
  });

  test("a program that touches 60 MiB reports a peak near that (control: one that touches 1 MiB reports less)", () => {
    const r = box(actor, [], ["/bin/dd", "if=/dev/zero", "of=/dev/null", "bs=60M", "count=1"]);
    expect(r.verdict.reason).toBe("exited");
    expect(r.verdict.memory_peak_source).toBe("maxrss");
    expect(r.verdict.memory_peak_bytes).toBeGreaterThanOrEqual(60 * MiB);
    expect(r.verdict.memory_peak_bytes).toBeLessThan(90 * MiB);
    const small = box(actor, [], ["/bin/dd", "if=/dev/zero", "of=/dev/null", "bs=1M", "count=1"]);
    expect(small.verdict.memory_peak_bytes).toBeLessThan(60 * MiB);
  });

  test("the limits as config keys: [limits] cpu_time and wall_time (a number is seconds)", () => {
    const dir = reportDir(actor, `keys-${Date.now()}`);
    const config = writeConfig(actor, "time-limits.toml", 'rootfs = "../rootfs"\n[limits]\ncpu_time = "1s"\nwall_time = 30\n');
    const cpu = nsrun(actor, ["run", "--config", config, "--report", join(dir, "cpu.json"), "--", ...busy]);
    expect(cpu.code).toBe(137);
    const v = JSON.parse(readFileSync(join(dir, "cpu.json"), "utf8")) as Verdict;
    expect(v).toMatchObject({ reason: "cpu-time", cpu_time_limit_ms: 1000, wall_time_limit_ms: 30_000 });
    const wallConfig = writeConfig(actor, "wall-limit.toml", 'rootfs = "../rootfs"\n[limits]\nwall_time = "500ms"\n');
    nsrun(actor, ["run", "--config", wallConfig, "--report", join(dir, "wall.json"), "--", "/bin/sleep", "60"]);
    expect(JSON.parse(readFileSync(join(dir, "wall.json"), "utf8"))).toMatchObject({ reason: "wall-time", wall_time_limit_ms: 500 });
    // Control: the same config, a command inside its limits.
    nsrun(actor, ["run", "--config", config, "--report", join(dir, "ok.json"), "--", "/bin/true"]);
    expect(JSON.parse(readFileSync(join(dir, "ok.json"), "utf8"))).toMatchObject({ reason: "exited", exit_code: 0 });
  });

  test("the file-size limit is a reason: [limits] fsize ends a writer with file-size (control: a small write)", () => {
    // Not as PID 1 of a PID namespace, which the kernel spares SIGXFSZ (its write fails with EFBIG instead; docs/config.md).
    const config = writeConfig(actor, "fsize.toml", 'rootfs = "../rootfs"\n[namespaces]\npid = false\n[limits]\nfsize = 8192\n[[mounts]]\ntype = "tmpfs"\ntarget = "/tmp"\n');
    const dir = reportDir(actor, `fsize-${Date.now()}`);
    nsrun(actor, ["run", "--config", config, "--report", join(dir, "big.json"), "--", "/bin/dd", "if=/dev/zero", "of=/tmp/big", "bs=4096", "count=16"]);
    expect(JSON.parse(readFileSync(join(dir, "big.json"), "utf8"))).toMatchObject({ reason: "file-size", signal: "SIGXFSZ" });
    nsrun(actor, ["run", "--config", config, "--report", join(dir, "small.json"), "--", "/bin/dd", "if=/dev/zero", "of=/tmp/small", "bs=4096", "count=1"]);
    expect(JSON.parse(readFileSync(join(dir, "small.json"), "utf8"))).toMatchObject({ reason: "exited", exit_code: 0 });
  });

  test("a failed setup is reported: setup-failed, nsrun's exit status and error (a missing command, a bad flag value)", () => {
    const r = box(actor, [], ["/no-such-command"]);
    expect(r.code).toBe(127);
    expect(r.verdict).toMatchObject({ reason: "setup-failed", exit_code: 127, signal: null });
    expect(r.verdict.error).toContain("no-such-command");
    const bad = box(actor, ["--env", "NOEQUALS"], ["/bin/true"]);
    expect(bad.code).toBe(125);
    expect(bad.verdict).toMatchObject({ reason: "setup-failed", exit_code: 125 });
    expect(bad.verdict.error).toContain("--env");
  });

  test("invalid durations are refused (125) naming the flag or the key, and leave nothing behind", () => {
    for (const [flag, value] of [["--cpu-time", "fast"], ["--wall-time", "0"], ["--cpu-time", "-1s"], ["--wall-time", "9d"]]) {
      const dir = reportDir(actor, `bad-${flag.slice(2)}-${Date.now()}`);
      const r = nsrun(actor, ["run", "--rootfs", rootfsOf(actor), "--report", join(dir, "v.json"), flag, value, "--", "/bin/true"]);
      expect(r.code).toBe(125);
      expect(r.stderr).toContain(flag);
      expect(r.stderr).toContain(JSON.stringify(value));
      expect(r.stderr.trim().split("\n").length).toBeLessThanOrEqual(2);
      // The report says so, and nothing else is left in its folder (no temporary file).
      expect(readdirSync(dir)).toEqual(["v.json"]);
      expect(JSON.parse(readFileSync(join(dir, "v.json"), "utf8")).reason).toBe("setup-failed");
    }
    for (const [toml, key] of [['cpu_time = "1 second"', "limits.cpu_time"], ["wall_time = 0", "limits.wall_time"], ['wall_time = "2d"', "limits.wall_time"]]) {
      const config = writeConfig(actor, "bad-time.toml", `rootfs = "../rootfs"\n[limits]\n${toml}\n`);
      const r = nsrun(actor, ["run", "--config", config, "--", "/bin/true"]);
      expect(r.code).toBe(125);
      expect(r.stderr).toContain(key);
    }
  });

  test("the report is the caller's own, readable, and replaces an older report atomically (no temporary file left)", () => {
    const dir = reportDir(actor, `own-${Date.now()}`);
    const file = join(dir, "v.json");
    writeFileSync(file, "old");
    if (actor.name === "user") spawnSync(["chown", `${actor.uid}:${actor.gid}`, file]);
    const r = nsrun(actor, ["run", "--rootfs", rootfsOf(actor), "--report", file, "--", "/bin/true"]);
    expect(r.code).toBe(0);
    const st = statSync(file);
    expect(st.uid).toBe(actor.uid);
    expect(st.mode & 0o400).toBe(0o400);
    expect(JSON.parse(readFileSync(file, "utf8")).reason).toBe("exited");
    expect(readdirSync(dir)).toEqual(["v.json"]);
  });

  test("an unsafe report path is refused (125) before the box runs: an existing symlink, a folder (control: a plain path works)", () => {
    const dir = reportDir(actor, `unsafe-${Date.now()}`);
    const target = join(dir, "target");
    writeFileSync(target, "precious");
    symlinkSync(target, join(dir, "link.json"));
    mkdirSync(join(dir, "folder.json"));
    if (actor.name === "user") spawnSync(["chown", "-R", `${actor.uid}:${actor.gid}`, dir]);
    const marker = join(dir, "ran");
    for (const name of ["link.json", "folder.json"]) {
      const r = nsrun(actor, ["run", "--rootfs", rootfsOf(actor), "--bind", `${dir}:/out`, "--report", join(dir, name), "--", "/bin/sh", "-c", "touch /out/ran"]);
      expect(r.code).toBe(125);
      expect(r.stderr).toContain(name);
      expect(existsSync(marker)).toBe(false); // refused before the box ran
    }
    expect(readFileSync(target, "utf8")).toBe("precious");
    expect(lstatSync(join(dir, "link.json")).isSymbolicLink()).toBe(true);
    expect(readlinkSync(join(dir, "link.json"))).toBe(target);
    expect(readdirSync(dir).sort()).toEqual(["folder.json", "link.json", "target"]);
    const ok = nsrun(actor, ["run", "--rootfs", rootfsOf(actor), "--bind", `${dir}:/out`, "--report", join(dir, "plain.json"), "--", "/bin/sh", "-c", "touch /out/ran"]);
    expect(ok.code).toBe(0);
    expect(existsSync(marker)).toBe(true);
  });

  test("a symlink planted at the report's path while the box runs is replaced, never followed", async () => {
    const dir = reportDir(actor, `race-${Date.now()}`);
    const precious = join(dir, "precious");
    writeFileSync(precious, "precious");
    const file = join(dir, "v.json");
    const box = start(area.bin, actor, ["run", "--rootfs", rootfsOf(actor), "--bind", `${dir}:/out`, "--report", file, "--", "/bin/sh", "-c", "touch /out/started; while [ ! -e /out/go ]; do sleep 0.05; done"]);
    expect(await waitFor(() => existsSync(join(dir, "started")), 20_000)).toBe(true);
    symlinkSync(precious, file); // after nsrun's check: what a user who can write the folder could do
    writeFileSync(join(dir, "go"), "");
    expect(await box.exited).toBe(0);
    expect(readFileSync(precious, "utf8")).toBe("precious");
    expect(lstatSync(file).isFile()).toBe(true);
    expect(JSON.parse(readFileSync(file, "utf8")).reason).toBe("exited");
  });

  test(`a symlinked folder on the way: ${actor.name === "root" ? "root follows none (refused)" : "an ordinary user's own link is followed (control)"}`, () => {
    const dir = reportDir(actor, `via-${Date.now()}`);
    mkdirSync(join(dir, "real"));
    symlinkSync(join(dir, "real"), join(dir, "via"));
    if (actor.name === "user") spawnSync(["chown", "-R", "-h", `${actor.uid}:${actor.gid}`, dir]);
    const r = nsrun(actor, ["run", "--rootfs", rootfsOf(actor), "--report", join(dir, "via/v.json"), "--", "/bin/true"]);
    if (actor.name === "root") {
      expect(r.code).toBe(125);
      expect(r.stderr).toContain("ELOOP");
      expect(readdirSync(join(dir, "real"))).toEqual([]);
      // Control: the real path works for root.
      expect(nsrun(actor, ["run", "--rootfs", rootfsOf(actor), "--report", join(dir, "real/v.json"), "--", "/bin/true"]).code).toBe(0);
    } else {
      expect(r.code).toBe(0);
    }
    expect(readdirSync(join(dir, "real"))).toEqual(["v.json"]);
  });

  test("runBox gives the same verdicts as `nsrun run --report` (the same cases through both writers)", () => {
    const cli = CASES.map((c) => {
      const flags = [
        ...(c.limits?.cpu_time ? ["--cpu-time", String(c.limits.cpu_time)] : []),
        ...(c.limits?.wall_time ? ["--wall-time", String(c.limits.wall_time)] : []),
      ];
      return { name: c.name, verdict: box(actor, flags, c.args).verdict };
    });
    // runBox: in a Bun process of the actor's (this test's own is root's).
    const r = spawnSync(command(process.execPath, actor, [join(REPO, "test/verdict-boxes.ts"), rootfsOf(actor)]), { cwd: "/", stdout: "pipe", stderr: "pipe" });
    expect(r.stderr.toString()).toBe("");
    const api = r.stdout.toString().trim().split("\n").map((l) => JSON.parse(l) as { name: string; verdict: Verdict });
    expect(api.map((x) => x.name)).toEqual(CASES.map((c) => c.name));
    api.forEach((a, i) => {
      const c = cli[i];
      expect(Object.keys(a.verdict)).toEqual([...VERDICT_FIELDS]);
      const same = ["reason", "exit_code", "signal", "cpu_source", "killed_by_nsrun", "cpu_time_limit_ms", "wall_time_limit_ms", "oom_kills", "pids_peak", "error"] as const;
      for (const k of same) expect({ case: a.name, [k]: a.verdict[k] }).toEqual({ case: c.name, [k]: c.verdict[k] });
    });
  });
});

const root = area.actors.find((a) => a.name === "root");
describe.skipIf(!root)(`memory and pids limits as reasons (root: cgroup v1 here)${root ? "" : " (skipped: needs root)"}`, () => {
  const a = root as Actor;

  test("an allocator under -m 32M ends with memory, an OOM kill, the cgroup's peak (control: 8M fits)", () => {
    const r = box(a, ["-m", "32M"], ["/bin/dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"]);
    expect(r.verdict).toMatchObject({ reason: "memory", signal: "SIGKILL", memory_peak_source: "cgroup", killed_by_nsrun: false });
    expect(r.verdict.oom_kills).toBeGreaterThanOrEqual(1);
    expect(r.verdict.memory_peak_bytes).toBeLessThanOrEqual(32 * MiB);
    expect(r.verdict.memory_peak_bytes).toBeGreaterThan(16 * MiB);
    const control = box(a, ["-m", "32M"], ["/bin/dd", "if=/dev/zero", "of=/dev/null", "bs=8M", "count=1"]);
    expect(control.verdict).toMatchObject({ reason: "exited", exit_code: 0, oom_kills: 0, memory_peak_source: "cgroup" });
  });

  test("with a memory cgroup, 60 MiB touched reads as the cgroup's peak near 60 MiB", () => {
    const r = box(a, ["-m", "256M"], ["/bin/dd", "if=/dev/zero", "of=/dev/null", "bs=60M", "count=1"]);
    expect(r.verdict).toMatchObject({ reason: "exited", memory_peak_source: "cgroup" });
    expect(r.verdict.memory_peak_bytes).toBeGreaterThanOrEqual(60 * MiB);
    expect(r.verdict.memory_peak_bytes).toBeLessThan(120 * MiB);
  });

  test("the pids limit is a reason when it refused a fork and the box failed (control: within the limit)", () => {
    const script = "for i in 1 2 3 4 5 6 7 8; do sleep 5 & done; wait";
    const r = box(a, ["--pids", "4"], ["/bin/sh", "-c", `${script} || exit 1`]);
    expect(r.verdict.reason).toBe("pids");
    // pids.peak where the kernel keeps it (this host's v1 does), else null.
    if (r.verdict.pids_peak !== null) expect(r.verdict.pids_peak).toBeLessThanOrEqual(4);
    const control = box(a, ["--pids", "16"], ["/bin/sh", "-c", "sleep 0 & wait"]);
    expect(control.verdict).toMatchObject({ reason: "exited", exit_code: 0 });
    if (control.verdict.pids_peak !== null) expect(control.verdict.pids_peak).toBeGreaterThanOrEqual(1);
  });

  test("--cpu-time with a cgroup: measured in it, and the box's cgroups are gone once the report is there", () => {
    const r = box(a, ["--cpu-time", "500ms"], busy);
    expect(r.verdict).toMatchObject({ reason: "cpu-time", cpu_source: "cgroup" });
    const left = spawnSync(["find", "/sys/fs/cgroup", "-maxdepth", "8", "-type", "d", "-name", `nsrun-${r.pid}`], { stdout: "pipe" }).stdout.toString();
    expect(left).toBe("");
  });
});

describe("the recipe for untrusted code (docs/untrusted.md)", () => {
  test("the page shows fixtures/configs/untrusted.toml as it is", () => {
    const page = readFileSync(join(REPO, "docs/untrusted.md"), "utf8");
    expect(page).toContain(readFileSync(join(REPO, "fixtures/configs/untrusted.toml"), "utf8"));
  });

  test.skipIf(!root)(`it runs, and holds what it says: no network, read-only root, small noexec /tmp, no capabilities, seccomp, limits, a report${root ? "" : " (skipped: memory and pids need root on cgroup v1)"}`, () => {
    const a = root as Actor;
    const dir = reportDir(a, `recipe-${Date.now()}`);
    const probe = [
      "grep -c : /proc/net/dev", // interfaces: lo alone
      "touch /x 2>/dev/null && echo root-writable",
      "echo ok > /tmp/ok && cat /tmp/ok",
      "cp /bin/busybox /tmp/true 2>/dev/null; /tmp/true 2>/dev/null && echo tmp-exec",
      "grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status | tr -s '\t' ' '",
    ].join("; ");
    const r = nsrun(a, ["--config", join(a.area, "configs/untrusted.toml"), "--report", join(dir, "v.json"), "--", "/bin/sh", "-c", probe]);
    expect(r.stderr).toBe("");
    expect(r.stdout.split("\n").filter(Boolean)).toEqual(["1", "ok", "CapEff: 0000000000000000", "NoNewPrivs: 1", "Seccomp: 2"]);
    const v = JSON.parse(readFileSync(join(dir, "v.json"), "utf8")) as Verdict;
    expect(v).toMatchObject({ reason: "exited", exit_code: 0, cpu_source: "cgroup", memory_peak_source: "cgroup", cpu_time_limit_ms: 2000, wall_time_limit_ms: 10_000 });
    // Control: the same probe in a box without the recipe shows what it took away.
    const open = nsrun(a, ["run", "--rootfs", rootfsOf(a), "--tmpfs", "/tmp", "--", "/bin/sh", "-c", probe]);
    expect(open.stdout).toContain("root-writable");
    expect(open.stdout).toContain("tmp-exec");
    expect(open.stdout).not.toContain("CapEff: 0000000000000000");
  });
});
