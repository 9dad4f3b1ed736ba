// containerd end to end with nsrun as the runc binary of its io.containerd.runc.v2 shim, driven by
// ctr: run --rm, run -d + task exec + task ps + task kill + task rm. The test starts a containerd of
// its own (its own root, state and socket in a temporary folder, the CRI plugin off), so it touches
// no containerd the host runs. Root only: rootless containerd needs rootlesskit, which Debian's
// containerd package does not bring. Skips, saying why.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type Subprocess, spawn, spawnSync } from "bun";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { buildRootfs } from "../fixtures/build-rootfs";
import { installNsrun } from "../fixtures/oci/bundle";
import { waitFor } from "./helpers";

const have = (p: string) => spawnSync(["sh", "-c", `command -v ${p}`]).exitCode === 0;
const root = (process.getuid?.() ?? 0) === 0;
const why = !have("containerd") || !have("ctr") ? "containerd is not installed (apt-get install containerd)" : !root ? "these containerd tests run as root" : null;
if (why) console.warn(`skipped: containerd: ${why}`);
const skipped = why ? ` (skipped: ${why})` : "";

/** ctr's namespace: the shim gives nsrun `--root /run/containerd/runc/NAMESPACE`. */
const NAMESPACE = `nsrun-test-${process.pid}`;
const runtimeRoot = `/run/containerd/runc/${NAMESPACE}`;
/** The shim keeps its sockets in /run/containerd/s, nsrun its state in /run/containerd/runc, ctr exec its FIFOs in /run/containerd/fifo: removed after if new. */
const madeRunFolders = ["/run/containerd/runc", "/run/containerd/s", "/run/containerd/fifo", "/run/containerd"].filter((d) => !existsSync(d));
let top = "";
let bin = "";
let rootfs = "";
let daemon: Subprocess | null = null;

