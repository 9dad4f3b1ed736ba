// The launcher (core/launch/): nothing a box can see is ever nsrun. A process in a container races,
// as an attacker would, for /proc/N/{exe,environ,mem,fd} of every process it can see
// (test/probes/procrace.c, static), while `nsrun exec` starts processes in that container and while
// a created container's process waits for `start`. Positive controls: the same probe opens all four
// of a process of the container's own (a sibling `sleep` holding an fd), so a probe that cannot
// open anything proves nothing; its own exe's device and inode match the file it runs from.
// Root and the ordinary user (nsrun-test); then the report pipe's records checked against the tape.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "bun";
import { chmodSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { keepOnlyFds } from "../core/stages/compile";
import { launch } from "../core/launch/launch";
import { SYNC } from "../core/launch/sync";
import { exitGroup, syncWithHost } from "../core/tape/calls";
import { Tape } from "../core/tape/tape";
import { REPORT } from "../ffi/executor/protocol";
import * as F from "../ffi/flags";
import { pipe } from "../ffi/io";
import { libc } from "../ffi/libc";
import { waitExit } from "../ffi/wait";
import { installNsrun, makeBundle, type Spec } from "../fixtures/oci/bundle";
import { type Actor, REPO, TEST_USER, waitFor } from "./helpers";
import { runAs } from "./runtimes";

const PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const SECRET = "NSRUN_PROBE_SECRET";
const isRoot = (process.getuid?.() ?? 0) === 0;
const hasUser = isRoot && spawnSync(["id", "-u", TEST_USER]).exitCode === 0;
const hasGcc = spawnSync(["sh", "-c", "command -v gcc"]).exitCode === 0;

let top = "";
let bin = "";
let probe = "";
const actors: Actor[] = [];
/** Container ids of this run's own (an OCI container's cgroup is named after its id). */
const RACE = `race-${process.pid}`;
const CREATED = `created-${process.pid}`;
const idOf = (flag: string) => Number(spawnSync(["id", flag, TEST_USER], { stdout: "pipe" }).stdout.toString().trim());

beforeAll(() => {
  top = mkdtempSync("/tmp/nsrun-launcher-test-");
  chmodSync(top, 0o755);
  bin = installNsrun(join(top, "nsrun"));
  probe = join(top, "procrace");
  if (hasGcc) {
    const r = spawnSync(["gcc", "-static", "-O2", "-o", probe, join(REPO, "test/probes/procrace.c")], { stderr: "pipe" });
    if (r.exitCode !== 0) throw new Error(`gcc test/probes/procrace.c: ${r.stderr}`);
  }
  if (isRoot) actors.push({ name: "root", uid: 0, gid: 0, area: join(top, "root") });
  if (hasUser) actors.push({ name: "user", uid: idOf("-u"), gid: idOf("-g"), area: join(top, "user") });
  if (!isRoot) actors.push({ name: "user", uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, area: join(top, "user") });
  for (const a of actors) {
    spawnSync(["mkdir", "-p", a.area]);
    spawnSync(["chown", `${a.uid}:${a.gid}`, a.area]);
  }
}, 120_000);

afterAll(() => {
  for (const a of actors) {
    const r = oci(a, ["list", "-q"]);
    for (const id of r.stdout.split("\n").filter(Boolean)) oci(a, ["delete", "--force", id]);
  }
  rmSync(top, { recursive: true, force: true });
});

/** nsrun as the actor, with the secret in nsrun's own environment; output through files (a created container keeps nsrun's stdio). */
function oci(a: Actor, args: string[]) {
  return runAs(a, bin, ["--root", join(a.area, "state"), ...args], { env: { PATH, [SECRET]: "the caller's secret" }, timeoutMs: 30_000 });
}

let bundles = 0;
function bundle(a: Actor, args: string[], edit: (s: Spec) => void = () => {}): string {
  const dir = join(a.area, `bundle${++bundles}`);
  const b = makeBundle(
    dir,
    (d) => {
      const r = oci(a, ["spec", ...(a.name === "user" ? ["--rootless"] : []), "--bundle", d]);
      if (r.code !== 0) throw new Error(r.stderr);
    },
    a,
    (s) => {
      s.process.args = args;
      s.mounts.push({ destination: "/tmp", type: "tmpfs", source: "tmpfs", options: ["mode=1777"] });
      edit(s);
    },
  );
  spawnSync(["cp", probe, join(b, "rootfs/procrace")]);
  spawnSync(["chown", `${a.uid}:${a.gid}`, join(b, "rootfs/procrace")]);
  return b;
}

interface Access {
  kind: "exe" | "environ" | "mem" | "fd";
  pid: number;
  comm: string;
  rest: string;
}
/** The probe's log: what it opened, with the opened process's name at that moment. */
function parse(log: string) {
  const seen = new Map<number, string>();
  const opened: Access[] = [];
  let self = "";
  for (const line of log.split("\n")) {
    const [kind, pid, ...rest] = line.split(" ");
    if (kind === "self") self = pid;
    else if (kind === "seen") seen.set(Number(pid), rest.join(" "));
    else if (kind === "exe" || kind === "environ" || kind === "mem" || kind === "fd") opened.push({ kind, pid: Number(pid), comm: rest[rest.length - 1], rest: rest.slice(0, -1).join(" ") });
  }
  return { seen, opened, self, ended: log.includes("\nend\n") };
}

const devIno = (path: string) => {
  const st = statSync(path);
  return `${st.dev}:${st.ino}`;
};

/** The container's own processes: what the probe may open. Anything else it opened would be nsrun's. */
const OWN = new Set(["sleep", "sh", "cat", "procrace", "touch", "test", "ps"]);

const forEachActor = (name: string, fn: (a: Actor) => Promise<void>, timeout = 120_000) => {
  for (const who of ["root", "user"] as const) {
    const why = !hasGcc ? "gcc is not installed (apt-get install gcc)" : who === "root" && !isRoot ? "the tests run as an ordinary user" : who === "user" && isRoot && !hasUser ? `no user ${TEST_USER} (test/helpers.ts makes it)` : null;
    if (why) console.warn(`skipped: ${name} (${who}): ${why}`);
    test.skipIf(why !== null)(`${name} (${who})${why ? ` (skipped: ${why})` : ""}`, async () => fn(actors.find((x) => x.name === who) as Actor), timeout);
  }
};

describe("nothing a container can see is ever nsrun", () => {
  forEachActor("during nsrun exec: no exe of nsrun's, none of the caller's environment, no mem or fd of a process before its command (control: a sibling's all four)", async (a) => {
    // The container: a sibling that holds fd 3 open (the control), and the probe, started once the
    // sibling has that fd (on a busy machine its shell may not have run its redirection yet).
    const b = bundle(a, ["sh", "-c", "sleep 1000 3>/tmp/held & echo $! > /tmp/sibling; while [ ! -e /proc/$!/fd/3 ]; do :; done; /procrace /tmp/stop NSRUN_PROBE_SECRET 60 /tmp/ready > /tmp/log; exec sleep 1000"]);
    expect(oci(a, ["create", "--bundle", b, RACE]).code).toBe(0);
    expect(oci(a, ["start", RACE]).code).toBe(0);
    expect(await waitFor(() => oci(a, ["exec", RACE, "test", "-e", "/tmp/ready"]).code === 0, 10_000)).toBe(true);
    for (let i = 0; i < 20; i++) {
      const r = oci(a, ["exec", RACE, "sleep", "0.05"]);
      expect([r.code, r.stderr]).toEqual([0, ""]);
    }
    expect(oci(a, ["exec", RACE, "touch", "/tmp/stop"]).code).toBe(0);
    expect(await waitFor(() => oci(a, ["exec", RACE, "cat", "/tmp/log"]).stdout.includes("\nend\n"), 10_000)).toBe(true);
    const log = parse(oci(a, ["exec", RACE, "cat", "/tmp/log"]).stdout);
    const siblingPid = Number(oci(a, ["exec", RACE, "cat", "/tmp/sibling"]).stdout);
    oci(a, ["delete", "--force", RACE]);

    // Controls: the probe's fstat of an exe works, and it opened everything of the sibling.
    expect(log.self).toBe(devIno(join(b, "rootfs/procrace")));
    // The sibling by its PID: its name passes through "sh" (the subshell) and "exe" (busybox
    // re-executing itself for the applet) before "sleep", and the probe may catch it at any of them.
    expect(siblingPid).toBeGreaterThan(1);
    const sibling = log.opened.filter((o) => o.pid === siblingPid);
    expect(new Set(sibling.map((o) => o.kind))).toEqual(new Set(["exe", "environ", "mem", "fd"]));
    // The exec'd commands were seen and their environments read: what the process spec gives, not nsrun's.
    expect(log.opened.filter((o) => o.kind === "environ").length).toBeGreaterThan(1);

    // The attack: nothing the probe opened was nsrun's file, held the caller's environment, or was a
    // process other than the container's own commands.
    const nsrunFile = devIno(bin);
    expect(log.opened.filter((o) => o.kind === "exe" && o.rest === nsrunFile)).toEqual([]);
    expect(log.opened.filter((o) => o.kind === "environ" && o.rest === "SECRET")).toEqual([]);
    // (busybox runs an applet by exec'ing /proc/self/exe: its name is then "exe", its file busybox.)
    const busybox = devIno(join(b, "rootfs/bin/busybox"));
    const own = (o: Access) => OWN.has(o.comm) || log.opened.some((x) => x.pid === o.pid && x.kind === "exe" && x.rest === busybox);
    expect(log.opened.filter((o) => !own(o))).toEqual([]);
    console.log(`${a.name}: the probe saw ${log.seen.size} processes, opened ${log.opened.length} things, all of the container's own commands`);
  });

  forEachActor("a created container's process is out of reach until start, whose command then runs under its filter (control: after start, the command is reachable)", async (a) => {
    const b = bundle(a, ["sh", "-c", "grep Seccomp: /proc/self/status > /tmp/seccomp; exec sleep 1000"], (s) => {
      s.linux.seccomp = { defaultAction: "SCMP_ACT_ALLOW", architectures: ["SCMP_ARCH_X86_64"], syscalls: [{ names: ["keyctl"], action: "SCMP_ACT_ERRNO" }] };
    });
    expect(oci(a, ["create", "--bundle", b, CREATED]).code).toBe(0);
    const before = oci(a, ["exec", CREATED, "/procrace", "/nonexistent", SECRET, "1"]);
    if (a.name === "user") {
      // An ordinary user may not read the namespaces of a process that is not dumpable: exec into a
      // created container fails closed, naming why.
      expect(before.code).not.toBe(0);
      expect(before.stderr).toMatch(/EACCES|permission denied/i);
    } else {
      expect([before.code, before.stderr]).toEqual([0, ""]);
      const waiting = parse(before.stdout);
      expect(waiting.ended).toBe(true);
      expect(waiting.seen.has(1)).toBe(true);
      expect(waiting.opened.filter((o) => o.pid === 1)).toEqual([]);
    }
    expect(oci(a, ["start", CREATED]).code).toBe(0);
    expect(await waitFor(() => oci(a, ["exec", CREATED, "cat", "/tmp/seccomp"]).stdout.includes("Seccomp:"), 10_000)).toBe(true);
    expect(oci(a, ["exec", CREATED, "cat", "/tmp/seccomp"]).stdout.trim()).toBe("Seccomp:\t2");
    // Control: the same probe now opens the container's command, PID 1, which is the container's own.
    const after = parse(oci(a, ["exec", CREATED, "/procrace", "/nonexistent", SECRET, "1"]).stdout);
    expect(after.opened.filter((o) => o.pid === 1 && o.kind === "environ")).toEqual([{ kind: "environ", pid: 1, comm: "sleep", rest: "ok" }]);
    oci(a, ["delete", "--force", CREATED]);
  });
});

describe("the report pipe takes only what the tape sends", () => {
  async function launched(build: (t: Tape, report: number, sync: number) => void, handlers = {}) {
    const [reportRead, reportWrite] = pipe(true);
    const [syncRead, syncWrite] = pipe(true);
    const t = new Tape();
    t.reportFd = reportWrite;
    t.stage("namespaces", "test");
    keepOnlyFds(t, [reportWrite, syncRead]);
    build(t, reportWrite, syncRead);
    const run = await launch(t, { report: [reportRead, reportWrite], syncWrite, sync: handlers });
    libc.close(syncRead);
    libc.close(syncWrite);
    const exit = await waitExit(run.pidfd);
    libc.close(run.pidfd);
    return { run, exit };
  }
  /** A record written by the tape itself, as a hostile writer of the pipe would. */
  const forge = (t: Tape, report: number, kind: number, value: number) => {
    const rec = t.struct(16, "{forged}", [[0, 4, kind], [4, 4, 0], [8, 8, value]]);
    t.sys("write", [report, rec, 16], () => `write(${report}, {forged}, 16)`);
  };

  test("a PID record from a tape that forks nothing, or a sync point it does not stop at, is refused and the process killed (control: its own sync point is answered)", async () => {
    const pid = await launched((t, report, syncFd) => {
      forge(t, report, REPORT.PID, 1);
      // Then wait for an answer nobody sends: only the launcher's SIGKILL ends it.
      t.sys("read", [syncFd, t.slot(16, "answer"), 16], () => `read(${syncFd}, answer, 16)`);
      exitGroup(t, 0);
    });
    expect(pid.run.failure?.kind).toBe("protocol");
    expect(pid.run.failure?.message).toMatch(/^report pipe: a PID record .* refused, and the process killed$/);
    expect(pid.exit.signal).toBe(9);

    const sync = await launched((t, report) => {
      forge(t, report, REPORT.SYNC, SYNC.NETWORK);
      exitGroup(t, 0);
    });
    expect(sync.run.failure?.message).toMatch(/sync point NETWORK, which the tape does not stop at/);

    let answered = 0;
    const control = await launched(
      (t, report, syncFd) => {
        syncWithHost(t, report, syncFd, SYNC.ID_MAPS, "a sync point of its own");
        exitGroup(t, 7);
      },
      { [SYNC.ID_MAPS]: () => void answered++ },
    );
    expect([control.run.failure, answered, control.exit.code]).toEqual([null, 1, 7]);
  });

  test("a tape that forks has its sync points answered for the forked process, also when its parent reports the PID late (control: the PID record's value)", async () => {
    let seen = -1;
    const { run } = await launched(
      (t, report, syncFd) => {
        // The parent reports its child only after a pause (as a parent the scheduler left waiting
        // would); the child stops at a sync point at once.
        t.expects.pid = true;
        const child = t.reg("child");
        const inChild = t.label("in_child");
        t.sys("clone", [F.CLONE_PARENT | F.SIGCHLD, 0, 0, 0, 0], () => "clone(CLONE_PARENT|SIGCHLD)", { dst: child });
        t.jumpIf(child, "EQ", 0, inChild);
        const pause = t.bytes(new Uint8Array(new BigInt64Array([0n, 200_000_000n]).buffer), "{0, 200ms}");
        t.sys("ppoll", [0, 0, pause, 0, 8], () => "ppoll(NULL, 0, {0, 200ms}, NULL, 8)");
        const record = t.struct(16, "{PID, child}", [[0, 4, REPORT.PID]]);
        t.store(child, t.field(record, 8, "record.value"), 8);
        t.sys("write", [report, record, 16], () => `write(${report}, {PID, child}, 16)`);
        exitGroup(t, 0);
        t.place(inChild);
        syncWithHost(t, report, syncFd, SYNC.ID_MAPS, "a sync point in the forked process");
        exitGroup(t, 0);
      },
      { [SYNC.ID_MAPS]: (pid: number) => void (seen = pid) },
    );
    expect(run.failure).toBeNull();
    expect(run.forked).not.toBeNull();
    expect(seen).toBe(run.forked as number);
    expect(seen).not.toBe(run.pid);
  });

  test("sync point ids are distinct", () => {
    const ids = Object.values(SYNC);
    expect(new Set(ids).size).toBe(ids.length);
  });
});
