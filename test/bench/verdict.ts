// What --report and the time limits cost: start-to-end time of a /bin/true box with and without
// them (hyperfine), and the supervisor's own CPU time while a box sleeps (it looks at the box's
// cgroup, or at /proc when there is none, every 100 ms or more often as a CPU limit nears).
// Not a test: it measures and prints, it never fails because a machine is slow.
//
//   bun test/bench/verdict.ts        (part of `bun run bench`; needs hyperfine, dist/nsrun)
import { spawnSync } from "bun";
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { benchArea, isRoot, USER } from "./area";

const RUNS = Number(process.env.BENCH_RUNS ?? 30);

if (spawnSync(["sh", "-c", "command -v hyperfine"], { stdout: "pipe" }).exitCode !== 0) {
  console.log("verdict benchmark skipped: hyperfine is not installed (apt-get install hyperfine)");
  process.exit(0);
}
const { work, bin, rootfs, userCache } = benchArea("/tmp/nsrun-bench-verdict-", 0o777);
const env = { ...process.env, XDG_CACHE_HOME: userCache };

function hyperfine(title: string, commands: Array<[string, string]>): void {
  const out = join(work, `hf-${Date.now()}.json`);
  const args = ["hyperfine", "-N", "--warmup", "3", "--runs", String(RUNS), "--export-json", out, "--style", "none"];
  for (const [name, cmd] of commands) args.push("-n", name, cmd);
  const r = spawnSync(args, { stdout: "pipe", stderr: "pipe", cwd: work, env });
  if (r.exitCode !== 0) return void console.log(`${title}: hyperfine failed: ${r.stderr.toString().trim().split("\n").pop()}`);
  const rows = (JSON.parse(readFileSync(out, "utf8")) as { results: Array<{ command: string; median: number; mean: number; stddev: number }> }).results;
  console.log(`\n### ${title}\n\n| command | median | mean ± σ |\n| --- | ---: | ---: |`);
  for (const x of rows) console.log(`| ${x.command} | ${(x.median * 1000).toFixed(1)} ms | ${(x.mean * 1000).toFixed(1)} ± ${(x.stddev * 1000).toFixed(1)} ms |`);
}

const prefix = (rootless: boolean) => (rootless && isRoot ? `setpriv --reuid=${USER} --regid=${USER} --clear-groups ` : "");
const report = join(work, "verdict.json");

function startup(rootless: boolean): void {
  const p = prefix(rootless);
  const base = `${p}${bin} run --rootfs ${rootfs}`;
  hyperfine(`/bin/true, ${rootless || !isRoot ? "rootless" : "root"}: what --report and the time limits add`, [
    ["plain", `${base} -- /bin/true`],
    ["report", `${base} --report ${report} -- /bin/true`],
    ["report, wall-time 10s", `${base} --report ${report} --wall-time 10s -- /bin/true`],
    ["report, cpu-time 10s", `${base} --report ${report} --cpu-time 10s -- /bin/true`],
  ]);
}

/** The supervisor's CPU time (nsrun's process after the hand-over) while the box sleeps 3 s. */
function supervisorCost(rootless: boolean): void {
  const base = [...(rootless && isRoot ? ["setpriv", `--reuid=${USER}`, `--regid=${USER}`, "--clear-groups"] : []), bin, "run", "--rootfs", rootfs];
  const measure = (flags: string[]) => {
    const r = spawnSync([...base, ...flags, "--", "/bin/sleep", "3"], { cwd: work, stdout: "ignore", stderr: "ignore", env });
    const u = r.resourceUsage;
    // nsrun's own CPU: its Bun start-up and the supervisor; the box's sleep uses none.
    return u ? Number(u.cpuTime.user + u.cpuTime.system) / 1000 : Number.NaN;
  };
  const rows: Array<[string, string[]]> = [
    ["plain", []],
    ["--report", ["--report", report]],
    ["--report --cpu-time 10s --wall-time 10s", ["--report", report, "--cpu-time", "10s", "--wall-time", "10s"]],
  ];
  console.log(`\n### nsrun's own CPU time for a box that sleeps 3 s, ${rootless || !isRoot ? "rootless" : "root"} (median of 3)\n\n| flags | CPU ms |\n| --- | ---: |`);
  for (const [name, flags] of rows) {
    const runs = [measure(flags), measure(flags), measure(flags)].sort((a, b) => a - b);
    console.log(`| ${name} | ${runs[1].toFixed(1)} |`);
  }
}

startup(false);
if (isRoot) startup(true);
supervisorCost(false);
if (isRoot) supervisorCost(true);
rmSync(work, { recursive: true, force: true });
