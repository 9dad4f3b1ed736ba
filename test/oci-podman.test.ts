// podman end to end with nsrun as its OCI runtime (podman --runtime PATH), as root and rootless:
// run --rm, run -d + exec + stop + rm, run -it through the console socket, a non-root user, and as
// root --memory/--pids-limit read back from the host's cgroup (rootless podman ignores limits on
// cgroup v1; test:vm covers limits on v2). Rootless podman runs nsrun inside its own user namespace,
// as uid 0 there: nsrun must still take it for an ordinary user (state in $XDG_RUNTIME_DIR/nsrun).
// Skips, saying why, when podman is not installed or an actor cannot run it.
import { afterAll, describe, expect, test } from "bun:test";
import { spawnSync } from "bun";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { type Actor, command, setupTestArea } from "./helpers";

const podman = spawnSync(["sh", "-c", "command -v podman"], { stdout: "pipe" }).stdout.toString().trim();
const area = setupTestArea();

// This sandbox's root may lack CAP_SYS_RESOURCE (CapBnd bit 24), and podman asks for nofile/nproc
// limits above the current hard limit, which only that capability allows: ask for ours instead.
const capBnd = BigInt(`0x${readFileSync("/proc/self/status", "utf8").match(/CapBnd:\s*(\w+)/)?.[1] ?? "0"}`);
const ulimits = capBnd & (1n << 24n) ? [] : ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=20000:20000"];

/** Why `a` cannot run podman here, or null. */
function whyNot(a: Actor): string | null {
  if (!podman) return "podman is not installed (apt-get install podman)";
  if (a.name === "root") return null;
  const name = spawnSync(["id", "-un", String(a.uid)], { stdout: "pipe" }).stdout.toString().trim();
  const listed = (file: string) => existsSync(file) && readFileSync(file, "utf8").split("\n").some((l) => l.startsWith(`${name}:`) || l.startsWith(`${a.uid}:`));
  if (!listed("/etc/subuid") || !listed("/etc/subgid")) return `rootless podman needs ranges for ${name || a.uid} in /etc/subuid and /etc/subgid`;
  if (!existsSync("/usr/bin/newuidmap")) return "rootless podman needs newuidmap (apt-get install uidmap)";
  return null;
}

