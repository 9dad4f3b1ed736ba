// Many ids in a rootless box (issue 11): with ranges in /etc/subuid and /etc/subgid (the test user
// has 420000000+65536, see test/helpers.ts) and newuidmap/newgidmap installed, a rootless box maps
// 0 to the user and 1..65536 to the range, so chown, su and users other than root work inside.
import { afterAll, describe, expect, test } from "bun:test";
import { spawnSync } from "bun";
import { chmodSync, chownSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { command, PATH, run, setupTestArea, TEST_SUBORDINATE, writeConfig } from "./helpers";

const area = setupTestArea();
afterAll(() => area.cleanup());
const user = area.actors.find((a) => a.name === "user");
const helpers = spawnSync(["sh", "-c", "command -v newuidmap && command -v newgidmap"]).exitCode === 0;
const why = !user ? "no ordinary test user" : !helpers ? "newuidmap/newgidmap are not installed (apt-get install uidmap)" : null;

describe.skipIf(why !== null)(`a rootless box with subordinate ids${why ? ` (skipped: ${why})` : ""}`, () => {
  const a = user as NonNullable<typeof user>;
  const sh = (cfg: string, script: string) => run(area.bin, a, ["run", "--config", cfg, "--", "/bin/sh", "-c", script]);

  test("has a multi-line uid_map: 0 is the user, 1.. the range (control: mode = \"single\" maps the user alone)", () => {
    const auto = writeConfig(a, "ids-auto.toml", 'rootfs = "../rootfs"\n');
    expect(sh(auto, "cat /proc/self/uid_map").stdout.trim().split("\n").map((l) => l.trim().split(/\s+/))).toEqual([
      ["0", String(a.uid), "1"],
      ["1", String(TEST_SUBORDINATE.start), String(TEST_SUBORDINATE.count)],
    ]);
    const single = writeConfig(a, "ids-single.toml", 'rootfs = "../rootfs"\n[user_namespace]\nmode = "single"\n');
    expect(sh(single, "cat /proc/self/uid_map").stdout.trim().split(/\s+/)).toEqual(["0", String(a.uid), "1"]);
  });

  test("chown 1000:1000 works inside, and the file belongs to the range's id 1000 on the host (control: single id: EINVAL)", () => {
    const auto = writeConfig(a, "ids-chown.toml", 'rootfs = "../rootfs"\n');
    const r = sh(auto, "touch /root/owned && chown 1000:1000 /root/owned && stat -c %u:%g /root/owned");
    expect(r.stdout).toBe("1000:1000\n");
    const host = statSync(join(a.area, "rootfs/root/owned"));
    expect([host.uid, host.gid]).toEqual([TEST_SUBORDINATE.start + 999, TEST_SUBORDINATE.start + 999]);
    const single = writeConfig(a, "ids-chown-single.toml", 'rootfs = "../rootfs"\n[user_namespace]\nmode = "single"\n');
    expect(sh(single, "chown 1000:1000 /root/owned 2>&1 || echo REFUSED").stdout).toContain("REFUSED");
    spawnSync(["rm", "-f", join(a.area, "rootfs/root/owned")]);
  });

  test("a user other than root runs inside: su, and process.user = \"1000:1000\"", () => {
    const auto = writeConfig(a, "ids-su.toml", 'rootfs = "../rootfs"\n');
    expect(sh(auto, "su nobody -s /bin/sh -c 'id -u'").stdout).toBe("65534\n");
    const as1000 = writeConfig(a, "ids-user.toml", 'rootfs = "../rootfs"\n[process]\nuser = "1000:1000"\n');
    expect(sh(as1000, "id -u; id -g").stdout).toBe("1000\n1000\n");
  });

  test("a helper that refuses the ranges stops the box with what it said, exit 125 (control: the real helpers run it)", () => {
    // A newuidmap of the test's own, first on PATH: it says why on stderr and fails, as the real
    // one does for ranges /etc/subuid does not give. nsrun reads that from a memory file.
    const fake = join(a.area, "fake-helpers");
    mkdirSync(fake, { recursive: true });
    writeFileSync(join(fake, "newuidmap"), '#!/bin/sh\necho "newuidmap: the fake refuses $1" >&2\nexit 1\n');
    chmodSync(fake, 0o755);
    chmodSync(join(fake, "newuidmap"), 0o755);
    const cfg = writeConfig(a, "ids-refused.toml", 'rootfs = "../rootfs"\n');
    const refused = run(area.bin, a, ["run", "--no-cache", "--config", cfg, "--", "/bin/echo", "ran"], { env: { PATH: `${fake}:${PATH}` } });
    expect(refused.code).toBe(125);
    expect(refused.stdout).toBe("");
    expect(refused.stderr).toMatch(/write the id maps: newuidmap \d+ 0 \d+ 1 1 \d+ \d+: newuidmap: the fake refuses \d+/);
    expect(refused.stderr).toContain("refused the ranges");
    expect(run(area.bin, a, ["run", "--no-cache", "--config", cfg, "--", "/bin/echo", "ran"]).stdout).toBe("ran\n");
  });

  test("a signal while the box waits at its id-map sync point ends it before its command runs (control: released, it runs)", async () => {
    // A newuidmap of the test's own, first on PATH, that says it has started through one FIFO and
    // waits to be released through another before running the real one: the box is then certainly
    // stopped at its sync point when nsrun gets SIGTERM.
    const dir = join(a.area, "held-helpers");
    mkdirSync(dir, { recursive: true });
    const started = join(dir, "started");
    const release = join(dir, "release");
    for (const fifo of [started, release]) spawnSync(["mkfifo", "-m", "0600", fifo]);
    chownSync(started, a.uid, a.gid);
    chownSync(release, a.uid, a.gid);
    writeFileSync(join(dir, "newuidmap"), `#!/bin/sh\necho started > ${started}\nread go < ${release}\nexec /usr/bin/newuidmap "$@"\n`);
    chmodSync(dir, 0o755);
    chmodSync(join(dir, "newuidmap"), 0o755);
    const cfg = writeConfig(a, "ids-held.toml", 'rootfs = "../rootfs"\n');
    const box = (signal: boolean) => {
      const p = Bun.spawn(command(area.bin, a, ["run", "--no-cache", "--config", cfg, "--", "/bin/echo", "ran"]), { env: { PATH: `${dir}:${PATH}` }, cwd: a.area, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
      expect(readFileSync(started, "utf8")).toBe("started\n"); // blocks until the helper runs
      if (signal) p.kill("SIGTERM");
      writeFileSync(release, "go\n"); // blocks until the helper reads
      return p;
    };
    const ended = box(true);
    expect(await ended.exited).toBe(143);
    expect(await new Response(ended.stdout).text()).toBe("");
    const control = box(false);
    expect(await control.exited).toBe(0);
    expect(await new Response(control.stdout).text()).toBe("ran\n");
  });
});
