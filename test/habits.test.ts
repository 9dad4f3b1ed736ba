// Everyday habits (issue 24): what a newcomer from podman or bubblewrap expects, through the real
// dist/nsrun, root and rootless: mount flags in the order typed, -v as podman's, env files checked
// line by line, --print-config that gives back the same box, Ctrl-C in a terminal box, a resolv.conf
// that works under nat, every subordinate range, ping, the root-owned rootfs hint, and --trace
// showing the host's half of a sync point.
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { busyboxLayer, haveStaticBusybox, imageConfig, writeOciLayout } from "../fixtures/images/build";
import { type Actor, command, processesWith, run, setupTestArea, waitFor } from "./helpers";
import { openPty } from "./pty";
import { MAX_MAP_LINES, planIdMaps } from "../core/stages/userns";

const area = setupTestArea();
afterAll(() => area.cleanup());

/** Files and folders in the actor's area, owned by the actor. */
function own(a: Actor, ...paths: string[]): void {
  if (a.name === "user") Bun.spawnSync(["chown", "-R", `${a.uid}:${a.gid}`, ...paths]);
}

function folder(a: Actor, name: string): string {
  const dir = join(a.area, name);
  mkdirSync(dir, { recursive: true });
  own(a, dir);
  return dir;
}

describe.each(area.actors)("mount flags and -v ($name)", (a) => {
  const rootfs = join(a.area, "rootfs");

  test("mount flags are made in the order typed: a --bind below a --ro-bind stays writable (control: the other order hides it)", () => {
    const src = folder(a, "order-src");
    folder(a, "order-src/out");
    const out = folder(a, "order-out");
    const probe = ["--", "/bin/sh", "-c", "touch /w/out/made && echo out-writable; touch /w/top 2>/dev/null || echo top-readonly"];
    const typed = run(area.bin, a, ["run", "--rootfs", rootfs, "--ro-bind", `${src}:/w`, "--bind", `${out}:/w/out`, ...probe]);
    expect(typed.stderr).toBe("");
    expect(typed.stdout).toBe("out-writable\ntop-readonly\n");
    expect(readFileSync(join(out, "made"), "utf8")).toBe("");
    // The other order: the read-only bind of /w, made last, covers the writable one.
    const other = run(area.bin, a, ["run", "--rootfs", rootfs, "--bind", `${out}:/w/out`, "-v", `${src}:/w:ro`, ...probe]);
    expect(other.stdout).toBe("top-readonly\n");
    // --print-config shows the same order as [[mounts]].
    const printed = run(area.bin, a, ["run", "--rootfs", rootfs, "--ro-bind", `${src}:/w`, "--tmpfs", "/w/t", "--bind", `${out}:/w/out`, "--print-config"]);
    expect([...printed.stdout.matchAll(/^target = "(.*)"$/gm)].map((m) => m[1])).toEqual(["/w", "/w/t", "/w/out"]);
  });

  test("-v HOST:BOX[:ro] binds as podman's -v; a named volume, a bad option and the old -v (verbose) are refused, exit 125", () => {
    const data = folder(a, "vol");
    const rw = run(area.bin, a, ["run", "--rootfs", rootfs, "-v", `${data}:/v`, "--volume", "./vol:/r:ro", "--", "/bin/sh", "-c", "echo hi > /v/f && cat /v/f; echo no > /r/g 2>/dev/null || echo r-readonly"]);
    expect(rw.stdout).toBe("hi\nr-readonly\n");
    expect(readFileSync(join(data, "f"), "utf8")).toBe("hi\n");
    const named = run(area.bin, a, ["run", "--rootfs", rootfs, "-v", "cache:/v", "true"]);
    expect(named.code).toBe(125);
    expect(named.stderr).toContain('--volume: "cache": nsrun has no named volumes');
    const option = run(area.bin, a, ["run", "--rootfs", rootfs, "-v", `${data}:/v:Z`, "true"]);
    expect(option.code).toBe(125);
    expect(option.stderr).toContain('unknown option "Z"');
    const verbose = run(area.bin, a, ["run", "-v", "--rootfs", rootfs, "true"]);
    expect(verbose.code).toBe(125);
    expect(verbose.stderr).toContain("--verbose");
    // --verbose is the long form that stays: the plan at debug level.
    const debug = run(area.bin, a, ["run", "--verbose", "--rootfs", rootfs, "true"]);
    expect(debug.code).toBe(0);
    expect(debug.stderr).toContain("plan");
  });
});