/** The actor's own podman: its HOME (storage) and XDG_RUNTIME_DIR (podman's and nsrun's state) inside its test area. */
function podmanFor(a: Actor) {
  const home = join(a.area, "podman-home");
  const runtimeDir = join(a.area, "podman-run");
  mkdirSync(home, { recursive: true });
  mkdirSync(runtimeDir, { recursive: true, mode: 0o700 });
  if (a.name === "user") spawnSync(["chown", `${a.uid}:${a.gid}`, home, runtimeDir]);
  const env = { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", HOME: home, XDG_RUNTIME_DIR: runtimeDir, USER: spawnSync(["id", "-un", String(a.uid)], { stdout: "pipe" }).stdout.toString().trim() };
  const argv = (args: string[]) => command(podman, a, ["--runtime", area.bin, ...args]);
  const pm = (args: string[], timeout = 60_000) => {
    const r = spawnSync(argv(args), { env, cwd: a.area, stdout: "pipe", stderr: "pipe", stdin: "ignore", timeout });
    return { code: r.exitCode ?? 128, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
  };
  return { env, argv, pm, runtimeDir };
}

const made: Array<() => void> = [];
afterAll(() => {
  for (const undo of made) undo();
  area.cleanup();
});

for (const a of area.actors) {
  const why = whyNot(a);
  if (why) console.warn(`skipped: podman as ${a.name}: ${why}`);
  const skipped = why ? ` (skipped: ${why})` : "";
  const rootfs = join(a.area, "rootfs");
  const { env, argv, pm, runtimeDir } = podmanFor(a);
  const ids: string[] = [];
  if (!why)
    made.push(() => {
      for (const id of ids) pm(["rm", "-f", id]);
      // Its storage holds files of the user's subordinate ids, which only its user namespace may remove.
      if (a.name === "user") pm(["unshare", "rm", "-rf", join(env.HOME, ".local")]);
      // Rootless podman leaves a pause process (catatonit) that holds its user namespace: ours
      // is the one whose PID file is in this test's runtime folder. Last: `podman unshare` needs it.
      const pause = join(runtimeDir, "libpod/tmp/pause.pid");
      if (existsSync(pause)) spawnSync(["kill", "-9", readFileSync(pause, "utf8").trim()]);
    });

  describe(`podman as ${a.name}`, () => {
    const podmanTest = (name: string, fn: () => void) => test.skipIf(why !== null)(`${name}${skipped}`, fn, 120_000);

    podmanTest("podman run --rm --rootfs DIR sh -c 'echo ok'", () => {
      const r = pm(["run", "--rm", ...ulimits, "--rootfs", rootfs, "/bin/sh", "-c", "echo ok"]);
      expect([r.code, r.stdout, r.stderr.replace(/^.*is not a shared mount.*\n/m, "")]).toEqual([0, "ok\n", ""]);
    });

    podmanTest("podman run -d, exec, stop, rm", () => {
      const r = pm(["run", "-d", ...ulimits, "--rootfs", rootfs, "/bin/sleep", "1000"]);
      expect(r.code).toBe(0);
      const id = r.stdout.trim();
      ids.push(id);
      const e = pm(["exec", id, "sh", "-c", "echo exec-ok; cat /proc/1/cmdline"]);
      expect([e.code, e.stdout]).toEqual([0, "exec-ok\n/bin/sleep\u00001000\u0000"]);
      expect(pm(["inspect", "--format", "{{.State.Status}}", id]).stdout.trim()).toBe("running");
      expect(pm(["stop", "-t", "1", id]).code).toBe(0);
      expect(pm(["inspect", "--format", "{{.State.Status}}", id]).stdout.trim()).toBe("exited");
      expect(pm(["rm", id]).code).toBe(0);
    });

    podmanTest("podman run --user 1000:1000: the command runs as that user (control: the default is root)", () => {
      const asUser = pm(["run", "--rm", ...ulimits, "--user", "1000:1000", "--rootfs", rootfs, "/bin/sh", "-c", "id -u; id -g"]);
      expect([asUser.code, asUser.stdout]).toEqual([0, "1000\n1000\n"]);
      const asRoot = pm(["run", "--rm", ...ulimits, "--rootfs", rootfs, "/bin/sh", "-c", "id -u"]);
      expect([asRoot.code, asRoot.stdout]).toEqual([0, "0\n"]);
    });

    podmanTest("podman run -it: a terminal through the console socket", () => {
      const cmd = [...argv(["run", "--rm", "-it", ...ulimits, "--rootfs", rootfs, "/bin/sh", "-c", "read go; tty; echo TERM=$TERM"])]
        .map((s) => `'${s.replaceAll("'", "'\\''")}'`)
        .join(" ");
      // The box waits for a line typed at its terminal before it answers: podman's attach may come
      // after a quick container has printed and gone (runc loses that output too), and a line that
      // reaches the box through the attach proves the attach is there.
      const r = spawnSync(["script", "-qec", cmd, "/dev/null"], { env, cwd: a.area, stdin: Buffer.from("go\n"), stdout: "pipe", stderr: "pipe", timeout: 60_000 });
      expect(r.exitCode).toBe(0);
      expect(r.stdout.toString()).toMatch(/\/dev\/pts\/0\r?\nTERM=xterm/);
    });

    // Rootless podman applies no limits on cgroup v1 (it says so and runs the container without them).
    if (a.name === "root")
      podmanTest("podman run --memory --pids-limit: the limits are in the container's cgroup", () => {
        const r = pm(["run", "-d", ...ulimits, "--memory", "64m", "--pids-limit", "50", "--rootfs", rootfs, "/bin/sleep", "1000"]);
        expect(r.code).toBe(0);
        const id = r.stdout.trim();
        ids.push(id);
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
  });
}
