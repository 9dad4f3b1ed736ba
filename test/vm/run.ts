// `bun run test:vm`: the cgroup v2 tests, and a representative set of box tests, as root and as an
// ordinary user, inside throw-away VMs running Debian's own kernels. This project's machines bind
// every cgroup controller to cgroup v1, so `[limits]` on cgroup v2 can be shown only in a VM.
//
//   1. builds dist/nsrun (bun run build)
//   2. per kernel: fetches the Debian package into the cache (kernel.ts), boots it under qemu
//      (qemu.ts) and runs SUITES in the guest (guest.sh), on this same work tree: the guest's root
//      is the host's /, read-only, under a throw-away overlay
//   3. prints a summary per kernel (pass/fail/skip for root and rootless boxes) and exits 1 if
//      anything failed, else 0. No qemu, no kernel package or no root: a stated skip, exit 0.
//
// `bun run test:vm -- CMD ARG...` runs CMD (as root, in this folder) in each VM instead of the
// suites, shows its output and exits with its status: for looking into a failure by hand.
//
// Settings (environment):
//   NSRUN_VM_CACHE     where kernels are kept (default ~/.cache/nsrun-vm)
//   NSRUN_VM_KERNELS   which kernels, by label: "6.1,6.12" (default: all of KERNELS)
//   NSRUN_VM_SUITES    which suites, by id: "cgroup-v2,box" (default: all of SUITES)
//   NSRUN_VM_DIST      test this nsrun binary instead of building one; inside the guest it takes
//                      the place of dist/nsrun (the work tree is not touched)
//   NSRUN_VM_TIMEOUT   seconds one VM may run in all (default 3600)
//   NSRUN_VM_MEMORY    the guest's memory (default 2G)
//   NSRUN_VM_CPUS      the guest's CPUs, for every kernel (default: each kernel's own, below)
//   NSRUN_VM_KEEP=1    keep each run folder (console.log, JUnit files) under the cache
import { spawnSync } from "bun";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { type Kernel, type KernelSpec, prepareKernel } from "./kernel";
import { boot } from "./qemu";
import { type Case, readCases, shortMessage, tally } from "./report";

const REPO = resolve(import.meta.dir, "../..");

const KERNELS: KernelSpec[] = [
  // The generic -amd64 flavour: Debian's cloud kernel has no 9p.
  { label: "6.1", packages: /^linux-image-6\.1\.0-[0-9]+-amd64$/, cpus: 2 },
  // One CPU: an earlier Debian 6.12 oopsed in dequeue_entity under TCG with two once cpu.max was
  // set (6.12.117 did not, in 4 runs; NSRUN_VM_CPUS=2 tries it). One CPU also varies the timing.
  { label: "6.12", packages: /^linux-image-6\.12\.[0-9]+\+deb[0-9]+-amd64$/, cpus: 1 },
];

/** What runs in the guest. `filter` is bun test's -t: a small, representative part of a suite. */
const SUITES: Array<{ id: string; path: string; filter?: string }> = [
  { id: "cgroup-v2", path: "test/vm/cgroup-v2.vm-test.ts" },
  { id: "cgroup", path: "test/cgroup.test.ts" },
  {
    id: "box",
    path: "test/box.test.ts",
    filter: "own hostname|cannot see host processes|only a loopback|read-only bind refuses|ephemeral box leaves|exit codes|SIGTERM to nsrun|SIGKILLed nsrun|the default box",
  },
  // The verdict where the box's CPU and memory are measured in a cgroup v2 (cpu.stat, memory.peak).
  { id: "verdict", path: "test/verdict.test.ts", filter: "cpu-time 1s ends|touches 60 MiB|under -m 32M|60 MiB touched|--cpu-time with a cgroup|pids limit is a reason" },
];

/** bun test's per-test timeout in the guest: code there runs 5-40 times slower than here. */
const TEST_TIMEOUT_MS = 900_000;

function fail(message: string): never {
  console.error(`test:vm: ${message}`);
  process.exit(1);
}

function skipAll(reason: string): never {
  console.log(`skipped: ${reason}`);
  process.exit(0);
}

const list = (s: string | undefined) => s?.split(",").map((w) => w.trim()).filter(Boolean);
const shellQuote = (s: string) => `'${s.replaceAll("'", "'\\''")}'`;

