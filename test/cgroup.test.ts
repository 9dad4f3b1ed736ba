// Resource limits: pure planning against a temporary folder standing in for /sys/fs/cgroup, then
// real boxes on this host's cgroups (v1 controllers for root here; v2 where it has controllers).
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { applyCgroup, type CgroupHost, CgroupUnavailable, inspectCgroups, planCgroup, removeCgroup, weightToBlkio, weightToShares } from "../core/stages/cgroup";
import { parseSize } from "../core/stages/config";
import { type Actor, run, setupTestArea, start, waitFor, writeConfig } from "./helpers";

const tmp = mkdtempSync("/tmp/nsrun-cgroup-test-");

describe("planning (no privileges)", () => {
  test("sizes: bytes, K/M/G in powers of 1024, TOML integers; nonsense is null", () => {
    expect(parseSize("256M")).toBe(256 * 1024 ** 2);
    expect(parseSize("1G")).toBe(1024 ** 3);
    expect(parseSize("512k")).toBe(512 * 1024);
    expect(parseSize("1.5M")).toBe(1572864);
    expect(parseSize("4096")).toBe(4096);
    expect(parseSize(4096)).toBe(4096);
    expect(parseSize("0")).toBe(0);
    expect(parseSize("lots")).toBeNull();
    expect(parseSize("-1M")).toBeNull();
    expect(parseSize(-1)).toBeNull();
  });

  const v2Host = (delegated: string[]): CgroupHost => ({
    v2: { mount: `${tmp}/v2`, own: "/user.slice/me", controllers: ["cpu", "io", "memory", "pids"], delegated },
    v1: {},
  });

  test("v2: nsrun moves itself to a leaf, enables the controllers on the way down, then limits the box's cgroup", () => {
    const plan = planCgroup({ memory: 1024, memorySwap: 0, pids: 16, cpu: 1.5, cpuWeight: 50, ioWeight: 200 }, v2Host([]), "nsrun-7", "1K", true);
    const own = `${tmp}/v2/user.slice/me`;
    const top = `${own}/nsrun-7`;
    const dir = `${top}/box`;
    expect(plan?.version).toBe(2);
    expect(plan?.dirs).toEqual([top, `${top}/supervisor`, dir]);
    expect(plan?.writes).toEqual([
      [`${top}/supervisor/cgroup.procs`, "0"],
      [`${own}/cgroup.subtree_control`, "+memory +pids +cpu +io"],
      [`${top}/cgroup.subtree_control`, "+memory +pids +cpu +io"],
      [`${dir}/memory.max`, "1024"],
      [`${dir}/memory.swap.max`, "0"],
      [`${dir}/pids.max`, "16"],
      [`${dir}/cpu.max`, "150000 100000"],
      [`${dir}/cpu.weight`, "50"],
      [`${dir}/io.weight`, "default 200"],
    ]);
    // Undone children first: a parent cannot drop a controller a child still hands down.
    expect(plan?.undo).toEqual([
      [`${top}/cgroup.subtree_control`, "-memory -pids -cpu -io"],
      [`${own}/cgroup.subtree_control`, "-memory -pids -cpu -io"],
      [`${own}/cgroup.procs`, "0"],
    ]);
    expect(plan?.procs).toEqual([`${dir}/cgroup.procs`]);
    expect(plan?.boxDirs).toEqual([dir]);
    expect(plan?.oomFile).toBe(`${dir}/memory.events`);
  });

  test("v2 in the root cgroup: no leaf for nsrun is needed (the root may hold processes and hand controllers down)", () => {
    const host: CgroupHost = { v2: { mount: `${tmp}/v2`, own: "/", controllers: ["pids"], delegated: [] }, v1: {} };
    const plan = planCgroup({ pids: 3 }, host, "nsrun-8", null, false);
    expect(plan?.dirs).toEqual([`${tmp}/v2/nsrun-8`]);
    expect(plan?.writes).toEqual([
      [`${tmp}/v2/cgroup.subtree_control`, "+pids"],
      [`${tmp}/v2/nsrun-8/pids.max`, "3"],
    ]);
    expect(plan?.undo).toEqual([[`${tmp}/v2/cgroup.subtree_control`, "-pids"]]);
  });

  test("v2: controllers already handed down are not enabled again; no limits, no cgroup", () => {
    const plan = planCgroup({ pids: 4 }, v2Host(["pids", "memory"]), "nsrun-7", null, false);
    expect(plan?.writes.map(([f]) => f.split("/").slice(-2).join("/"))).toEqual(["supervisor/cgroup.procs", "nsrun-7/cgroup.subtree_control", "box/pids.max"]);
    expect(planCgroup({}, v2Host([]), "nsrun-7", null, false)).toBeNull();
  });

  const v1Host: CgroupHost = {
    v2: { mount: `${tmp}/unified`, own: "/", controllers: [], delegated: [] },
    v1: {
      memory: { mount: `${tmp}/memory`, own: "/job/1" },
      pids: { mount: `${tmp}/pids`, own: "/" },
      cpu: { mount: `${tmp}/cpu,cpuacct`, own: "/" },
      cpuacct: { mount: `${tmp}/cpu,cpuacct`, own: "/" },
    },
  };

  test("v1 (root): a cgroup per hierarchy, beneath nsrun's own in each; memsw after memory", () => {
    const plan = planCgroup({ memory: 100, memorySwap: 50, pids: 8, cpu: 0.5, cpuWeight: 100 }, v1Host, "nsrun-9", "100", false);
    expect(plan?.version).toBe(1);
    expect(plan?.dirs).toEqual([`${tmp}/memory/job/1/nsrun-9`, `${tmp}/pids/nsrun-9`, `${tmp}/cpu,cpuacct/nsrun-9`]);
    expect(plan?.writes).toEqual([
      [`${tmp}/memory/job/1/nsrun-9/memory.limit_in_bytes`, "100"],
      [`${tmp}/memory/job/1/nsrun-9/memory.memsw.limit_in_bytes`, "150"],
      [`${tmp}/pids/nsrun-9/pids.max`, "8"],
      [`${tmp}/cpu,cpuacct/nsrun-9/cpu.cfs_period_us`, "100000"],
      [`${tmp}/cpu,cpuacct/nsrun-9/cpu.cfs_quota_us`, "50000"],
      [`${tmp}/cpu,cpuacct/nsrun-9/cpu.shares`, "2597"], // runc's mapping of weight 100
    ]);
    expect(plan?.oomFile).toBe(`${tmp}/memory/job/1/nsrun-9/memory.oom_control`);
    expect(weightToShares(1)).toBe(2);
    expect(weightToShares(10000)).toBe(262144);
  });

  test("v1 io_weight: blkio.weight (CFQ) or blkio.bfq.weight (BFQ), and refused naming the key where there is neither", () => {
    const withBlkio = (weightFile: string | null | undefined) => ({ ...v1Host, v1: { ...v1Host.v1, blkio: { mount: `${tmp}/blkio`, own: "/", weightFile } } });
    expect(planCgroup({ ioWeight: 100 }, withBlkio("blkio.weight"), "n", null, false)?.writes).toEqual([[`${tmp}/blkio/n/blkio.weight`, "20"]]);
    expect(planCgroup({ ioWeight: 100 }, withBlkio("blkio.bfq.weight"), "n", null, false)?.writes).toEqual([[`${tmp}/blkio/n/blkio.bfq.weight`, "20"]]);
    expect(() => planCgroup({ ioWeight: 100 }, withBlkio(null), "n", null, false)).toThrow(/io_weight: .*no weight file/);
  });

  test("v1 for an ordinary user, or a controller nowhere, is refused with what is missing", () => {
    expect(() => planCgroup({ pids: 8 }, v1Host, "n", null, true)).toThrow(CgroupUnavailable);
    expect(() => planCgroup({ pids: 8 }, v1Host, "n", null, true)).toThrow(/ordinary user/);
    expect(() => planCgroup({ ioWeight: 8 }, v1Host, "n", null, false)).toThrow(/no cgroup controller for io/);
  });

  test("apply makes the folder and writes each file; remove takes the folder away", async () => {
    const host: CgroupHost = { v2: { mount: `${tmp}/fs`, own: "/", controllers: ["pids"], delegated: ["pids"] }, v1: {} };
    mkdirSync(`${tmp}/fs`, { recursive: true });
    const plan = planCgroup({ pids: 5 }, host, "nsrun-1", null, false);
    if (!plan) throw new Error("expected a plan");
    applyCgroup(plan);
    expect(readFileSync(`${tmp}/fs/nsrun-1/pids.max`, "utf8")).toBe("5");
    // A real cgroupfs removes its interface files itself; a plain folder needs them gone first.
    rmSync(`${tmp}/fs/nsrun-1/pids.max`);
    await removeCgroup(plan);
    expect(existsSync(`${tmp}/fs/nsrun-1`)).toBe(false);
  });

  test("a write that fails undoes the folders already made", () => {
    const host: CgroupHost = { v2: { mount: `${tmp}/fs2`, own: "/", controllers: ["pids"], delegated: ["pids"] }, v1: {} };
    mkdirSync(`${tmp}/fs2`, { recursive: true });
    const plan = planCgroup({ pids: 5 }, host, "nsrun-2", null, false);
    if (!plan) throw new Error("expected a plan");
    plan.writes.unshift([`${tmp}/fs2/nsrun-2/no/such/file`, "1"]);
    expect(() => applyCgroup(plan)).toThrow(/write "1" to/);
    expect(existsSync(plan.dirs[0])).toBe(false);
  });

  test("inspect reads v1 hierarchies and the v2 mount from mountinfo and /proc/self/cgroup", () => {
    const proc = join(tmp, "proc");
    mkdirSync(join(proc, "self"), { recursive: true });
    mkdirSync(join(tmp, "u2"), { recursive: true });
    writeFileSync(join(tmp, "u2/cgroup.controllers"), "");
    writeFileSync(
      join(proc, "self/mountinfo"),
      `32 31 0:29 / ${tmp}/c1 rw,relatime - cgroup cgroup rw,cpu,cpuacct\n35 31 0:32 / ${tmp}/m1 rw - cgroup cgroup rw,memory\n41 31 0:38 / ${tmp}/u2 rw - cgroup2 cgroup2 rw\n`,
    );
    writeFileSync(join(proc, "self/cgroup"), "4:memory:/job/x\n1:cpu,cpuacct:/\n0::/\n");
    const host = inspectCgroups(proc);
    expect(host.v1.memory).toEqual({ mount: `${tmp}/m1`, own: "/job/x" });
    expect(host.v1.cpu).toEqual({ mount: `${tmp}/c1`, own: "/" });
    expect(host.v2).toEqual({ mount: `${tmp}/u2`, own: "/", controllers: [], delegated: [], writable: true });
  });
});

