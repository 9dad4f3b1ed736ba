// `bun run test:vm`: the cgroup v2 tests, and a representative set of box tests, as root and as an
// ordinary user, inside throw-away VMs running Debian's own kernels. This project's machines bind
// every cgroup controller to cgroup v1, so `[limits]` on cgroup v2 can be shown only in a VM.
//
//   1. builds dist/nsrun (bun run build)
//   2. per kernel: fetches the Debian package into the cache, boots it under qemu, and runs the
//      plan below in the guest (guest.sh), against this same work tree (the guest sees the host's /)
//   3. prints a summary per kernel (pass/fail/skip for root and rootless boxes) and exits 1 if
//      anything failed, 0 otherwise. A missing qemu or kernel package is a stated skip, exit 0.
//
// `bun run test:vm -- CMD ARG...` runs CMD (as root, in this folder) in each VM instead of the
// tests, shows its output and exits with its status: for looking into a failure by hand.
//
// Settings (environment):
//   NSRUN_VM_CACHE     where kernels are kept (default ~/.cache/nsrun-vm)
//   NSRUN_VM_KERNELS   which kernels, by label: "6.1,6.12" (the default: all of KERNELS)
//   NSRUN_VM_SUITES    which suites, by id: "cgroup-v2,box" (the default: all of SUITES)
//   NSRUN_VM_TIMEOUT   seconds one VM may run in all (default 3600)
//   NSRUN_VM_MEMORY    the guest's memory (default 2G)
//   NSRUN_VM_CPUS      the guest's CPUs, for every kernel (default: each kernel's own, below)
//   NSRUN_VM_KEEP=1    keep each run folder (console.log, JUnit files) under the cache
//   NSRUN_VM_DIST      test this nsrun binary instead of building one; inside the guest it takes
//                      the place of dist/nsrun (the work tree is not touched). NSRUN_VM_DIST=dist/nsrun
//                      tests the binary that is there.
import { spawnSync } from "bun";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { type Kernel, type KernelSpec, prepareKernel } from "./kernel";
import { boot } from "./qemu";
import { type Case, readCases, shortMessage, tally } from "./report";

const REPO = resolve(import.meta.dir, "../..");

const KERNELS: KernelSpec[] = [
  { label: "6.1", packages: /^linux-image-6\.1\.0-[0-9]+-amd64$/, cpus: 2 },
  // The generic -amd64 flavour: Debian's cloud kernel has no 9p.
  { label: "6.12", packages: /^linux-image-6\.12\.[0-9]+\+deb[0-9]+-amd64$/, cpus: 1, note: "1 CPU: Debian's 6.12 oopses in dequeue_entity under TCG with 2 CPUs once cpu.max is set" },
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
];

const env = process.env;
const cacheDir = env.NSRUN_VM_CACHE || join(homedir(), ".cache/nsrun-vm");
const timeoutSeconds = Number(env.NSRUN_VM_TIMEOUT || 3600);
const memory = env.NSRUN_VM_MEMORY || "2G";
/** bun test's per-test timeout in the guest: code there runs 5-40 times slower than here. */
const TEST_TIMEOUT_MS = 900_000;

function skipAll(reason: string): never {
  console.log(`skipped: ${reason}`);
  process.exit(0);
}

function isStatic(file: string): boolean {
  const r = spawnSync(["ldd", file], { stdout: "pipe", stderr: "pipe" });
  return existsSync(file) && r.exitCode !== 0;
}

const shellQuote = (s: string) => `'${s.replaceAll("'", "'\\''")}'`;

/** The run folder the guest sees at /run/nsrun-vm: its settings and plan in, results out. */
function prepareRunDir(kernel: Kernel): string {
  const runs = join(cacheDir, "runs");
  mkdirSync(runs, { recursive: true });
  const dir = mkdtempSync(join(runs, `${kernel.release}-`));
  const settings = [`NSRUN_VM_REPO=${shellQuote(REPO)}`, `NSRUN_VM_TEST_TIMEOUT_MS=${TEST_TIMEOUT_MS}`, `NSRUN_VM_DIST=${shellQuote(dist ?? "")}`];
  // The guest writes to a terminal of its own (the virtio console): colours only if ours is one.
  if (!process.stdout.isTTY) settings.push("export NO_COLOR=1");
  writeFileSync(join(dir, "guest.env"), `${settings.join("\n")}\n`);
  writeFileSync(join(dir, "suites.tsv"), adHoc ? "" : suites.map((s) => `${s.id}\t${s.path}\t${s.filter ?? ""}\n`).join(""));
  if (adHoc) writeFileSync(join(dir, "command"), `${adHoc.map(shellQuote).join(" ")}\n`);
  return dir;
}

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