function ctr(args: string[], timeout = 60_000) {
  const r = spawnSync(["ctr", "--address", join(top, "containerd.sock"), "--namespace", NAMESPACE, ...args.slice(0, 1), ...(args[0] === "run" ? ["--fifo-dir", join(top, "fifo")] : []), ...args.slice(1)], { stdout: "pipe", stderr: "pipe", stdin: "ignore", timeout });
  return { code: r.exitCode ?? 128, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

beforeAll(async () => {
  if (why) return;
  top = mkdtempSync("/tmp/nsrun-containerd-test-");
  chmodSync(top, 0o755);
  bin = installNsrun(join(top, "nsrun"));
  rootfs = buildRootfs(join(top, "rootfs"));
  const config = join(top, "config.toml");
  writeFileSync(
    config,
    [
      "version = 2",
      `root = "${top}/root"`,
      `state = "${top}/state"`,
      'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
      "[grpc]",
      `  address = "${top}/containerd.sock"`,
      "[ttrpc]",
      `  address = "${top}/containerd.sock.ttrpc"`,
      "",
    ].join("\n"),
  );
  daemon = spawn(["containerd", "--config", config], { stdout: "ignore", stderr: Bun.file(join(top, "containerd.log")) });
  // Ready when it answers on its socket.
  const ready = await waitFor(() => existsSync(join(top, "containerd.sock")) && ctr(["version"], 5_000).code === 0, 30_000);
  if (!ready) throw new Error(`containerd did not start: see ${top}/containerd.log`);
}, 120_000);

afterAll(async () => {
  if (daemon) {
    for (const id of ctr(["task", "ls", "-q"]).stdout.split("\n").filter(Boolean)) {
      ctr(["task", "kill", "-s", "SIGKILL", id]);
      ctr(["task", "rm", "-f", id]);
    }
    for (const id of ctr(["container", "ls", "-q"]).stdout.split("\n").filter(Boolean)) ctr(["container", "rm", id]);
    daemon.kill("SIGTERM");
    await daemon.exited;
  }
  if (top) rmSync(top, { recursive: true, force: true });
  rmSync(runtimeRoot, { recursive: true, force: true });
  for (const dir of madeRunFolders) {
    try {
      rmdirSync(dir); // only if empty: another containerd may have started meanwhile
    } catch {}
  }
});

describe("containerd (ctr) with nsrun as the runc binary", () => {
  test.skipIf(why !== null)(`ctr run --rm: the command's output and exit status${skipped}`, () => {
    const r = ctr(["run", "--rm", "--runc-binary", bin, "--rootfs", rootfs, "echo1", "/bin/sh", "-c", "echo hi; exit 3"]);
    expect([r.code, r.stdout]).toEqual([3, "hi\n"]);
  }, 120_000);

  test.skipIf(why !== null)(`ctr run -d, task exec, task ps, task kill, task rm${skipped}`, async () => {
    expect(ctr(["run", "-d", "--runc-binary", bin, "--rootfs", rootfs, "sleeper", "/bin/sleep", "1000"]).code).toBe(0);
    expect(ctr(["task", "ls"]).stdout).toMatch(/sleeper\s+\d+\s+RUNNING/);
    const e = ctr(["task", "exec", "--exec-id", "e1", "sleeper", "/bin/sh", "-c", "echo exec-ok; cat /proc/1/cmdline"]);
    expect([e.code, e.stdout]).toEqual([0, "exec-ok\n/bin/sleep\u00001000\u0000"]);
    // task ps lists the container's processes as nsrun ps reports them: the sleeper's host PID.
    const pid = ctr(["task", "ls"]).stdout.match(/sleeper\s+(\d+)/)?.[1];
    expect(ctr(["task", "ps", "sleeper"]).stdout).toContain(`${pid}`);
    expect(ctr(["task", "kill", "-s", "SIGKILL", "sleeper"]).code).toBe(0);
    // The shim reports the exit when it reaps the process; task rm wants it stopped.
    expect(await waitFor(() => /sleeper\s+\d+\s+STOPPED/.test(ctr(["task", "ls"]).stdout), 30_000)).toBe(true);
    expect(ctr(["task", "rm", "sleeper"]).code).toBe(0);
    expect(ctr(["container", "rm", "sleeper"]).code).toBe(0);
    // nsrun's state for the container is gone with it (control: the folder nsrun keeps it in exists).
    expect(existsSync(runtimeRoot)).toBe(true);
    expect(existsSync(join(runtimeRoot, "sleeper"))).toBe(false);
  }, 120_000);

  // ctr's exec process carries the container's capabilities with the uid asked for, as runc takes
  // it: the sets as given, and execve(2) leaves a process with another uid none (no ambient ones).
  test.skipIf(why !== null)(`ctr task exec --user 1000: no capabilities; control: the same exec as root keeps them; task pause/resume${skipped}`, async () => {
    expect(ctr(["run", "-d", "--runc-binary", bin, "--rootfs", rootfs, "capper", "/bin/sleep", "1000"]).code).toBe(0);
    const caps = "id -u; grep -E '^Cap(Eff|Prm|Amb)' /proc/self/status";
    const user = ctr(["task", "exec", "--user", "1000", "--exec-id", "u1", "capper", "/bin/sh", "-c", caps]);
    expect([user.code, user.stdout]).toEqual([0, "1000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\nCapAmb:\t0000000000000000\n"]);
    const rootExec = ctr(["task", "exec", "--exec-id", "u2", "capper", "/bin/sh", "-c", caps]);
    expect(rootExec.code).toBe(0);
    expect(rootExec.stdout).toMatch(/^0\nCapPrm:\t0*[1-9a-f][0-9a-f]*\n/);
    // pause freezes the container's cgroup (nsrun pause), resume thaws it.
    expect(ctr(["task", "pause", "capper"]).code).toBe(0);
    expect(ctr(["task", "ls"]).stdout).toMatch(/capper\s+\d+\s+PAUSED/);
    const pid = ctr(["task", "ls"]).stdout.match(/capper\s+(\d+)/)?.[1];
    const freezer = readFileSync(`/proc/${pid}/cgroup`, "utf8").match(/:freezer:(\S+)/)?.[1];
    if (freezer) expect(readFileSync(`/sys/fs/cgroup/freezer${freezer}/freezer.state`, "utf8").trim()).toBe("FROZEN");
    expect(ctr(["task", "resume", "capper"]).code).toBe(0);
    expect(ctr(["task", "ls"]).stdout).toMatch(/capper\s+\d+\s+RUNNING/);
    if (freezer) expect(readFileSync(`/sys/fs/cgroup/freezer${freezer}/freezer.state`, "utf8").trim()).toBe("THAWED");
    expect(ctr(["task", "kill", "-s", "SIGKILL", "capper"]).code).toBe(0);
    expect(await waitFor(() => /capper\s+\d+\s+STOPPED/.test(ctr(["task", "ls"]).stdout), 30_000)).toBe(true);
    expect(ctr(["task", "rm", "capper"]).code).toBe(0);
    expect(ctr(["container", "rm", "capper"]).code).toBe(0);
  }, 120_000);
});
