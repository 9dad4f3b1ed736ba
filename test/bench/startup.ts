// Start-up benchmark: nsrun side by side with bubblewrap and runc, on the same busybox rootfs,
// running /bin/true. Not a test: it measures and prints, it never fails because a machine is slow.
//
//   bun run bench            (builds dist/nsrun and the fixture rootfs first)
//
// Uses hyperfine when installed (apt-get install hyperfine); each competitor is skipped with a note
// when it is not installed or cannot run here. As root it also measures rootless boxes, as the
// ordinary user the tests use (nsrun-test), and what a cgroup with limits adds to nsrun's start.
import { spawnSync } from "bun";
import { cpSync, existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { benchArea, isRoot, USER } from "./area";

const REPO = resolve(import.meta.dir, "../..");
const RUNS = Number(process.env.BENCH_RUNS ?? 50);
const PARALLEL = 50;
const has = (cmd: string) => spawnSync(["sh", "-c", `command -v ${cmd}`], { stdout: "pipe" }).exitCode === 0;
const notes: string[] = [];

interface Row {
  name: string;
  median: number;
  mean: number;
  stddev: number;
  min: number;
  max: number;
  /** user + system CPU time, mean (hyperfine counts the command's children): less sensitive to a busy machine. */
  cpu: number;
}

function hyperfine(commands: Array<[name: string, cmd: string]>, runs = RUNS, env: Record<string, string> = {}): Row[] {
  const out = join(work, `hf-${Date.now()}.json`);
  const args = ["hyperfine", "-N", "--warmup", "5", "--runs", String(runs), "--export-json", out, "--style", "none"];
  for (const [name, cmd] of commands) args.push("-n", name, cmd);
  const r = spawnSync(args, { stdout: "pipe", stderr: "pipe", env: { ...process.env, ...env } });
  if (r.exitCode !== 0) {
    notes.push(`hyperfine failed for ${commands.map((c) => c[0]).join(", ")}: ${r.stderr.toString().trim().split("\n").pop()}`);
    return [];
  }
  const json = JSON.parse(readFileSync(out, "utf8")) as { results: Array<{ command: string; median: number; mean: number; stddev: number; min: number; max: number; user: number; system: number }> };
  return json.results.map((x) => ({ name: x.command, median: x.median * 1000, mean: x.mean * 1000, stddev: x.stddev * 1000, min: x.min * 1000, max: x.max * 1000, cpu: (x.user + x.system) * 1000 }));
}

/** Whether a command works at all here, so a broken competitor is a note, not a wrong figure. */
function works(name: string, cmd: string): boolean {
  const r = spawnSync(["sh", "-c", cmd], { stdout: "pipe", stderr: "pipe", cwd: work });
  if (r.exitCode === 0) return true;
  notes.push(`${name} skipped: \`${cmd}\` failed here: ${r.stderr.toString().trim().split("\n").pop()}`);
  return false;
}

function table(title: string, rows: Row[]): void {
  if (!rows.length) return;
  console.log(`\n### ${title}\n`);
  console.log("| command | median | mean ± σ | min … max | CPU (user + sys) |");
  console.log("| --- | ---: | ---: | ---: | ---: |");
  for (const r of rows) console.log(`| ${r.name} | ${r.median.toFixed(1)} ms | ${r.mean.toFixed(1)} ± ${r.stddev.toFixed(1)} ms | ${r.min.toFixed(1)} … ${r.max.toFixed(1)} ms | ${r.cpu.toFixed(1)} ms |`);
}

function runcBundle(rootless: boolean): string {
  const bundle = join(work, rootless ? "runc-rootless" : "runc-root");
  cpSync(rootfs, join(bundle, "rootfs"), { recursive: true, verbatimSymlinks: true });
  spawnSync(["runc", "spec", ...(rootless ? ["--rootless"] : [])], { cwd: bundle });
  const spec = JSON.parse(readFileSync(join(bundle, "config.json"), "utf8"));
  spec.process.args = ["/bin/true"];
  spec.process.terminal = false;
  // `runc spec --rootless` maps container root to whoever ran it (root, here): map the user instead.
  if (rootless && isRoot) {
    const id = (flag: string) => Number(spawnSync(["id", flag, USER], { stdout: "pipe" }).stdout.toString().trim());
    spec.linux.uidMappings = [{ containerID: 0, hostID: id("-u"), size: 1 }];
    spec.linux.gidMappings = [{ containerID: 0, hostID: id("-g"), size: 1 }];
  }
  writeFileSync(join(bundle, "config.json"), JSON.stringify(spec));
  return bundle;
}

/** Whether process `pid` descends from `ancestor` (its PPid chain reaches it). */
function below(pid: string, ancestor: number): boolean {
  for (let p = Number(pid), i = 0; p > 1 && i < 64; i++) {
    if (p === ancestor) return true;
    try {
      p = Number(readFileSync(`/proc/${p}/status`, "utf8").match(/^PPid:\t(\d+)$/m)?.[1] ?? 0);
    } catch {
      return false;
    }
  }
  return false;
}

/**
 * Start a box running `sleep`, wait until its command runs, then look at every process left beside
 * it: nsrun's own (the supervisor it became, under the same PID) and any other with nsrun's
 * command line. Reports how many there are and their resident memory.
 */
async function residentFootprint(prefix: string[]): Promise<string> {
  const box = Bun.spawn([...prefix, bin, "run", "--config", config, "--", "/bin/sleep", "30"], { stdout: "ignore", stderr: "ignore" });
  const status = (pid: number | string) => readFileSync(`/proc/${pid}/status`, "utf8");
  // The box's command is the child of nsrun whose name is sleep.
  const running = () =>
    readdirSync("/proc")
      .filter((p) => /^\d+$/.test(p))
      .some((p) => {
        try {
          const s = status(p);
          return /^Name:\tsleep$/m.test(s) && new RegExp(`^PPid:\\t${box.pid}$`, "m").test(s);
        } catch {
          return false;
        }
      });
  // ... and nsrun has handed over to its supervisor (the command may start a moment before that).
  const handedOver = () => {
    try {
      return readFileSync(`/proc/${box.pid}/cmdline`, "utf8").startsWith("nsrun\0supervise");
    } catch {
      return false;
    }
  };
  for (let i = 0; i < 5000 && !(running() && handedOver()); i++) await Bun.sleep(1);
  let count = 0;
  let rssKb = 0;
  for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
      // nsrun's own copy here, or a process nsrun names "nsrun" below this box (not one another run left).
      if (Number(pid) !== box.pid && !cmdline.startsWith(bin) && !(cmdline.startsWith("nsrun\0") && below(pid, box.pid))) continue;
      count++;
      rssKb += Number(status(pid).match(/^VmRSS:\s+(\d+)/m)?.[1] ?? 0);
    } catch {
      // gone
    }
  }
  box.kill("SIGTERM");
  await box.exited;
  return `${count} nsrun process${count === 1 ? "" : "es"}, ${(rssKb / 1024).toFixed(2)} MiB resident`;
}

