// The kernel's rules, as experiments: the pid_namespaces(7) facts that need a whole box, made with
// the compiled nsrun (dist/nsrun) and the sample config, as the user that runs the tests. The
// assertion messages name the fact that did not hold.
import { expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, readlinkSync } from "node:fs";
import { resolve } from "node:path";

const REPO = resolve(import.meta.dir, "../..");
const NSRUN = `${REPO}/dist/nsrun`;
const CONFIG = `${REPO}/fixtures/configs/minimal.toml`;
const PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const missing = [NSRUN, CONFIG, `${REPO}/fixtures/rootfs/bin/sh`].filter((p) => !existsSync(p));
if (missing.length) console.warn(`skipped: the box experiments need ${missing.join(", ")} (bun run build && bun run fixtures)`);
const boxTest = test.skipIf(missing.length > 0);

const boxArgs = (script: string, marker = "sh") => [NSRUN, "run", "--config", CONFIG, "--", "/bin/sh", "-c", script, marker];

/** Runs `sh -c script` as the box's PID 1 and waits for it. */
function box(script: string) {
  const r = Bun.spawnSync(boxArgs(script), { cwd: "/tmp", env: { PATH }, stdin: "ignore", stdout: "pipe", stderr: "pipe", timeout: 30_000 });
  return { code: r.exitCode, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

const SIGTERM_BIT = 1n << 14n; // bit N-1 of SigCgt/SigIgn is signal N; SIGTERM is 15

boxTest("pid_namespaces(7), 'The namespace init process': PID 1 does not get a signal it has no handler for, even SIGTERM sent from inside", () => {
  const r = box('grep -E "^Sig(Cgt|Ign):" /proc/1/status; kill -TERM 1; echo "alive kill=$?"; sleep 5 & kill -TERM $!; wait $!; echo "child=$?"');
  // stderr has the shell's "Terminated" for the child; a failure of nsrun itself shows in the exit status.
  const cgt = BigInt(`0x${r.stdout.match(/^SigCgt:\s*(\w+)/m)?.[1] ?? "ffff"}`);
  const ign = BigInt(`0x${r.stdout.match(/^SigIgn:\s*(\w+)/m)?.[1] ?? "ffff"}`);
  expect(cgt & SIGTERM_BIT, "the box's PID 1 (sh) should have no SIGTERM handler, or the experiment shows nothing").toBe(0n);
  expect(ign & SIGTERM_BIT, "the box's PID 1 (sh) should not ignore SIGTERM itself, or the experiment shows nothing").toBe(0n);
  expect(r.stdout, "PID 1 should survive `kill -TERM 1` from inside its namespace (kill(2) returns 0, nothing is delivered)").toContain("alive kill=0");
  expect(r.stdout, "control: an ordinary child in the same box should die of SIGTERM (status 128+15)").toContain("child=143");
  expect(r.code, "the box should exit 0: its PID 1 ran to the end").toBe(0);
  // Control: the same shell, not PID 1, dies of its own SIGTERM.
  const outside = Bun.spawnSync(["/bin/sh", "-c", "kill -TERM $$; echo alive"], { env: { PATH }, stdout: "pipe" });
  expect(outside.signalCode, "control: outside a box, `sh -c 'kill -TERM $$'` should be killed by SIGTERM").toBe("SIGTERM");
  expect(outside.stdout.toString(), "control: outside a box the shell should not get to echo").toBe("");
});

boxTest("pid_namespaces(7), '/proc files': /proc/sys/kernel/ns_last_pid shows the last PID allocated in the reader's own PID namespace", () => {
  // cat is the last process the box creates, so it reads its own PID there.
  const r = box('cat /proc/sys/kernel/ns_last_pid & echo "started=$!"; wait');
  expect(r.stderr, "the box should run without errors").toBe("");
  const started = Number(r.stdout.match(/^started=(\d+)$/m)?.[1]);
  const read = Number(r.stdout.match(/^(\d+)$/m)?.[1]);
  const host = Number(readFileSync("/proc/sys/kernel/ns_last_pid", "utf8"));
  expect(read, `inside the box, ns_last_pid should be the PID the box just gave cat (output: ${JSON.stringify(r.stdout)})`).toBe(started);
  expect(read, "the box's PIDs should count from 1, so its last PID is small").toBeLessThan(100);
  expect(host, "the host's ns_last_pid should be its own counter, not the box's").not.toBe(read);
});

/** Reads a process's stdout until `pattern` matches, or `ms` pass. */
async function readUntil(stream: ReadableStream<Uint8Array>, pattern: RegExp, ms: number): Promise<string> {
  const reader = stream.getReader();
  let text = "";
  const deadline = Date.now() + ms;
  try {
    while (!pattern.test(text) && Date.now() < deadline) {
      const chunk = await Promise.race([reader.read(), Bun.sleep(deadline - Date.now()).then(() => null)]);
      if (!chunk || chunk.done) break;
      text += new TextDecoder().decode(chunk.value);
    }
  } finally {
    reader.releaseLock();
  }
  return text;
}

/** Host processes whose command line contains `marker`, in a PID namespace other than ours. */
function hostProcessesWith(marker: string): number[] {
  const ours = readlinkSync("/proc/self/ns/pid");
  return readdirSync("/proc")
    .filter((name) => /^\d+$/.test(name))
    .filter((name) => {
      try {
        return readFileSync(`/proc/${name}/cmdline`, "utf8").includes(marker) && readlinkSync(`/proc/${name}/ns/pid`) !== ours;
      } catch {
        return false;
      }
    })
    .map(Number);
}

/** A field of /proc/PID/status as this (host) process sees it; "" once the process is gone. */
function status(pid: number, field: string): string {
  try {
    return readFileSync(`/proc/${pid}/status`, "utf8").match(new RegExp(`^${field}:\\s*(.*)$`, "m"))?.[1] ?? "";
  } catch {
    return "";
  }
}

boxTest("pid_namespaces(7), '/proc and PID namespaces' and 'Nesting PID namespaces': the box's /proc shows only its processes; the host's /proc shows them with their outer PIDs too (NSpid)", async () => {
  const marker = `nsrun-kernel-proc-${process.pid}-${Date.now()}`;
  const script = 'sleep 30 & echo "sleeper=$!"; echo "procs=$(cd /proc && echo [0-9]*)"; wait';
  const proc = Bun.spawn(boxArgs(script, marker), { cwd: "/tmp", env: { PATH }, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  try {
    const out = await readUntil(proc.stdout, /^procs=.*$/m, 20_000);
    const sleeper = Number(out.match(/^sleeper=(\d+)$/m)?.[1]);
    const inside = (out.match(/^procs=(.*)$/m)?.[1] ?? "").trim().split(/\s+/).map(Number);
    expect(inside, `the box's /proc should list its PID 1 and its sleep (output: ${JSON.stringify(out)})`).toEqual(expect.arrayContaining([1, sleeper]));
    expect(inside.length, "the box's /proc should list only the few processes of the box").toBeLessThanOrEqual(5);
    expect(inside, "the box's /proc should not list the test process").not.toContain(process.pid);

    const [init] = hostProcessesWith(marker).filter((pid) => status(pid, "NSpid").endsWith("\t1"));
    expect(init, "the host's /proc should show the box's PID 1, found by its command line").toBeGreaterThan(0);
    expect(status(init, "NSpid"), "the host's /proc should show the box's PID 1 with its host PID and its PID 1 inside").toBe(`${init}\t1`);
    const children = readdirSync("/proc").filter((n) => /^\d+$/.test(n) && status(Number(n), "PPid") === String(init)).map(Number);
    const shown = children.map((pid) => `${pid}: ${status(pid, "NSpid")}`);
    expect(
      children.some((pid) => status(pid, "NSpid") === `${pid}\t${sleeper}`),
      `the host's /proc should show the box's sleep with its host PID and the PID ${sleeper} the box gave it (children of ${init}: ${shown.join(", ")})`,
    ).toBe(true);
    expect(inside, "the box's /proc should not list the host PID of its own PID 1").not.toContain(init);
  } finally {
    proc.kill();
    await proc.exited;
  }
});
