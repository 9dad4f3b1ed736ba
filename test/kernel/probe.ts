// The probe behind test/kernel/: each experiment runs in a process of its own, because most of them
// change the process that runs them (unshare(2), chroot(2), a process limit of 0), and fork(2)
// through bun:ffi crashes the child. A test calls runProbe("experiment"); the probe process does the
// experiment through nsrun's ffi/ layer and prints one JSON object on stdout. Every experiment that
// calls unshare(2) does it first, through test/kernel/early.ts, and loads the rest of ffi/ only afterwards:
// unshare(CLONE_NEWUSER) needs a single-threaded process.
//
// Why the probe runs as a bundle (probe.js in a temporary folder) and not as this file: Bun loads
// every further .ts or .js file from disk on its "Bun Pool" worker threads. `bun probe.ts` is
// single-threaded (with the BUN_JSC_* settings below) only until its first import of another file:
// it then has four threads, and unshare(CLONE_NEWUSER) fails with EINVAL (measured with Bun 1.4.5).
// A bundle is one file, as nsrun's compiled binary is, and its dynamic imports only run their module
// code; they load nothing from disk.
import { readdirSync, readFileSync, readlinkSync, statSync, writeSync } from "node:fs";
import { type EarlyFailure, earlyUnshare, earlyWriteFile } from "./early";
import * as F from "../../ffi/flags";

// ---------------------------------------------------------------------------------------------
// The test side.

/** Who runs the probe: this test process's user, or the ordinary user nsrun-test. */
export const TEST_USER = "nsrun-test";
export const IS_ROOT = process.getuid?.() === 0;

/** JavaScriptCore settings that keep a Bun process single-threaded for a while (nsrun itself needs none: its executor starts every box's first process with clone3). */
const SINGLE_THREAD_ENV = { BUN_JSC_useConcurrentJIT: "0", BUN_JSC_useWarmUpMarkedBlocks: "0", BUN_JSC_useConcurrentGC: "0" };

export interface ProbeOptions {
  /** "user" runs it as nsrun-test through setpriv when the tests run as root. Default: "self". */
  as?: "self" | "user";
  /** "many" leaves out the single-thread settings, so the probe has several threads. Default: "single". */
  threads?: "single" | "many";
  args?: string[];
}

/** A probe's answer: plain JSON. */
export type ProbeResult = Record<string, any>;

let bundled: Promise<string> | null = null;
let bundleDir: string | null = null;

/** Bundles this file once, into a folder the ordinary user can read; removeProbe() deletes it. */
function bundle(): Promise<string> {
  bundled ??= (async () => {
    const { chmodSync, mkdtempSync } = await import("node:fs");
    const dir = mkdtempSync("/tmp/nsrun-kernel-probe-");
    bundleDir = dir;
    chmodSync(dir, 0o755);
    const out = await Bun.build({ entrypoints: [`${import.meta.dir}/probe.ts`], target: "bun", outdir: dir });
    if (!out.success) throw new Error(`bundling the probe failed: ${out.logs.join("\n")}`);
    const path = out.outputs[0].path;
    chmodSync(path, 0o644);
    return path;
  })();
  return bundled;
}

/** Deletes the bundle; for each test file's afterAll (the next runProbe bundles again). */
export async function removeProbe(): Promise<void> {
  await bundled?.catch(() => {});
  if (bundleDir) (await import("node:fs")).rmSync(bundleDir, { recursive: true, force: true });
  bundled = null;
  bundleDir = null;
}