/**
 * The library entry (core/api.ts): one Bun process starting boxes one after the other, side by side
 * with bubblewrap started from the same process, in alternating rounds; then all at once.
 */
function warmApi(prefix: string[], env: Record<string, string>): string {
  const script = join(REPO, "test/bench/api-boxes.ts");
  const r = spawnSync([...prefix, process.execPath, script, rootfs, String(PARALLEL), bwrap], { stdout: "pipe", stderr: "pipe", cwd: "/", env: { ...process.env, ...env } });
  if (r.exitCode !== 0) return `failed: ${r.stderr.toString().trim().split("\n").pop()}`;
  const out = r.stdout.toString().trim();
  const m = out.match(/runBox ([\d.]+) ms per box, bwrap ([\d.]+) ms/);
  if (m) ratios.push([`runBox${prefix.length ? " rootless" : " root"} per box`, Number(m[1]) / Number(m[2]), "bwrap", 1.2]);
  return out;
}

/** [what, nsrun / competitor, competitor, target]: printed at the end against the issue's targets. */
const ratios: Array<[string, number, string, number]> = [];
function ratio(rows: Row[], what: string, nsrun: string, other: string, target: number): void {
  const a = rows.find((r) => r.name === nsrun);
  const b = rows.find((r) => r.name === other);
  if (a && b) ratios.push([what, a.median / b.median, other, target]);
}

if (!has("hyperfine")) {
  console.log("hyperfine is not installed (apt-get install hyperfine); nothing to measure.");
  process.exit(0);
}
spawnSync(["bun", "run", "build"], { cwd: REPO, stdout: "inherit", stderr: "inherit" });
const { work, bin, rootfs, userCache, asUser } = benchArea("/tmp/nsrun-bench-", 0o755);
const config = join(work, "box.toml");
writeFileSync(config, `rootfs = "${rootfs}"\n`);
const limited = join(work, "limits.toml");
writeFileSync(limited, `rootfs = "${rootfs}"\n[limits]\nmemory = "256M"\npids = 128\ncpu = 1\n`);
const ver = (cmd: string) => spawnSync(["sh", "-c", `${cmd} 2>&1 | head -1`], { stdout: "pipe" }).stdout.toString().trim();

console.log(`## Start-up, /bin/true in a busybox rootfs (${RUNS} runs each, hyperfine; ${new Date().toISOString().slice(0, 10)})`);
console.log(`\nnsrun ${ver(`${bin} --version`)}; ${has("bwrap") ? ver("bwrap --version") : "no bwrap"}; ${has("runc") ? ver("runc --version") : "no runc"}; ${readFileSync("/proc/sys/kernel/osrelease", "utf8").trim()}, ${navigator.hardwareConcurrency} CPUs; load average ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")} at the start`);