// ---- settings -------------------------------------------------------------------------------
const env = process.env;
const cacheDir = env.NSRUN_VM_CACHE || join(homedir(), ".cache/nsrun-vm");
const timeoutSeconds = Number(env.NSRUN_VM_TIMEOUT || 3600);
const memory = env.NSRUN_VM_MEMORY || "2G";
const cpus = env.NSRUN_VM_CPUS ? Number(env.NSRUN_VM_CPUS) : null;
const dist = env.NSRUN_VM_DIST ? resolve(env.NSRUN_VM_DIST) : null;
const commandArgs = process.argv.slice(process.argv[2] === "--" ? 3 : 2);
const adHoc = commandArgs.length ? commandArgs : null;

const kernelLabels = list(env.NSRUN_VM_KERNELS) ?? KERNELS.map((k) => k.label);
const kernels = KERNELS.filter((k) => kernelLabels.includes(k.label)).map((k) => (cpus ? { ...k, cpus } : k));
if (kernels.length !== kernelLabels.length) fail(`NSRUN_VM_KERNELS: known kernels are ${KERNELS.map((k) => k.label).join(", ")}`);
const suiteIds = list(env.NSRUN_VM_SUITES) ?? SUITES.map((s) => s.id);
const suites = SUITES.filter((s) => suiteIds.includes(s.id));
if (suites.length !== suiteIds.length) fail(`NSRUN_VM_SUITES: known suites are ${SUITES.map((s) => s.id).join(", ")}`);
if (dist && !existsSync(dist)) fail(`NSRUN_VM_DIST: no file ${dist}`);

// ---- one VM per kernel ----------------------------------------------------------------------
interface KernelResult {
  label: string;
  headline: string;
  cases: Case[];
  /** Failures that are not one test's: the VM, a suite that did not run. */
  problems: string[];
  skipped?: string;
  /** The ad-hoc command's exit status. */
  exitCode?: number;
}

/** The run folder the guest sees at /run/nsrun-vm: its settings and plan in, results out. */
function prepareRunDir(kernel: Kernel): string {
  mkdirSync(join(cacheDir, "runs"), { recursive: true });
  const dir = mkdtempSync(join(cacheDir, "runs", `${kernel.release}-`));
  const settings = [`NSRUN_VM_REPO=${shellQuote(REPO)}`, `NSRUN_VM_TEST_TIMEOUT_MS=${TEST_TIMEOUT_MS}`, `NSRUN_VM_DIST=${shellQuote(dist ?? "")}`];
  // The guest writes to a terminal of its own (the virtio console): colours only if ours is one.
  if (!process.stdout.isTTY) settings.push("export NO_COLOR=1");
  writeFileSync(join(dir, "guest.env"), `${settings.join("\n")}\n`);
  writeFileSync(join(dir, "suites.tsv"), adHoc ? "" : suites.map((s) => `${s.id}\t${s.path}\t${s.filter ?? ""}\n`).join(""));
  if (adHoc) writeFileSync(join(dir, "command"), `${adHoc.map(shellQuote).join(" ")}\n`);
  return dir;
}

async function runKernel(qemu: string, spec: KernelSpec): Promise<KernelResult> {
  let kernel: ReturnType<typeof prepareKernel>;
  try {
    kernel = prepareKernel(spec, cacheDir);
  } catch (e) {
    return { label: spec.label, headline: `Linux ${spec.label}`, cases: [], problems: [`cannot prepare the kernel: ${(e as Error).message}`] };
  }
  if ("skipped" in kernel) return { label: spec.label, headline: `Linux ${spec.label}`, cases: [], problems: [], skipped: kernel.skipped };
  const headline = `Linux ${kernel.release} (${kernel.pkg}, ${spec.cpus} CPU${spec.cpus > 1 ? "s" : ""})`;
  console.log(`\n=== ${headline}: booting`);
  const dir = prepareRunDir(kernel);
  const vm = await boot(qemu, kernel, dir, { memory, timeoutSeconds });
  const read = (file: string) => (existsSync(join(dir, file)) ? readFileSync(join(dir, file), "utf8").trim() : null);
  const result: KernelResult = { label: spec.label, headline, cases: [], problems: vm.failure ? [vm.failure] : [] };
  if (adHoc) {
    if (vm.failure) console.error(`test:vm: ${vm.failure}`);
    result.exitCode = Number(read("command.status") ?? 125);
  }
  const times: string[] = [];
  for (const s of adHoc ? [] : suites) {
    const [code, seconds] = read(`${s.id}.status`)?.split(" ").map(Number) ?? [];
    const mine = readCases(join(dir, `${s.id}.xml`), s.path, s.filter ?? null);
    result.cases.push(...mine);
    if (code === undefined) continue;
    times.push(`${s.id} ${seconds} s`);
    // A suite whose file did not load, or that matched nothing, fails without a failed test case.
    if (code !== 0 && !mine.some((c) => c.status === "fail")) result.problems.push(`${s.path}: bun test exited ${code} with no failed test (see its output above)`);
    if (!mine.some((c) => c.status !== "skip")) result.problems.push(`${s.path}: no test ran${s.filter ? ` (filter: ${s.filter})` : ""}`);
  }
  result.headline = `${headline}: ${vm.seconds} s${times.length ? ` (${times.join(", ")})` : ""}`;
  if (env.NSRUN_VM_KEEP === "1") console.log(`run folder kept: ${dir}`);
  else rmSync(dir, { recursive: true, force: true });
  return result;
}