/** Runs one experiment in a new process and returns what it printed. Throws, with its stderr, if it failed. */
export async function runProbe(experiment: string, opts: ProbeOptions = {}): Promise<ProbeResult> {
  const script = await bundle();
  const argv = [process.execPath, script, experiment, ...(opts.args ?? [])];
  const asUser = opts.as === "user" && IS_ROOT;
  if (asUser && Bun.spawnSync(["id", "-u", TEST_USER]).exitCode !== 0) {
    throw new Error(`the ordinary user ${TEST_USER} does not exist; create it (useradd --system ${TEST_USER}) to run this experiment`);
  }
  const cmd = asUser ? ["setpriv", `--reuid=${TEST_USER}`, `--regid=${TEST_USER}`, "--clear-groups", ...argv] : argv;
  const env: Record<string, string> = { PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", HOME: "/tmp" };
  if (opts.threads !== "many") Object.assign(env, SINGLE_THREAD_ENV);
  const r = Bun.spawnSync(cmd, { cwd: "/tmp", env, stdin: "ignore", stdout: "pipe", stderr: "pipe", timeout: 60_000 });
  const out = r.stdout.toString().trim();
  const err = r.stderr.toString().trim();
  const last = out.split("\n").pop() ?? "";
  let result: ProbeResult | null = null;
  try {
    result = JSON.parse(last);
  } catch {}
  if (r.exitCode !== 0 || result === null || result.error) {
    const how = r.signalCode ? `killed by ${r.signalCode}` : `exit status ${r.exitCode}`;
    throw new Error(`probe "${experiment}" failed (${how}): ${result?.error ?? ""}\nstdout: ${out}\nstderr: ${err}`);
  }
  return result;
}

// ---------------------------------------------------------------------------------------------
// The probe side. Before an experiment's first unshare it may use only early.ts, flags.ts and node:fs.

/** What a test/kernel/early.ts call returns: null, or the failure with its errno. */
type Early = EarlyFailure | null;

/** Everything else of ffi/, loaded after the early steps. */
async function loadFfi() {
  const libcMod = await import("../../ffi/libc");
  // errno's table of names is made on first use (ffi/errno.ts): here, before an experiment takes the
  // process's right to start threads (a process limit of 0), which the work may need (JIT threads).
  libcMod.errnoName(1);
  const exp = await import("./experiments");
  const io = await import("../../ffi/io");
  const named = (f: Early) => (f ? libcMod.errnoName(f.errno) : "0");
  const ffiCalls = { setresuid: exp.setresuid, sethostname: exp.sethostname, mount: exp.mount, umount2: exp.umount2, unshare: exp.unshare, setrlimit: exp.setrlimit };
  return { ...libcMod, ...exp, ...io, named, ffiCalls };
}

const nsLink = (kind: string, pid: number | "self" = "self"): string => {
  try {
    return readlinkSync(`/proc/${pid}/ns/${kind}`);
  } catch (e) {
    return `(${(e as NodeJS.ErrnoException).code})`;
  }
};

const statusField = (field: string, pid: number | "self" = "self"): string =>
  readFileSync(`/proc/${pid}/status`, "utf8").match(new RegExp(`^${field}:\\s*(.*)$`, "m"))?.[1] ?? "";

const procSys = (name: string): string => readFileSync(`/proc/sys/${name}`, "utf8").trim();

const taskCount = (): number => readdirSync("/proc/self/task").length;

/** Host PIDs of the processes whose PID namespace is `ns`, with their NSpid lines. */
function membersOf(ns: string): Array<{ pid: number; nspid: string }> {
  const found: Array<{ pid: number; nspid: string }> = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (readlinkSync(`/proc/${name}/ns/pid`) === ns) found.push({ pid: Number(name), nspid: statusField("NSpid", Number(name)) });
    } catch {
      // gone, or not ours to look at
    }
  }
  return found;
}

/** The flags that make a PID namespace: an ordinary user needs a user namespace for it. */
const pidNsFlags = (): number => (process.getuid?.() === 0 ? F.CLONE_NEWPID : F.CLONE_NEWUSER | F.CLONE_NEWPID);

type Ffi = Awaited<ReturnType<typeof loadFfi>>;

const POLLIN = 0x1; // <poll.h>

/**
 * Starts `sh -c script` as the first child after unshare(CLONE_NEWPID), with pipes for its stdin and
 * stdout. It stays until stop() closes its stdin (the scripts end with `read line`). Reading uses
 * poll(2) with a timeout and blocking read(2): after CLONE_NEWPID this process can start no thread.
 */
function startInit(ffi: Ffi, script: string) {
  const { libc } = ffi;
  const [inRead, inWrite] = ffi.pipe(true);
  const [outRead, outWrite] = ffi.pipe(true);
  const child = Bun.spawn(["/bin/sh", "-c", script], { stdio: [inRead, outWrite, "inherit"], env: { PATH: "/usr/bin:/bin" } });
  libc.close(inRead);
  libc.close(outWrite);
  return {
    pid: child.pid,
    /** The child's output until `pattern` matches it, end of file, or `ms` pass. */
    readUntil(pattern: RegExp, ms: number): string {
      let text = "";
      const buf = Buffer.alloc(4096);
      const deadline = Date.now() + ms;
      while (!pattern.test(text) && Date.now() < deadline) {
        const pfd = new Int32Array([outRead, POLLIN]); // struct pollfd { int fd; short events, revents; }
        if (libc.poll(pfd, 1, Math.max(1, deadline - Date.now())) <= 0) continue;
        const n = Number(libc.read(outRead, buf, buf.length));
        if (n <= 0) break;
        text += buf.subarray(0, n).toString();
      }
      return text;
    },
    stop(): void {
      libc.close(inWrite);
    },
  };
}