const bwrap = `bwrap --unshare-all --bind ${rootfs} / --proc /proc --dev /dev /bin/true`;
const nsrunCmd = `${bin} run --config ${config} -- /bin/true`;
const uncached = `${bin} run --no-cache --config ${config} -- /bin/true`;
// The tape cache: root's is /run/nsrun-cache; the ordinary user's a folder of its own here (setpriv
// keeps the environment). Each nsrun row is warmed up first, so the cached rows start from the cache.
const userEnv = { XDG_CACHE_HOME: userCache };
if (isRoot) {
  const rows: Array<[string, string]> = [
    ["nsrun (root)", nsrunCmd],
    ["nsrun --no-cache (root)", uncached],
  ];
  if (has("bwrap") && works("bwrap", bwrap)) rows.push(["bwrap (root)", bwrap]);
  if (has("runc")) {
    const b = runcBundle(false);
    const cmd = `sh -c 'cd ${b} && runc run nsrun-bench-$$ >/dev/null'`;
    if (works("runc", cmd)) rows.push(["runc (root)", cmd]);
  }
  const r = hyperfine(rows);
  table("As root", r);
  ratio(r, "root", "nsrun (root)", "bwrap (root)", 2.5);
  ratio(r, "root", "nsrun (root)", "runc (root)", 0.5);
}
if (!isRoot || asUser) {
  const rows: Array<[string, string]> = [
    ["nsrun (rootless)", `${asUser}${nsrunCmd}`],
    ["nsrun --no-cache (rootless)", `${asUser}${uncached}`],
  ];
  if (has("bwrap") && works("bwrap rootless", `${asUser}${bwrap}`)) rows.push(["bwrap (rootless)", `${asUser}${bwrap}`]);
  if (has("runc")) {
    const b = runcBundle(true);
    if (isRoot) spawnSync(["chown", "-R", USER, b]);
    const cmd = `${asUser}sh -c 'cd ${b} && XDG_RUNTIME_DIR=${b} runc --root ${b}/state run nsrun-bench-$$ </dev/null >/dev/null'`;
    if (works("runc rootless", cmd)) rows.push(["runc (rootless)", cmd]);
  }
  const r = hyperfine(rows, RUNS, userEnv);
  table("Rootless", r);
  ratio(r, "rootless", "nsrun (rootless)", "bwrap (rootless)", 3);
  ratio(r, "rootless", "nsrun (rootless)", "runc (rootless)", 0.5);
}
if (isRoot) table("What a cgroup with limits adds (root, memory + pids + cpu)", hyperfine([["nsrun, no limits", nsrunCmd], ["nsrun, [limits]", `${bin} run --config ${limited} -- /bin/true`]]));

// `prefix` runs the whole batch (setpriv, once, for the rootless rows): the user switch is the
// harness's, not the box's, and runc's row, as root, has none.
const parallel = (cmd: string, prefix = "") => `${prefix}sh -c 'for i in $(seq ${PARALLEL}); do ${cmd.replaceAll("'", "'\\''")} & done; wait'`;
const nsrunAtOnce = `${PARALLEL} × nsrun at once${asUser ? " (rootless)" : ""}`;
const runcAtOnce = `${PARALLEL} × runc at once (root)`;
const par: Array<[string, string]> = [[nsrunAtOnce, parallel(nsrunCmd, asUser)]];
if (has("bwrap") && works("bwrap", bwrap)) par.push([`${PARALLEL} × bwrap at once${asUser ? " (rootless)" : ""}`, parallel(bwrap, asUser)]);
if (isRoot && has("runc")) {
  const b = join(work, "runc-root");
  if (existsSync(b)) par.push([runcAtOnce, `sh -c 'cd ${b}; for i in $(seq ${PARALLEL}); do runc run nsrun-par-$$-$i >/dev/null & done; wait'`]);
}
const parRows = hyperfine(par, 10, userEnv);
table(`${PARALLEL} boxes started at once (total time)`, parRows);
ratio(parRows, `${PARALLEL} at once`, nsrunAtOnce, runcAtOnce, 0.5);

const userPrefix = asUser ? ["setpriv", `--reuid=${USER}`, `--regid=${USER}`, "--clear-groups"] : [];
console.log("\n### One process, many boxes (core/api.ts runBox, from source; bwrap started by the same process)\n");
if (isRoot) console.log(`- root: ${warmApi([], {})}`);
if (!isRoot || asUser) console.log(`- rootless: ${warmApi(userPrefix, userEnv)}`);
console.log("\n### While a box runs\n");
if (isRoot) console.log(`- root: ${await residentFootprint([])}`);
if (!isRoot || asUser) console.log(`- rootless: ${await residentFootprint(userPrefix)}`);
if (ratios.length) {
  console.log("\n### Against the targets (medians)\n");
  console.log("| | nsrun / other | target | |");
  console.log("| --- | ---: | ---: | --- |");
  for (const [what, x, other, target] of ratios) console.log(`| ${what} vs ${other.replace(/ \(.*\)$/, "").replace(/^\d+ × /, "")} | ${x.toFixed(2)}x | ≤ ${target}x | ${x <= target ? "met" : "not met"} |`);
}
if (notes.length) console.log(`\nNotes:\n${notes.map((n) => `- ${n}`).join("\n")}`);
rmSync(work, { recursive: true, force: true });