function printSummary(results: KernelResult[], seconds: number): boolean {
  const pad = (n: number) => String(n).padStart(4);
  console.log("\n=== test:vm summary");
  for (const r of results) {
    if (r.skipped) {
      console.log(`${r.headline}: skipped: ${r.skipped}`);
      continue;
    }
    console.log(r.headline);
    for (const actor of ["root", "rootless", "other"] as const) {
      const t = tally(r.cases, actor);
      if (t.pass + t.fail + t.skip) console.log(`  ${actor.padEnd(9)}${pad(t.pass)} pass${pad(t.fail)} fail${pad(t.skip)} skip`);
    }
    for (const p of r.problems) console.log(`  problem: ${p.split("\n").join("\n    ")}`);
  }
  const failed = results.flatMap((r) => r.cases.filter((c) => c.status === "fail").map((c) => ({ ...c, label: r.label })));
  if (failed.length) console.log("failures:");
  for (const f of failed) console.log(`  [${f.label}] ${f.suite} > ${f.name}\n      ${shortMessage(f.message)}`);
  const ok = !failed.length && results.every((r) => !r.problems.length);
  const all = results.flatMap((r) => r.cases);
  const count = (s: Case["status"]) => all.filter((c) => c.status === s).length;
  const ran = results.filter((r) => !r.skipped).length;
  console.log(`${ok ? "ok" : "FAILED"}: ${count("pass")} pass, ${count("fail")} fail, ${count("skip")} skip on ${ran} kernel${ran === 1 ? "" : "s"}, in ${seconds} s`);
  return ok;
}

// ---- main -----------------------------------------------------------------------------------
// qemu reads the host's files for the guest, which runs as root: only root can read them all.
if (process.getuid?.() !== 0) skipAll("test:vm runs as root (the guest's root filesystem is the host's /, read through qemu)");
const qemu = Bun.which("qemu-system-x86_64") ?? skipAll("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)");
const busybox = spawnSync(["ldd", "/bin/busybox"], { stdout: "pipe", stderr: "pipe" });
if (!existsSync("/bin/busybox") || busybox.exitCode === 0) skipAll("the guest's initramfs needs a static /bin/busybox (apt-get install busybox-static)");
for (const tool of ["apt-cache", "apt-get", "dpkg-deb", "xz", "zstd"]) if (!Bun.which(tool)) skipAll(`${tool} is not installed: the guest kernels come from Debian packages`);

const started = performance.now();
if (!dist && spawnSync(["bun", "run", "build"], { cwd: REPO, stdout: "inherit", stderr: "inherit" }).exitCode !== 0) fail("bun run build failed");
const results: KernelResult[] = [];
for (const spec of kernels) results.push(await runKernel(qemu, spec));
if (results.every((r) => r.skipped)) skipAll(`no guest kernel could be had: ${results.map((r) => `${r.label}: ${r.skipped}`).join("; ")}`);
if (adHoc) process.exit(results.find((r) => r.exitCode)?.exitCode ?? 0);
process.exit(printSummary(results, Math.round((performance.now() - started) / 1000)) ? 0 : 1);