/** Prints the result and ends the process with _exit(2): no shutdown work, which might want a thread. */
function finish(ffi: Ffi, result: ProbeResult): never {
  writeSync(1, `${JSON.stringify(result)}\n`);
  ffi.libc._exit(0);
  throw new Error("unreachable: _exit returned");
}

const experiments: Record<string, (args: string[]) => Promise<ProbeResult>> = {
  /** unshare(CLONE_NEWNS), then CLONE_NEWUSER, then CLONE_NEWNS again. */
  async "create-namespaces"() {
    const mountFirst = earlyUnshare(F.CLONE_NEWNS, "CLONE_NEWNS");
    const user = earlyUnshare(F.CLONE_NEWUSER, "CLONE_NEWUSER");
    const mountAfter = earlyUnshare(F.CLONE_NEWNS, "CLONE_NEWNS");
    const { named } = await loadFfi();
    return { mountFirst: named(mountFirst), user: named(user), mountAfter: named(mountAfter) };
  },

  /** chroot("/"), with args[0] "userns" after unshare(CLONE_NEWUSER). */
  async chroot([mode]) {
    const user = mode === "userns" ? earlyUnshare(F.CLONE_NEWUSER, "CLONE_NEWUSER") : null;
    const { named, chroot } = await loadFfi();
    return { uid: process.getuid?.(), user: named(user), chroot: chroot("/") };
  },

  /** Unmapped ids, then the rules for writing setgroups, gid_map and uid_map. */
  async "id-maps"() {
    const uid = process.getuid?.() ?? -1;
    const gid = process.getgid?.() ?? -1;
    const user = earlyUnshare(F.CLONE_NEWUSER, "CLONE_NEWUSER");
    const { named, libc, ffiCalls } = await loadFfi();
    const unmapped = { uid: libc.getuid(), setresuid: ffiCalls.setresuid(0) };
    const gidMapWithoutDeny = named(earlyWriteFile("/proc/self/gid_map", `0 ${gid} 1\n`));
    const deny = named(earlyWriteFile("/proc/self/setgroups", "deny"));
    const gidMap = named(earlyWriteFile("/proc/self/gid_map", `0 ${gid} 1\n`));
    const uidMapFirst = named(earlyWriteFile("/proc/self/uid_map", `0 ${uid} 1\n`));
    const uidMapSecond = named(earlyWriteFile("/proc/self/uid_map", `0 ${uid} 1\n`));
    const mapped = { uid: libc.getuid(), setresuid: ffiCalls.setresuid(0) };
    const root = statSync("/"); // owned by uid 0 and gid 0 outside, which the map leaves out
    const own = statSync("/proc/self"); // owned by the caller, which the map includes
    return {
      outside: { uid, gid },
      user: named(user),
      unmapped,
      gidMapWithoutDeny,
      deny,
      gidMap,
      uidMapFirst,
      uidMapSecond,
      uidMapNow: readFileSync("/proc/self/uid_map", "utf8").trim().split(/\s+/),
      mapped,
      rootDir: { uid: root.uid, gid: root.gid },
      ownDir: { uid: own.uid, gid: own.gid },
      overflowuid: Number(procSys("kernel/overflowuid")),
      overflowgid: Number(procSys("kernel/overflowgid")),
    };
  },

  /**
   * The capabilities a new user namespace gives, and what they do not reach: sethostname(2) and a
   * tmpfs mount in the UTS and mount namespaces the process still shares with its parent, then the
   * same calls in UTS and mount namespaces of the new user namespace's own. args[0]: a fresh, empty
   * folder for the mount.
   */
  async "capabilities"([dir]) {
    const capBefore = statusField("CapEff");
    const userBefore = nsLink("user");
    const user = earlyUnshare(F.CLONE_NEWUSER, "CLONE_NEWUSER");
    const { named, ffiCalls } = await loadFfi();
    // Without a new user namespace the calls below would be made with the caller's own rights (root's).
    if (user) return { user: named(user), skipped: "unshare(CLONE_NEWUSER) failed" };
    const capAfter = statusField("CapEff");
    const hostname = procSys("kernel/hostname");
    // The same name: even if the kernel allowed it, the host's hostname would not change.
    const sethostnameShared = ffiCalls.sethostname(hostname);
    const mountShared = ffiCalls.mount("nsrun-kernel", dir, "tmpfs", F.MS_NOSUID | F.MS_NODEV, "size=64k");
    if (mountShared === "0") ffiCalls.umount2(dir, F.MNT_DETACH); // the fact did not hold: undo at once
    const own = ffiCalls.unshare(F.CLONE_NEWUTS | F.CLONE_NEWNS);
    let sethostnameOwn = "not attempted";
    let mountOwn = "not attempted";
    if (own === "0") {
      sethostnameOwn = ffiCalls.sethostname(hostname);
      ffiCalls.mount(null, "/", null, F.MS_REC | F.MS_PRIVATE, null);
      mountOwn = ffiCalls.mount("nsrun-kernel", dir, "tmpfs", F.MS_NOSUID | F.MS_NODEV, "size=64k");
    }
    return {
      uid: process.getuid?.(),
      userBefore,
      userAfter: nsLink("user"),
      user: named(user),
      capBefore,
      capAfter,
      capLastCap: Number(procSys("kernel/cap_last_cap")),
      sethostnameShared,
      mountShared,
      own,
      sethostnameOwn,
      mountOwn,
    };
  },

  /** The hostname in a new UTS namespace, and a change of it there. */
  async uts() {
    const hostBefore = procSys("kernel/hostname");
    const utsBefore = nsLink("uts");
    const flags = process.getuid?.() === 0 ? F.CLONE_NEWUTS : F.CLONE_NEWUSER | F.CLONE_NEWUTS;
    const made = earlyUnshare(flags, F.flagNames(flags, F.CLONE_FLAGS));
    const { named, ffiCalls } = await loadFfi();
    const utsAfter = nsLink("uts");
    const inside = procSys("kernel/hostname");
    // Only in a UTS namespace that is certainly new: as root, a sethostname in the host's would rename the host.
    let set = "not attempted: no new UTS namespace";
    if (made === null && utsAfter !== utsBefore) set = ffiCalls.sethostname("nsrun-kernel-uts");
    return { unshare: named(made), hostBefore, utsBefore, utsAfter, inside, set, after: procSys("kernel/hostname") };
  },

  /** unshare(CLONE_NEWUSER) from a process with as many threads as it has (see runProbe's `threads`). */
  async "userns-threads"() {
    const tasks = taskCount();
    const user = earlyUnshare(F.CLONE_NEWUSER, "CLONE_NEWUSER");
    const { named } = await loadFfi();
    return { tasks, user: named(user) };
  },

  /**
   * The raw clone(2) with the thread flags, with and without CLONE_NEWPID. The process limit is 0
   * first, so that a clone that passes the kernel's flag checks stops at the limit (EAGAIN) and
   * creates nothing. The limit binds only an ordinary user; for root the probe refuses to try.
   */
  async "clone-newpid-thread"() {
    const { rawCloneRefused, CLONE_THREAD, CLONE_SIGHAND, CLONE_VM, ffiCalls } = await loadFfi();
    const thread = CLONE_THREAD | CLONE_SIGHAND | CLONE_VM; // a thread needs all three, or EINVAL for another reason
    const uid = process.getuid?.() ?? 0;
    const limit = ffiCalls.setrlimit(F.RLIMIT.nproc, 0, 0);
    if (uid === 0 || limit !== "0" || BigInt(`0x${statusField("CapEff")}`) !== 0n) {
      return { uid, limit, skipped: "needs an ordinary user without capabilities and a process limit of 0" };
    }
    return {
      uid,
      limit,
      thread: rawCloneRefused(thread),
      threadNewpid: rawCloneRefused(thread | F.CLONE_NEWPID),
    };
  },

  /**
   * After unshare(args[0] === "newpid" ? CLONE_NEWUSER|CLONE_NEWPID : CLONE_NEWUSER): clone(2) with the
   * flags pthread_create(3) uses, under a process limit of 0 (see above).
   */
  async "thread-after-unshare"([mode]) {
    const uid = process.getuid?.() ?? 0;
    const flags = mode === "newpid" ? F.CLONE_NEWUSER | F.CLONE_NEWPID : F.CLONE_NEWUSER;
    const made = earlyUnshare(flags, F.flagNames(flags, F.CLONE_FLAGS));
    const ffi = await loadFfi();
    const { named, ffiCalls, rawCloneRefused } = ffi;
    const pid = nsLink("pid");
    const limit = ffiCalls.setrlimit(F.RLIMIT.nproc, 0, 0);
    let clone = "not attempted";
    if (uid !== 0 && limit === "0" && made === null) {
      clone = rawCloneRefused(ffi.CLONE_VM | ffi.CLONE_FS | ffi.CLONE_FILES | ffi.CLONE_SIGHAND | ffi.CLONE_THREAD);
    }
    // No shutdown work: after CLONE_NEWPID this process may not start the threads it would want.
    return finish(ffi, { uid, unshare: named(made), pid, limit, clone });
  },

  /**
   * unshare(CLONE_NEWPID), then the caller's PID and PID namespace, pid_for_children before and after
   * the first child, a second unshare(CLONE_NEWPID), and a first child that reports its PID and the
   * parent an orphan of its own gets.
   */
  async "pid-unshare"() {
    const before = { pid: process.pid, ns: nsLink("pid"), forChildren: nsLink("pid_for_children") };
    const flags = pidNsFlags();
    const made = earlyUnshare(flags, F.flagNames(flags, F.CLONE_FLAGS));
    const ffi = await loadFfi();
    const { named, extra } = ffi;
    const after = { pid: extra.getpid(), ns: nsLink("pid"), forChildren: nsLink("pid_for_children") };
    const second = named(earlyUnshare(F.CLONE_NEWPID, "CLONE_NEWPID"));
    // The first child prints its PID and starts an orphan: the subshell in the middle exits at once,
    // and the grandchild asks for its parent after that (a new shell reads getppid(2) when it starts).
    const child = startInit(ffi, 'echo "first=$$"; ( ( sleep 0.3; exec sh -c \'echo "orphan-parent=$PPID"\' ) & ); read line');
    const withChild = { forChildren: nsLink("pid_for_children"), childNs: nsLink("pid", child.pid) };
    const output = child.readUntil(/orphan-parent=\d+\n/, 10_000);
    child.stop();
    return finish(ffi, {
      flags: F.flagNames(flags, F.CLONE_FLAGS),
      unshare: named(made),
      before,
      after,
      second,
      withChild,
      childPidOutside: child.pid,
      first: Number(output.match(/^first=(\d+)$/m)?.[1]),
      orphanParent: Number(output.match(/^orphan-parent=(\d+)$/m)?.[1]),
      output,
    });
  },

  /**
   * unshare(CLONE_NEWPID); a first child (PID 1) that starts a long sleep, then exits when we close
   * its stdin. Then: who is left in the namespace, and whether a new process can be started in it.
   */
  async "pid-init-exit"() {
    const flags = pidNsFlags();
    const made = earlyUnshare(flags, F.flagNames(flags, F.CLONE_FLAGS));
    const ffi = await loadFfi();
    const init = startInit(ffi, 'sleep 60 </dev/null >/dev/null 2>&1 & echo "sleeper=$!"; read line');
    const ns = nsLink("pid_for_children");
    const output = init.readUntil(/sleeper=\d+\n/, 10_000);
    const membersWhileRunning = membersOf(ns);
    init.stop(); // init's `read` sees end of file, and init exits
    const status = new Int32Array(1);
    const reaped = ffi.libc.waitpid(init.pid, status, 0);
    const membersAfter = membersOf(ns);
    let spawnAfter = "0";
    try {
      Bun.spawn(["/bin/true"], { stdio: ["ignore", "ignore", "ignore"] });
    } catch (e) {
      spawnAfter = String((e as NodeJS.ErrnoException).code ?? e);
    }
    return finish(ffi, {
      flags: F.flagNames(flags, F.CLONE_FLAGS),
      unshare: ffi.named(made),
      ns,
      initPidOutside: init.pid,
      sleeperInside: Number(output.match(/sleeper=(\d+)/)?.[1]),
      output,
      membersWhileRunning,
      initReaped: reaped === init.pid,
      membersAfter,
      spawnAfter,
    });
  },
};

async function main(): Promise<void> {
  const [name = "", ...args] = process.argv.slice(2);
  const experiment = experiments[name];
  let result: ProbeResult;
  try {
    if (!experiment) throw new Error(`no experiment "${name}"; known: ${Object.keys(experiments).join(", ")}`);
    result = await experiment(args);
  } catch (e) {
    result = { error: String((e as Error).stack ?? e) };
  }
  writeSync(1, `${JSON.stringify(result)}\n`);
  const { libc } = await import("../../ffi/libc");
  libc._exit(result.error ? 1 : 0);
}

if (import.meta.main) await main();