describe.each(area.actors)("--env-file ($name)", (a) => {
  const rootfs = join(a.area, "rootfs");
  const envFile = (name: string, text: string) => {
    const path = join(a.area, name);
    writeFileSync(path, text);
    own(a, path);
    return path;
  };

  test("NAME=value lines, values as written; comments, blank lines and CRLF skipped; -e comes after it", () => {
    const file = envFile("good.env", '# a comment\n\n  A=1\r\nB="quoted stays"\nC=x=y\nD=\n');
    const r = run(area.bin, a, ["run", "--rootfs", rootfs, "--env-file", file, "-e", "A=2", "--", "/bin/sh", "-c", 'echo "$A|$B|$C|$D|$PATH"']);
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe('2|"quoted stays"|x=y||/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n');
  });

  test.each([
    ["export X=1", 'env.env:2: "export X" is not a variable name', 'drop "export"'],
    ["BAD NAME=2", 'env.env:2: "BAD NAME" is not a variable name', "letters, digits and _"],
    ["1X=2", 'env.env:2: "1X" is not a variable name', "not starting with a digit"],
    ["JUSTANAME", 'env.env:2: expected NAME=value, got "JUSTANAME"', "host's environment"],
  ])("%p is refused with the file and line, exit 125, and the box does not start", (line, message, hint) => {
    const file = envFile("env.env", `OK=1\n${line}\n`);
    const marker = join(a.area, "env-started");
    const r = run(area.bin, a, ["run", "--rootfs", rootfs, "--bind", `${a.area}:/area`, "--env-file", "env.env", "--", "/bin/sh", "-c", "touch /area/env-started"]);
    expect(r.code).toBe(125);
    expect(r.stderr).toContain(`--env-file: ${message}`);
    expect(r.stderr).toContain(hint);
    expect(r.stderr.trim().split("\n").length).toBe(1);
    expect(existsSync(marker)).toBe(false);
    // Control: the same file without the bad line starts the box.
    writeFileSync(file, "OK=1\n");
    expect(run(area.bin, a, ["run", "--rootfs", rootfs, "--env-file", "env.env", "--", "/bin/sh", "-c", 'echo "$OK"']).stdout).toBe("1\n");
  });
});

const busybox = haveStaticBusybox() ? null : "busybox-static is not installed (apt-get install busybox-static)";

