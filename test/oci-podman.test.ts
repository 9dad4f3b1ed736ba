// podman end to end with nsrun as its OCI runtime (podman --runtime PATH), as root: run --rm,
// run -d + exec + stop + rm, run -it through the console socket, --memory/--pids-limit (read back
// from the host's cgroup). Skips, saying why, when podman is not installed or the tests are not root.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { spawnSync } from "bun";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { buildRootfs } from "../fixtures/build-rootfs";
import { installNsrun } from "../fixtures/oci/bundle";

const podman = spawnSync(["sh", "-c", "command -v podman"], { stdout: "pipe" }).stdout.toString().trim();
const root = (process.getuid?.() ?? 0) === 0;
const why = !podman ? "podman is not installed (apt-get install podman)" : !root ? "these podman tests run as root" : null;
let top = "";
let bin = "";
let rootfs = "";
const made: string[] = [];

// This sandbox's root may lack CAP_SYS_RESOURCE (CapBnd bit 24), and podman asks for nofile/nproc
// limits above the current hard limit, which only that capability allows: ask for ours instead.
const capBnd = BigInt(`0x${readFileSync("/proc/self/status", "utf8").match(/CapBnd:\s*(\w+)/)?.[1] ?? "0"}`);
const ulimits = capBnd & (1n << 24n) ? [] : ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=20000:20000"];

beforeAll(() => {
  if (why) return;
  top = mkdtempSync("/tmp/nsrun-podman-test-");
  chmodSync(top, 0o755);
  bin = installNsrun(join(top, "nsrun"));
  rootfs = buildRootfs(join(top, "rootfs"));
}, 120_000);

afterAll(() => {
  for (const id of made) spawnSync([podman, "--runtime", bin, "rm", "-f", id], { stdout: "ignore", stderr: "ignore" });
  if (top) rmSync(top, { recursive: true, force: true });
});

function pm(args: string[], timeout = 60_000) {
  const r = spawnSync([podman, "--runtime", bin, ...args], { stdout: "pipe", stderr: "pipe", stdin: "ignore", timeout });
  return { code: r.exitCode ?? 128, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

const podmanTest = (name: string, fn: () => void) => test(why ? `${name} (skipped: ${why})` : name, () => (why ? undefined : fn()), 120_000);

podmanTest("podman run --rm --rootfs DIR sh -c 'echo ok'", () => {
  const r = pm(["run", "--rm", ...ulimits, "--rootfs", rootfs, "/bin/sh", "-c", "echo ok"]);
  expect([r.code, r.stdout, r.stderr]).toEqual([0, "ok\n", ""]);
});

podmanTest("podman run -d, exec, stop, rm", () => {
  const r = pm(["run", "-d", ...ulimits, "--rootfs", rootfs, "/bin/sleep", "1000"]);
  expect(r.code).toBe(0);
  const id = r.stdout.trim();
  made.push(id);
  const e = pm(["exec", id, "sh", "-c", "echo exec-ok; cat /proc/1/cmdline"]);
  expect([e.code, e.stdout]).toEqual([0, "exec-ok\n/bin/sleep\u00001000\u0000"]);
  expect(pm(["inspect", "--format", "{{.State.Status}}", id]).stdout.trim()).toBe("running");
  expect(pm(["stop", "-t", "1", id]).code).toBe(0);
  expect(pm(["inspect", "--format", "{{.State.Status}}", id]).stdout.trim()).toBe("exited");
  expect(pm(["rm", id]).code).toBe(0);
});

podmanTest("podman run -it: a terminal through the console socket", () => {
  const cmd = [podman, "--runtime", bin, "run", "--rm", "-it", ...ulimits, "--rootfs", rootfs, "/bin/sh", "-c", "read go; tty; echo TERM=$TERM"].map((a) => `'${a.replaceAll("'", "'\\''")}'`).join(" ");
  // The box waits for a line typed at its terminal before it answers: podman's attach may come
  // after a quick container has printed and gone (runc loses that output too), and a line that
  // reaches the box through the attach proves the attach is there.
  const r = spawnSync(["script", "-qec", cmd, "/dev/null"], { stdin: Buffer.from("go\n"), stdout: "pipe", stderr: "pipe", timeout: 60_000 });
  expect(r.exitCode).toBe(0);
  expect(r.stdout.toString()).toMatch(/\/dev\/pts\/0\r?\nTERM=xterm/);
});

podmanTest("podman run --memory --pids-limit: the limits are in the container's cgroup", () => {
  const r = pm(["run", "-d", ...ulimits, "--memory", "64m", "--pids-limit", "50", "--rootfs", rootfs, "/bin/sleep", "1000"]);
  expect(r.code).toBe(0);
  const id = r.stdout.trim();
  made.push(id);
  const pid = Number(pm(["inspect", "--format", "{{.State.Pid}}", id]).stdout.trim());
  const cgroups = readFileSync(`/proc/${pid}/cgroup`, "utf8");
  const dir = (ctl: string) => `/sys/fs/cgroup/${ctl}${cgroups.match(new RegExp(`:${ctl}:(\\S+)`))?.[1]}`;
  if (existsSync("/sys/fs/cgroup/memory/memory.limit_in_bytes")) {
    expect(readFileSync(`${dir("memory")}/memory.limit_in_bytes`, "utf8").trim()).toBe(String(64 * 1024 * 1024));
    expect(readFileSync(`${dir("pids")}/pids.max`, "utf8").trim()).toBe("50");
  } else {
    expect(readFileSync(`/sys/fs/cgroup${cgroups.match(/^0::(\S+)/m)?.[1]}/memory.max`, "utf8").trim()).toBe(String(64 * 1024 * 1024));
  }
  expect(pm(["rm", "-f", id]).code).toBe(0);
});