const area = setupTestArea();
afterAll(() => {
  area.cleanup();
  rmSync(tmp, { recursive: true, force: true });
});
const host = inspectCgroups();
const root = area.actors.find((a) => a.name === "root");
const user = area.actors.find((a) => a.name === "user");
const v1Ready = ["memory", "pids", "cpu"].every((c) => host.v1[c]);
const v2Ready = ["memory", "pids", "cpu"].every((c) => host.v2?.controllers.includes(c));
if (!v2Ready) console.warn(`skipped: real cgroup v2 limits: they need memory, pids and cpu on cgroup2, and this host's offers ${host.v2?.controllers.join(" ") || "none"} (\`bun run test:vm\` runs them in a VM)`);
if (!root) console.warn("skipped: real cgroup v1 limits: they need root");

/** The cgroup folders the nsrun with this PID makes (nsrun-PID beneath its own cgroup, in each hierarchy). */
function cgroupsOf(pid: number): string[] {
  const dirs = Object.values(host.v1).map((h) => `${h.mount}${h.own === "/" ? "" : h.own}`);
  if (host.v2) dirs.push(`${host.v2.mount}${host.v2.own === "/" ? "" : host.v2.own}`);
  return [...new Set(dirs)].map((d) => `${d}/nsrun-${pid}`);
}