describe.each(area.actors)("--print-config round-trips ($name)", (a) => {
  const rootfs = join(a.area, "rootfs");
  const probe = ["--", "/bin/sh", "-c", 'id -u; echo "$PATH|$FOO"; [ -t 0 ] && echo tty; grep -c " /w" /proc/self/mountinfo; cat /proc/self/mountinfo | grep " /w" | cut -d" " -f5,6 | sort'];

  /** Prints the config for `flags`, checks that printing the printed config gives it back, and runs both. */
  function roundTrip(flags: string[], env: Record<string, string> = {}) {
    const printed = run(area.bin, a, ["run", ...flags, "--print-config", ...probe], { env });
    expect(printed.stderr).toBe("");
    const file = join(a.area, "configs", "printed.toml");
    writeFileSync(file, printed.stdout);
    own(a, file);
    const again = run(area.bin, a, ["--config", file, "--print-config"], { env });
    expect(again.stdout).toBe(printed.stdout);
    const direct = run(area.bin, a, ["run", ...flags, ...probe], { env });
    const fromFile = run(area.bin, a, ["--config", file], { env });
    expect(direct.code).toBe(0);
    expect(fromFile.stdout).toBe(direct.stdout);
    return { toml: printed.stdout, out: direct.stdout };
  }

  test("flags, -e with the standard PATH, mounts in order and -t give the same box from the printed file", () => {
    folder(a, "rt/out");
    const { toml, out } = roundTrip(["--rootfs", rootfs, "--ro-bind", "rt:/w", "--bind", "rt/out:/w/out", "-e", "FOO=1", "-t"]);
    expect(toml).toContain("terminal = true");
    expect(toml).toContain('PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"');
    // The box had a terminal (its output came through nsrun's relay, hence \r\n).
    expect(out.replaceAll("\r", "")).toMatch(/^0\n\/usr\/local\/sbin:[^|]*\|1\ntty\n2\n/);
    // --no-tty is kept as well.
    expect(run(area.bin, a, ["run", "--rootfs", rootfs, "--no-tty", "--print-config"]).stdout).toContain("terminal = false");
  });

  test.skipIf(busybox !== null)("an image keeps its name, and -e keeps the standard PATH of an image without Env", () => {
    const store = folder(a, "rt-store");
    const layout = join(a.area, "rt-layout");
    const layer = busyboxLayer();
    writeOciLayout(layout, [layer], { tag: "noenv", config: imageConfig([layer], { Cmd: ["/bin/sh"] }) });
    own(a, layout);
    const env = { NSRUN_STORE: store, HOME: store };
    const imported = run(area.bin, a, ["image", "import", layout, "--name", "noenv"], { env });
    expect(imported.code).toBe(0);
    const { toml, out } = roundTrip(["--image", "noenv", "-e", "FOO=1"], env);
    expect(toml).toStartWith('rootfs = "image:noenv"\n');
    expect(out).toStartWith("0\n/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin|1\n");
  });
});

describe.each(area.actors)("Ctrl-C in a box with a terminal ($name)", (a) => {
  const rootfs = join(a.area, "rootfs");

  /** `sleep` in a terminal box, found on the host; Ctrl-C typed once it runs and echoed by the box's terminal. */
  async function ctrlC(extra: string[], afterEcho: (sleepPid: number) => void) {
    const pty = openPty(24, 80);
    const marker = String(300000 + Math.floor(Math.random() * 600000));
    const nsrun = Bun.spawn(["setsid", "-c", ...command(area.bin, a, ["run", "-t", "--rootfs", rootfs, ...extra, "--", "/bin/sh", "-c", `echo "running $$"; exec sleep ${marker}`])], {
      stdio: [pty.slave, pty.slave, pty.slave],
      env: { PATH: "/usr/bin:/bin", TERM: "xterm" },
      cwd: a.area,
    });
    try {
      expect(await pty.waitFor(/running \d+\r?\n/)).toBe(true);
      const sleeping = () => processesWith(`sleep ${marker}`).filter((p) => {
        try {
          return readFileSync(`/proc/${p}/cmdline`, "utf8") === `sleep\0${marker}\0`;
        } catch {
          return false; // gone while we looked
        }
      });
      expect(await waitFor(() => sleeping().length === 1)).toBe(true);
      const [sleepPid] = sleeping();
      // The terminal echoes ^C after it has sent SIGINT to its foreground process group.
      pty.write("\x03");
      expect(await pty.waitFor(/\^C/)).toBe(true);
      afterEcho(sleepPid);
      return { code: await nsrun.exited, output: pty.output() };
    } finally {
      nsrun.kill("SIGKILL");
      pty.close();
    }
  }

  test("Ctrl-C ends the command: nsrun's init is PID 1, the command PID 2 (control: with init = false the PID 1 command ignores it)", async () => {
    const ended = await ctrlC([], () => {});
    expect(ended.output).toContain("running 2");
    expect(ended.code).toBe(130);
    const config = join(a.area, "configs", "no-init.toml");
    writeFileSync(config, `rootfs = "../rootfs"\n[process]\ninit = false\n`);
    own(a, config);
    let nsrunPid = 0;
    const ignored = await ctrlC(["--config", config], (pid) => {
      // The kernel dropped the SIGINT at once: nothing pending (a fatal one would leave SIGKILL
      // pending until the process is gone), and it still sleeps.
      const status = readFileSync(`/proc/${pid}/status`, "utf8");
      expect(status).toMatch(/^State:\s+S/m);
      expect(status).toMatch(/^SigPnd:\s+0+$/m);
      expect(status).toMatch(/^ShdPnd:\s+0+$/m);
      nsrunPid = Number(readFileSync(`/proc/${pid}/status`, "utf8").match(/^PPid:\s+(\d+)/m)?.[1]);
      process.kill(nsrunPid, "SIGTERM");
    });
    expect(ignored.output).toContain("running 1");
    expect(ignored.code).toBe(143);
  }, 60_000);

  test("--print-config of a terminal box leaves init unset, so the printed box gets the same init", () => {
    const printed = run(area.bin, a, ["run", "-t", "--rootfs", rootfs, "--print-config"]);
    expect(printed.stdout).toContain("terminal = true");
    expect(printed.stdout).not.toContain("init =");
  });
});