async function runKernel(spec: KernelSpec): Promise<KernelResult> {
  const kernel = prepareKernel(spec, cacheDir);
  if ("skipped" in kernel) return { label: spec.label, headline: `Linux ${spec.label}`, cases: [], problems: [], skipped: kernel.skipped };
  const headline = `Linux ${kernel.release} (${kernel.pkg}, ${spec.cpus} CPU${spec.cpus > 1 ? "s" : ""})`;
  console.log(`\n=== ${headline}: booting${spec.note ? `; ${spec.note}` : ""}`);
  const dir = prepareRunDir(kernel);
  const vm = await boot(qemuPath, kernel, dir, { memory, timeoutSeconds });
  if (adHoc) {
    const status = existsSync(join(dir, "command.status")) ? Number(readFileSync(join(dir, "command.status"), "utf8")) : null;
    if (vm.failure) console.error(`test:vm: ${vm.failure}`);
    rmSync(dir, { recursive: true, force: true });
    return { label: spec.label, headline, cases: [], problems: vm.failure ? [vm.failure] : [], exitCode: status ?? 125 };
  }
  const cases: Case[] = [];
  const problems = vm.failure ? [vm.failure] : [];
  const times: string[] = [];
  for (const s of suites) {
    const status = existsSync(join(dir, `${s.id}.status`)) ? readFileSync(join(dir, `${s.id}.status`), "utf8").trim().split(" ").map(Number) : null;
    const mine = readCases(join(dir, `${s.id}.xml`), s.path, s.filter ?? null);
    cases.push(...mine);
    if (status) times.push(`${s.id} ${status[1]} s`);
    // A suite whose file did not load, or that matched nothing, fails without a failed test case.
    if (status && status[0] !== 0 && !mine.some((c) => c.status === "fail")) problems.push(`${s.path}: bun test exited ${status[0]} with no failed test (see its output above)`);
    if (status && !mine.some((c) => c.status !== "skip")) problems.push(`${s.path}: no test ran${s.filter ? ` (filter: ${s.filter})` : ""}`);
  }
  if (env.NSRUN_VM_KEEP === "1") console.log(`run folder kept: ${dir}`);
  else rmSync(dir, { recursive: true, force: true });
  return { label: spec.label, headline: `${headline}: ${vm.seconds} s (${times.join(", ") || "no suite finished"})`, cases, problems };
}

function printSummary(results: KernelResult[], seconds: number): boolean {
  const pad = (n: number, w = 4) => String(n).padStart(w);
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
  if (failed.length) {
    console.log("failures:");
    for (const f of failed) console.log(`  [${f.label}] ${f.suite} > ${f.name}\n      ${shortMessage(f.message)}`);
  }
  const ok = !failed.length && results.every((r) => !r.problems.length);
  const all = results.flatMap((r) => r.cases);
  const count = (s: Case["status"]) => all.filter((c) => c.status === s).length;
  console.log(`${ok ? "ok" : "FAILED"}: ${count("pass")} pass, ${count("fail")} fail, ${count("skip")} skip across ${results.filter((r) => !r.skipped).length} kernel(s), in ${seconds} s`);
  return ok;
}

const qemuPath = Bun.which("qemu-system-x86_64") ?? skipAll("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)");
if (!isStatic("/bin/busybox")) skipAll("the guest's initramfs needs a static /bin/busybox (apt-get install busybox-static)");
for (const tool of ["apt-cache", "apt-get", "dpkg-deb", "xz", "zstd"]) if (!Bun.which(tool)) skipAll(`${tool} is not installed: the guest kernel comes from a Debian package`);

const started = performance.now();
const dist = env.NSRUN_VM_DIST ? resolve(env.NSRUN_VM_DIST) : null;
if (dist) {
  if (!existsSync(dist)) {
    console.error(`test:vm: NSRUN_VM_DIST: no file ${dist}`);
    process.exit(1);
  }
} else if (spawnSync(["bun", "run", "build"], { cwd: REPO, stdout: "inherit", stderr: "inherit" }).exitCode !== 0) {
  console.error("test:vm: bun run build failed");
  process.exit(1);
}
const wanted = (env.NSRUN_VM_KERNELS || KERNELS.map((k) => k.label).join(",")).split(",").map((s) => s.trim());
const unknown = wanted.filter((w) => !KERNELS.some((k) => k.label === w));
if (unknown.length) {
  console.error(`test:vm: NSRUN_VM_KERNELS: unknown kernel ${unknown.join(", ")} (known: ${KERNELS.map((k) => k.label).join(", ")})`);
  process.exit(1);
}
const commandArgs = process.argv.slice(process.argv[2] === "--" ? 3 : 2);
const adHoc = commandArgs.length ? commandArgs : null;
const suiteIds = env.NSRUN_VM_SUITES?.split(",").map((s) => s.trim());
const suites = SUITES.filter((s) => !suiteIds || suiteIds.includes(s.id));
if (!suites.length) {
  console.error(`test:vm: NSRUN_VM_SUITES: no suite ${suiteIds?.join(", ")} (known: ${SUITES.map((s) => s.id).join(", ")})`);
  process.exit(1);
}
const results: KernelResult[] = [];
const cpus = env.NSRUN_VM_CPUS ? Number(env.NSRUN_VM_CPUS) : null;
for (const spec of KERNELS.filter((k) => wanted.includes(k.label))) results.push(await runKernel(cpus ? { ...spec, cpus, note: undefined } : spec));
if (adHoc) process.exit(results.find((r) => r.exitCode)?.exitCode ?? (results.some((r) => r.skipped) ? 125 : 0));
if (results.every((r) => r.skipped)) skipAll(`no guest kernel could be had: ${results.map((r) => `${r.label}: ${r.skipped}`).join("; ")}`);
process.exit(printSummary(results, Math.round((performance.now() - started) / 1000)) ? 0 : 1);