/** Which of the cgroups of these nsruns (the test's own, by PID) are still there: none may be. */
function leftoverCgroups(...pids: number[]): string[] {
  return pids.flatMap(cgroupsOf).filter((d) => existsSync(d));
}

const limited = (a: Actor, name: string, limits: string) => writeConfig(a, name, `rootfs = "../rootfs"\n[limits]\n${limits}\n`);

describe.if(Boolean(root) && (v1Ready || v2Ready))(`real limits, root, cgroup ${v2Ready ? "v2" : "v1"}`, () => {
  const a = root as Actor;
  const sh = (cfg: string, script: string) => run(area.bin, a, ["run", "--config", cfg, "--", "/bin/sh", "-c", script]);

  test("a box over its memory limit is OOM-killed: exit 137 and a one-line reason (control: a higher limit lets it live)", () => {
    const small = limited(a, "mem48.toml", 'memory = "48M"\nmemory_swap = "0"');
    const r = sh(small, "exec dd if=/dev/zero of=/dev/null bs=200M count=1");
    expect(r.code).toBe(137);
    expect(r.stderr).toContain("ran out of memory");
    expect(r.stderr).toContain("48M");
    const big = limited(a, "mem512.toml", 'memory = "512M"');
    const c = sh(big, "exec dd if=/dev/zero of=/dev/null bs=200M count=1");
    expect(c.code).toBe(0);
    expect(leftoverCgroups(r.pid, c.pid)).toEqual([]);
  });

  test("pids = 16 caps the box's processes (control: 64 lets 30 sleepers live)", () => {
    const probe = 'sh -c "for i in \\$(seq 30); do sleep 3 & done" 2>/dev/null; set -- /proc/[0-9]*; echo $#';
    const r = sh(limited(a, "pids16.toml", "pids = 16"), probe);
    expect(Number(r.stdout.trim())).toBeGreaterThan(1);
    expect(Number(r.stdout.trim())).toBeLessThanOrEqual(16);
    const c = sh(limited(a, "pids64.toml", "pids = 64"), probe);
    expect(Number(c.stdout.trim())).toBe(31);
    expect(leftoverCgroups(r.pid, c.pid)).toEqual([]);
  });

  test.if(!v2Ready && Boolean(host.v1.blkio?.weightFile))("cgroup v1 hosts only: io_weight and cpu_weight reach the box's blkio and cpu cgroups (control: the hierarchy's default differs)", async () => {
    const blkio = host.v1.blkio;
    const cfg = limited(a, "weights.toml", "io_weight = 1000\ncpu_weight = 1000");
    const box = start(area.bin, a, ["run", "--config", cfg, "--", "/bin/sh", "-c", "echo ready; exec sleep 30"]);
    try {
      expect(new TextDecoder().decode((await box.stdout.getReader().read()).value)).toBe("ready\n");
      const dirOf = (h: { mount: string; own: string }) => `${h.mount}${h.own === "/" ? "" : h.own}/nsrun-${box.pid}`;
      const weight = readFileSync(`${dirOf(blkio)}/${blkio.weightFile}`, "utf8").trim();
      expect(weight.split("\n")[0].replace(/^default /, "")).toBe(String(weightToBlkio(1000)));
      expect(weightToBlkio(1000)).not.toBe(100); // the kernel's default weight, which an unset box would show
      expect(readFileSync(`${dirOf(host.v1.cpu)}/cpu.shares`, "utf8").trim()).toBe(String(weightToShares(1000)));
    } finally {
      box.kill();
      await box.exited;
    }
  });

  test("a CPU-limited busy loop still finishes, throttled to its quota", async () => {
    const cfg = limited(a, "cpu.toml", "cpu = 0.25");
    const box = start(area.bin, a, ["run", "--config", cfg, "--", "/bin/sh", "-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; echo finished"]);
    const dir = v2Ready ? `${host.v2?.mount}${host.v2?.own === "/" ? "" : host.v2?.own}/nsrun-${box.pid}` : `${host.v1.cpu.mount}${host.v1.cpu.own === "/" ? "" : host.v1.cpu.own}/nsrun-${box.pid}`;
    expect(await waitFor(() => existsSync(dir))).toBe(true);
    // nsrun makes the folder, then writes the limits (all before the box's first process exists):
    // the folder may show before its quota does.
    const quota = () => (v2Ready ? readFileSync(`${dir}/cpu.max`, "utf8").trim() : readFileSync(`${dir}/cpu.cfs_quota_us`, "utf8").trim());
    const expected = v2Ready ? "25000 100000" : "25000";
    await waitFor(() => quota() === expected);
    expect(quota()).toBe(expected);
    const throttled = () => Number(readFileSync(`${dir}/cpu.stat`, "utf8").match(/nr_throttled (\d+)/)?.[1]);
    expect(await waitFor(() => throttled() > 0, 20_000)).toBe(true);
    expect(await box.exited).toBe(0);
    expect(await new Response(box.stdout).text()).toBe("finished\n");
    expect(leftoverCgroups(box.pid)).toEqual([]);
    // At a quarter of a CPU the loop's time is the machine's: generous for a VM under emulation (test:vm).
  }, 600_000);

  test("the box sees its own cgroup as / (cgroup namespace), and processes it leaves behind are killed", () => {
    const cfg = limited(a, "ns.toml", "pids = 32");
    const r = sh(cfg, "grep -c ':/$' /proc/self/cgroup; sleep 60 & sleep 60 & exit 0");
    expect(Number(r.stdout.trim())).toBeGreaterThan(0);
    expect(r.code).toBe(0);
    expect(leftoverCgroups(r.pid)).toEqual([]);
  });

  test("the cgroup of a SIGKILLed nsrun is removed by the next nsrun with limits (control: the kill leaves it)", async () => {
    const cfg = limited(a, "killed.toml", "pids = 32");
    const box = start(area.bin, a, ["run", "--config", cfg, "--", "/bin/sh", "-c", "echo ready; exec sleep 60"]);
    const reader = box.stdout.getReader();
    expect(new TextDecoder().decode((await reader.read()).value)).toBe("ready\n");
    box.kill("SIGKILL");
    await box.exited;
    expect(leftoverCgroups(box.pid).length).toBeGreaterThan(0);
    const next = sh(cfg, "true");
    expect(next.code).toBe(0);
    expect(leftoverCgroups(box.pid, next.pid)).toEqual([]);
  });

  test("a closed stderr (--trace into a pipe nobody reads) changes nothing: the box runs, its status comes back, no cgroup is left", () => {
    const cfg = limited(a, "epipe.toml", "pids = 32");
    const out = join(a.area, "epipe.out");
    // stderr is a pipe to `true`, which exits at once: every write nsrun makes there fails with EPIPE.
    const script = `${area.bin} run --trace --config ${cfg} -- /bin/sh -c 'echo out; exit 7' >${out} 2> >(true) & pid=$!; wait $pid; echo $? $pid`;
    const r = Bun.spawnSync(["bash", "-c", script], { stdout: "pipe", stderr: "pipe" });
    const [status, pid] = r.stdout.toString().trim().split(" ");
    expect(status).toBe("7");
    expect(readFileSync(out, "utf8")).toBe("out\n");
    expect(r.stderr.toString()).toBe("");
    expect(leftoverCgroups(Number(pid))).toEqual([]);
  });
});