describe.each(area.actors)("DNS under --net nat ($name)", (a) => {
  test("a rootfs whose resolv.conf names an unreachable resolver still resolves: nsrun's resolv.conf names the helper's DNS, keeping search (control: the rootfs's own, bound in, fails)", () => {
    const rootfs = join(a.area, "rootfs");
    const own_ = join(a.area, "resolv.conf");
    // What mmdebstrap leaves: the build host's resolver (here TEST-NET-1, never reachable).
    writeFileSync(own_, "nameserver 192.0.2.1\nsearch example.internal\n");
    writeFileSync(join(rootfs, "etc/resolv.conf"), "nameserver 192.0.2.1\nsearch example.internal\n");
    own(a, own_, join(rootfs, "etc/resolv.conf"));
    const lookup = "cat /etc/resolv.conf; timeout 10 nslookup deb.debian.org >/dev/null 2>&1 && echo resolved || echo unresolved";
    const r = run(area.bin, a, ["run", "--rootfs", rootfs, "--net", "nat", "--", "/bin/sh", "-c", lookup]);
    if (r.code === 125 && /tun|pasta|slirp4netns/.test(r.stderr)) return console.warn(`skipped: nat for ${a.name}: ${r.stderr.trim()}`);
    expect(r.stderr).toBe("");
    expect(r.stdout).toMatch(/^nameserver (169\.254\.1\.1|10\.0\.2\.3)\nsearch example\.internal\nresolved\n$/);
    const control = run(area.bin, a, ["run", "--rootfs", rootfs, "--net", "nat", "--ro-bind", `${own_}:/etc/resolv.conf`, "--", "/bin/sh", "-c", lookup]);
    expect(control.stdout).toBe("nameserver 192.0.2.1\nsearch example.internal\nunresolved\n");
  }, 60_000);
});

describe("every subordinate range is mapped (podman's layout)", () => {
  test("planning: 0 is the user, then each range end to end; a repeated or overlapping range is skipped; root maps its ranges from 0", () => {
    const sub = { uids: [{ start: 200000, count: 1000 }, { start: 300000, count: 2000 }, { start: 200500, count: 10 }, { start: 500000, count: 70000 }], gids: [{ start: 400000, count: 5 }], helpers: true };
    const user = planIdMaps({ uid: 1000, gid: 1000 }, sub, "auto");
    expect(user.uidMap).toEqual([
      { inside: 0, outside: 1000, count: 1 },
      { inside: 1, outside: 200000, count: 1000 },
      { inside: 1001, outside: 300000, count: 2000 },
      { inside: 3001, outside: 500000, count: 70000 },
    ]);
    expect(user.gidMap).toEqual([{ inside: 0, outside: 1000, count: 1 }, { inside: 1, outside: 400000, count: 5 }]);
    expect(planIdMaps({ uid: 0, gid: 0 }, sub, "auto").uidMap.slice(0, 2)).toEqual([{ inside: 0, outside: 200000, count: 1000 }, { inside: 1000, outside: 300000, count: 2000 }]);
    // A range that holds the user's own id cannot be mapped as well.
    expect(planIdMaps({ uid: 200001, gid: 1000 }, sub, "auto").uidMap.map((r) => r.outside)).toEqual([200001, 300000, 200500, 500000]);
    // At most 340 lines, the kernel's limit.
    const many = { uids: Array.from({ length: 400 }, (_, i) => ({ start: 1_000_000 + i * 10, count: 10 })), gids: sub.gids, helpers: true };
    expect(planIdMaps({ uid: 1000, gid: 1000 }, many, "auto").uidMap.length).toBe(MAX_MAP_LINES);
  });

  const RANGES = { name: "nsrun-ranges", uids: ["430000000:1000", "431000000:2000"] };
  const helpersInstalled = Bun.spawnSync(["sh", "-c", "command -v newuidmap && command -v newgidmap"]).exitCode === 0;
  const why = process.getuid?.() !== 0 ? "needs root to make a user with two ranges" : !helpersInstalled ? "newuidmap/newgidmap are not installed" : null;
  if (why) console.warn(`skipped: a user with two subordinate ranges: ${why}`);

  /** A system user of this test's own with two ranges in /etc/subuid and /etc/subgid (left, as nsrun-test is). */
  function twoRangeUser(): Actor {
    const id = () => Bun.spawnSync(["id", "-u", RANGES.name], { stdout: "pipe", stderr: "pipe" });
    if (id().exitCode !== 0) Bun.spawnSync(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", RANGES.name]);
    for (const file of ["/etc/subuid", "/etc/subgid"]) {
      const text = readFileSync(file, "utf8");
      if (text.split("\n").some((l) => l.startsWith(`${RANGES.name}:`))) continue;
      writeFileSync(file, `${text}${text && !text.endsWith("\n") ? "\n" : ""}${RANGES.uids.map((r) => `${RANGES.name}:${r}\n`).join("")}`);
    }
    const uid = Number(id().stdout.toString().trim());
    const gid = Number(Bun.spawnSync(["id", "-g", RANGES.name], { stdout: "pipe" }).stdout.toString().trim());
    return { name: "user", uid, gid, area: "/" };
  }

  test.skipIf(why !== null)("a rootless box of a user with two ranges maps both: an id in the second works, one beyond both is refused", () => {
    const u = twoRangeUser();
    const r = run(area.bin, u, ["run", "--", "/bin/sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map; touch /tmp/f; chown 2500:2500 /tmp/f && stat -c %u:%g /tmp/f; chown 3001 /tmp/f 2>/dev/null || echo beyond-refused"], { cwd: "/" });
    expect(r.stderr).toBe("");
    const lines = r.stdout.trim().split("\n").map((l) => l.trim().split(/\s+/).join(" "));
    const maps = [`0 ${u.uid} 1`, "1 430000000 1000", "1001 431000000 2000", `0 ${u.gid} 1`, "1 430000000 1000", "1001 431000000 2000"];
    expect(lines).toEqual([...maps, "2500:2500", "beyond-refused"]);
  });
});

describe.each(area.actors)("--trace shows the host's half of the id maps' sync point ($name)", (a) => {
  test("the helpers' command lines (or root's writes), their results, and the maps as the kernel reads them back (control: not without --trace)", () => {
    const config = join(a.area, "configs", "userns.toml");
    writeFileSync(config, 'rootfs = "../rootfs"\n[namespaces]\nuser = true\n');
    own(a, config);
    const r = run(area.bin, a, ["--config", config, "--trace", "--", "/bin/true"]);
    expect(r.code).toBe(0);
    const lines = r.stderr.split("\n").filter((l) => l.includes("sync point 1"));
    const pid = lines[0]?.match(/\/proc\/(\d+)\/|map (\d+) /)?.slice(1).find(Boolean);
    const uidMap = lines.find((l) => l.includes("uid_map now reads"));
    const gidMap = lines.find((l) => l.includes("gid_map now reads"));
    if (a.name === "root") {
      const sub = readFileSync("/etc/subuid", "utf8").split("\n").filter((l) => l.startsWith("root:"));
      expect(lines[0]).toMatch(/^nsrun\[host\] user namespace \(sync point 1, the box waits\): write "\/proc\/\d+\/uid_map" "0 \d+ \d+.*" = 0 {2}\d+\.\d+ms$/);
      expect(lines[1]).toMatch(/write "\/proc\/\d+\/gid_map" "0 \d+ \d+.*" = 0 /);
      if (!sub.length) expect(uidMap).toContain(`/proc/${pid}/uid_map now reads "0 1879048192 65536"`);
    } else {
      const uidLine = lines.find((l) => l.includes(": newuidmap "));
      expect(uidLine).toMatch(new RegExp(`: newuidmap ${pid} 0 ${a.uid} 1 1 \\d+ \\d+.* = exit 0  \\d+\\.\\d+ms$`));
      expect(lines.find((l) => l.includes(": newgidmap "))).toMatch(new RegExp(`: newgidmap ${pid} 0 ${a.gid} 1 1 \\d+ \\d+`));
      // What the helper was told is what the kernel now has.
      const told = uidLine?.match(/newuidmap \d+ (.*) = exit/)?.[1].split(" ");
      const triples = (told ?? []).reduce<string[]>((acc, w, i) => (i % 3 ? (acc[acc.length - 1] += ` ${w}`, acc) : [...acc, w]), []);
      expect(uidMap).toContain(`/proc/${pid}/uid_map now reads ${JSON.stringify(triples.join("; "))}`);
    }
    expect(gidMap).toMatch(new RegExp(`/proc/${pid}/gid_map now reads "0 `));
    // The sync point the lines belong to is the executor's write(SYNC)/read(answer).
    expect(r.stderr).toMatch(/nsrun\[executor\] write\(\d+, \{SYNC, 1\}, 16\) = 16/);
    const quiet = run(area.bin, a, ["--config", config, "--", "/bin/true"]);
    expect(quiet.code).toBe(0);
    expect(quiet.stderr).toBe("");
  });
});

const pingPath = ["/usr/bin/ping", "/bin/ping"].find((p) => existsSync(p)) ?? null;
if (!pingPath) console.warn("skipped: ping in a box: ping is not installed (apt-get install iputils-ping)");

describe.each(area.actors)("ping in a box ($name)", (a) => {
  test.skipIf(pingPath === null)("the box's group 0 may ping through ICMP echo sockets (ping_group_range \"0 0\", podman's); group 1000 may not; the host's setting is untouched", () => {
    // A copy of the host's ping without its file capabilities (cp keeps no xattrs), as Fedora ships
    // it, or as a rootfs whose xattrs were lost has it: it falls back to an ICMP echo socket.
    const dir = folder(a, "ping");
    const copy = join(dir, "ping");
    Bun.spawnSync(["cp", pingPath as string, copy]);
    own(a, copy);
    const hostRange = readFileSync("/proc/sys/net/ipv4/ping_group_range", "utf8");
    const ping = (extra: string[]) =>
      run(area.bin, a, ["run", "--ro-bind", `${copy}:${pingPath}`, ...extra, "--", "/bin/sh", "-c", "cat /proc/sys/net/ipv4/ping_group_range; ping -c 1 -W 5 127.0.0.1 2>&1 | grep -E 'received|Permission denied|Operation not permitted'"], { cwd: "/" });
    const root = ping([]);
    expect(root.stderr).toBe("");
    expect(root.stdout).toMatch(/^0\t0\n1 packets transmitted, 1 received/);
    const other = ping(["-u", "1000:1000"]);
    expect(other.stdout).toMatch(/^0\t0\n.*(Permission denied|Operation not permitted)/);
    expect(readFileSync("/proc/sys/net/ipv4/ping_group_range", "utf8")).toBe(hostRange);
  });
});

describe("a hint for a rootless box on a root-owned rootfs", () => {
  const user = area.actors.find((x) => x.name === "user");
  const rootActor = area.actors.find((x) => x.name === "root");
  const why = !user || !rootActor ? "needs root (a root-owned rootfs) and the ordinary test user" : null;
  if (why) console.warn(`skipped: the root-owned rootfs hint: ${why}`);

  test.skipIf(why !== null)("names the owner, nobody and EACCES, and the ways out (control: none on the user's own rootfs, with --readonly, or for root)", () => {
    const u = user as Actor;
    const rootsRootfs = join((rootActor as Actor).area, "rootfs");
    const probe = ["--", "/bin/sh", "-c", "stat -c %U /bin; touch /made-here 2>&1 || true"];
    const r = run(area.bin, u, ["run", "--rootfs", rootsRootfs, ...probe]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^nobody\n.*Permission denied/);
    expect(r.stderr).toContain(`the rootfs "${rootsRootfs}" belongs to uid 0, which this rootless box does not map`);
    expect(r.stderr).toContain("nobody (65534) and writes fail with EACCES");
    expect(r.stderr).toContain(`sudo chown -R ${u.uid}:${u.gid}`);
    expect(existsSync(join(rootsRootfs, "made-here"))).toBe(false);
    // Controls: the user's own rootfs, the same rootfs read-only, and root's own box.
    expect(run(area.bin, u, ["run", "--rootfs", join(u.area, "rootfs"), "--", "/bin/true"]).stderr).toBe("");
    expect(run(area.bin, u, ["run", "--rootfs", rootsRootfs, "--readonly", "--", "/bin/true"]).stderr).toBe("");
    expect(run(area.bin, rootActor as Actor, ["run", "--rootfs", rootsRootfs, "--", "/bin/true"]).stderr).toBe("");
  });
});

describe("nsrun doctor on a bare host", () => {
  const rootActor = area.actors.find((x) => x.name === "root");
  const why = !rootActor ? "needs root (a mount namespace whose /dev has no stdin link)" : null;
  if (why) console.warn(`skipped: doctor without /dev/stdin: ${why}`);
  /** A mount namespace whose /dev is a tmpfs with only the device nodes a box binds: no /dev/stdin, as on a bare VM. */
  const bareDev = (argv: string[]) => {
    const old = folder(rootActor as Actor, "old-dev");
    const script = [
      "set -e",
      "mount --make-rprivate /",
      `mount --bind /dev ${old}`,
      "mount -t tmpfs -o mode=755 tmpfs /dev",
      `for n in null zero full random urandom tty ptmx; do touch /dev/$n; mount --bind ${old}/$n /dev/$n; done`,
      `mkdir /dev/pts && mount --bind ${old}/pts /dev/pts`,
      `umount -l ${old}`,
      'exec "$@"',
    ].join("\n");
    const r = Bun.spawnSync(["unshare", "-m", "sh", "-c", script, "bare-dev", ...argv], { stdin: "ignore", stdout: "pipe", stderr: "pipe", env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin" } });
    return { code: r.exitCode, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
  };

  test.skipIf(why !== null)("without /dev/stdin the live probes still run boxes, root and rootless (control: --config /dev/stdin fails there)", () => {
    const asUser = area.actors.find((x) => x.name === "user") as Actor;
    for (const actor of [rootActor as Actor, asUser]) {
      const control = bareDev([...command(area.bin, actor, ["run", "--config", "/dev/stdin"])]);
      expect(control.code).toBe(125);
      expect(control.stderr).toContain("cannot read the config file (ENOENT)");
      const doctor = bareDev([...command(area.bin, actor, ["doctor"])]);
      expect(doctor.stdout).toMatch(/^ok +user namespaces: live probe ran \/bin\/true in a box with a user namespace/m);
      expect(doctor.stdout).toMatch(/^ok +overlayfs: an ephemeral box mounted it inside a user namespace/m);
    }
  });

  const mountinfo = readFileSync("/proc/self/mountinfo", "utf8");
  const hybrid = / - cgroup2 /.test(mountinfo) && / - cgroup cgroup \S*(memory|pids)/.test(mountinfo);
  const user = area.actors.find((x) => x.name === "user");
  test.skipIf(!hybrid || !user)(`on this hybrid cgroup host, doctor's fix for an ordinary user is not systemd-run${hybrid ? "" : " (skipped: not a hybrid host)"}`, () => {
    const r = run(area.bin, user as Actor, ["doctor"], { cwd: "/" });
    const cgroup = r.stdout.slice(r.stdout.search(/^\S+ +cgroup: /m)).split(/\n(?=\S)/)[0];
    expect(cgroup).toMatch(/^warn +cgroup: hybrid \(v1 and v2\)/);
    expect(cgroup).toContain("but on v1, which only root can use, so a delegated scope cannot help");
    expect(cgroup).not.toContain("systemd-run");
  });
});