describe.if(Boolean(user) && !v2Ready)("limits for an ordinary user on a host without cgroup v2 controllers (where v2 has them, test/vm/cgroup-v2.vm-test.ts checks the undelegated case)", () => {
  test("are refused with exit 125 and what to do, not silently ignored", () => {
    const a = user as Actor;
    const r = run(area.bin, a, ["--config", limited(a, "user-limits.toml", "pids = 16")]);
    expect(r.code).toBe(125);
    expect(r.stderr).toContain("limits:");
    expect(r.stderr).toMatch(/Delegate|root/);
    expect(leftoverCgroups(r.pid)).toEqual([]);
  });
});

describe.if(Boolean(root))("bad [limits] values", () => {
  test("exit 125 naming the key", () => {
    const a = root as Actor;
    for (const [bad, key] of [
      ['memory = "lots"', "limits.memory"],
      ["pids = -1", "limits.pids"],
      ["cpu = 0", "limits.cpu"],
      ["cpu_weight = 20000", "limits.cpu_weight"],
      ["memroy = 1", "limits.memroy"],
    ]) {
      const r = run(area.bin, a, ["--config", limited(a, "bad-limits.toml", bad)]);
      expect({ bad, code: r.code }).toEqual({ bad, code: 125 });
      expect(r.stderr).toContain(`${key}:`);
      expect(leftoverCgroups(r.pid)).toEqual([]);
    }
  });
});
