// The attack suite: what a program in a box must not be able to do. Every probe runs in a real box,
// as root and as an ordinary user, and where it makes sense with init = true too. Each has a
// positive control: the same action with that protection turned off in the config succeeds, so a
// probe that could never fail is caught. Where the kernel itself forbids the control for an
// ordinary user (mknod, /proc/sys writes), the control runs for root only and says so.
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, openSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { capabilityMask, capabilityNumber, DEFAULT_CAPABILITIES } from "../core/stages/capabilities";
import { type Actor, command, run, setupTestArea, waitFor, writeConfig } from "./helpers";

const area = setupTestArea();
afterAll(() => area.cleanup());

const OFF = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID", "SETPCAP", "SYS_ADMIN", "NET_ADMIN", "MKNOD", "SYS_MODULE"];
const hostHas = (p: string) => existsSync(p);

/** A config in the actor's area: the fixture rootfs, /ro a read-only bind of data/, plus `extra`. */
function box(a: Actor, name: string, opts: { init?: boolean; off?: boolean; extra?: string } = {}): string {
  const security = opts.off
    ? `[security]\ncapabilities = ${JSON.stringify(OFF)}\nseccomp = "unconfined"\nno_new_privileges = false\nmasked_paths = []\nreadonly_paths = []\n`
    : "";
  return writeConfig(
    a,
    name,
    `rootfs = "../rootfs"\n${opts.extra ?? ""}\n[process]\ninit = ${opts.init ?? false}\n${security}` +
      '[[mounts]]\ntype = "bind"\nsource = "../data"\ntarget = "/ro"\nreadonly = true\n',
  );
}
const sh = (a: Actor, cfg: string, script: string) => run(area.bin, a, ["run", "--config", cfg, "--", "/bin/sh", "-c", script]);

const variants = area.actors.flatMap((a) => [false, true].map((init) => ({ a, init, label: `${a.name}${init ? ", init = true" : ""}` })));

describe.each(variants)("a box ($label)", ({ a, init }) => {
  const on = box(a, `on-${init}.toml`, { init });
  const off = box(a, `off-${init}.toml`, { init, off: true });
  const root = a.name === "root";

  test("/proc/self/status: NoNewPrivs 1, Seccomp 2, podman's capabilities (control: all off)", () => {
    const r = sh(a, on, "grep -E '^(NoNewPrivs|Seccomp|CapEff|CapBnd|CapAmb):' /proc/self/status");
    const want = capabilityMask(DEFAULT_CAPABILITIES.map((c) => capabilityNumber(c) as number)).toString(16).padStart(16, "0");
    expect(r.stdout).toContain("NoNewPrivs:\t1");
    expect(r.stdout).toContain("Seccomp:\t2");
    expect(r.stdout).toContain(`CapEff:\t${want}`);
    expect(r.stdout).toContain(`CapBnd:\t${want}`);
    expect(r.stdout).toContain("CapAmb:\t0000000000000000");
    const c = sh(a, off, "grep -E '^(NoNewPrivs|Seccomp|CapEff):' /proc/self/status");
    expect(c.stdout).toContain("NoNewPrivs:\t0");
    expect(c.stdout).toContain("Seccomp:\t0");
    expect(c.stdout).not.toContain(`CapEff:\t${want}`);
  });

  test("rlimits: no core dumps by default (control: core and nofile as configured)", () => {
    expect(sh(a, on, "ulimit -c").stdout).toBe("0\n");
    const lim = box(a, `rlimits-${init}.toml`, { init, extra: '[limits]\ncore = "unlimited"\nnofile = [64, 128]' });
    expect(sh(a, lim, "ulimit -c; ulimit -n; ulimit -Hn").stdout).toBe("unlimited\n64\n128\n");
  });

  test("cannot remount a read-only bind read-write, nor unmount it (control: can)", () => {
    const probe = "mount -o remount,bind,rw /ro && touch /ro/probe && echo REMOUNTED; umount /ro && echo UNMOUNTED; true";
    const r = sh(a, on, probe);
    expect(r.stdout).toBe("");
    expect(existsSync(join(a.area, "data/probe"))).toBe(false);
    const c = sh(a, off, probe);
    expect(c.stdout).toBe("REMOUNTED\nUNMOUNTED\n");
    rmSync(join(a.area, "data/probe"), { force: true });
  });

  test("cannot mount anything (control: can)", () => {
    const probe = "mkdir -p /tmp/m && mount -t tmpfs none /tmp/m && echo MOUNTED; true";
    expect(sh(a, on, probe).stdout).toBe("");
    expect(sh(a, off, probe).stdout).toBe("MOUNTED\n");
  });

  test("masked paths are empty mounts (control: masked_paths = [] shows them)", () => {
    const masked = ["/proc/keys", "/proc/timer_list", "/proc/acpi", "/sys/firmware"].filter(hostHas);
    expect(masked.length).toBeGreaterThan(0);
    const probe = masked.map((p) => `grep -c ' ${p} ' /proc/self/mountinfo`).join("; ");
    expect(sh(a, on, probe).stdout.trim().split("\n")).toEqual(masked.map(() => "1"));
    expect(sh(a, off, probe).stdout.trim().split("\n")).toEqual(masked.map(() => "0"));
    expect(sh(a, on, "ls /sys/firmware | wc -l; cat /proc/timer_list | wc -c").stdout).toBe("0\n0\n");
    expect(Number(sh(a, off, "ls /sys/firmware | wc -l").stdout)).toBeGreaterThan(0);
    if (root) expect(Number(sh(a, off, "cat /proc/timer_list | wc -c").stdout)).toBeGreaterThan(0);
  });

  test("cannot write /proc/sys or /proc/sysrq-trigger (control, root: /proc/sys can)", () => {
    const r = sh(a, on, "echo changed > /proc/sys/kernel/hostname; echo h > /proc/sysrq-trigger; hostname");
    expect(r.stdout).toBe("nsrun\n");
    expect(r.stderr).toContain("Read-only file system");
    if (root) expect(sh(a, off, "echo changed > /proc/sys/kernel/hostname && hostname").stdout).toBe("changed\n");
    if (!hostHas("/proc/sysrq-trigger")) console.warn("note: this kernel has no /proc/sysrq-trigger; its probe passes trivially");
  });

  test("cannot mknod a block device (control, root: can with MKNOD)", () => {
    expect(sh(a, on, "mknod /tmp/blk b 8 0 && echo MADE; true").stdout).toBe("");
    if (root) expect(sh(a, off, "mknod /tmp/blk b 8 0 && echo MADE").stdout).toBe("MADE\n");
  });

  test("cannot create a network interface (control: can with NET_ADMIN)", () => {
    const probe = "ip link add nsrunbr0 type bridge && echo MADE; true";
    expect(sh(a, on, probe).stdout).toBe("");
    if (hostHas("/sys/module/bridge")) expect(sh(a, off, probe).stdout).toBe("MADE\n");
  });

  test("cannot load a kernel module: the syscall is refused (control: it reaches the kernel)", () => {
    const probe = "echo junk > /tmp/x.ko; insmod /tmp/x.ko";
    expect(sh(a, on, probe).stderr).toContain("Operation not permitted");
    expect(sh(a, off, probe).stderr).not.toContain("Operation not permitted");
  });

  test("no nsrun process is reachable: none visible, or a non-dumpable init whose exe cannot be opened", () => {
    const r = sh(a, on, "cat /proc/[0-9]*/cmdline | tr '\\0' ' ' | grep -c '^nsrun ini[t]'; cat /proc/1/exe > /dev/null && echo READ; echo x >> /proc/1/exe && echo WROTE; cat /proc/self/exe | wc -c");
    const [count, ...rest] = r.stdout.trim().split("\n");
    expect(Number(count)).toBe(init ? 1 : 0);
    if (init) expect(rest.join("\n")).not.toMatch(/READ|WROTE/);
    expect(Number(rest.at(-1))).toBeGreaterThan(0); // control: its own exe is readable
    expect(readFileSync(area.bin).length).toBeGreaterThan(1_000_000);
  });

  test("cannot see or signal a host process (control: without a PID namespace, root can)", async () => {
    const host = Bun.spawn(["sleep", "30"]);
    try {
      const probe = `kill -0 ${host.pid} && echo SEEN; true`;
      expect(sh(a, on, probe).stdout).toBe("");
      if (root) {
        const shared = box(a, `sharedpid-${init}.toml`, { init, extra: "[namespaces]\npid = false" });
        expect(sh(a, shared, probe).stdout).toBe("SEEN\n");
      }
    } finally {
      host.kill();
    }
  });

  test("cannot reach a host file outside the rootfs and binds (control: through a bind it can)", () => {
    const secret = join(a.area, "secret.txt");
    writeFileSync(secret, "host secret\n");
    const probe = `cat ${secret} /oldroot${secret} /newroot${secret} 2>/dev/null; ls /oldroot /newroot 2>/dev/null; true`;
    expect(sh(a, on, probe).stdout).toBe("");
    const bound = box(a, `bound-${init}.toml`, { init, extra: "" }).replace(/\.toml$/, "");
    writeFileSync(`${bound}-s.toml`, `${readFileSync(`${bound}.toml`, "utf8")}[[mounts]]\ntype = "bind"\nsource = "${secret}"\ntarget = "${secret}"\n`);
    if (a.name === "user") Bun.spawnSync(["chown", `${a.uid}:${a.gid}`, `${bound}-s.toml`]);
    expect(sh(a, `${bound}-s.toml`, `cat ${secret}`).stdout).toBe("host secret\n");
  });

  test("cannot use an fd inherited from the host (control: nsrun itself had it)", async () => {
    const secret = join(a.area, "fd-secret.txt");
    writeFileSync(secret, "fd secret\n");
    const fd = openSync(secret, "r");
    const p = Bun.spawn(command(area.bin, a, ["run", "--config", on, "--", "/bin/sh", "-c", "sleep 0.5; ls -l /proc/self/fd/; cat <&3"]), {
      cwd: a.area,
      stdio: ["ignore", "pipe", "pipe", fd],
    });
    expect(await waitFor(() => existsSync(`/proc/${p.pid}/fd/3`))).toBe(true);
    expect(readlinkSync(`/proc/${p.pid}/fd/3`)).toBe(secret);
    await p.exited;
    const out = await new Response(p.stdout).text();
    expect(out).not.toContain("fd-secret");
    expect(out).not.toContain("fd secret");
  });
});

describe.each(area.actors)("the terminal, for $name", (a) => {
  const python = "/usr/bin/python3";
  // The probe needs a program that can call ioctl(TIOCSTI): the host's Python, in a box over the host's root.
  const tiocsti = `import fcntl, os, termios
m, s = os.openpty()
fcntl.ioctl(s, termios.TIOCSCTTY, 0)  # our session's terminal now, as a victim's would be
for name, req in (("TIOCSTI", termios.TIOCSTI), ("TIOCLINUX", 0x541C)):
    try:
        fcntl.ioctl(s, req, b"x")
        print(name, 0)
    except OSError as e:
        print(name, e.errno)
print("session-leader", os.getsid(0) == os.getpid())`;
  test.if(existsSync(python))("TIOCSTI and TIOCLINUX are refused with EPERM, and the box has a session of its own (control: unconfined reaches the tty driver)", () => {
    const cfg = (seccomp: string) => writeConfig(a, `host-${seccomp}.toml`, `rootfs = "/"\nreadonly = true\n[security]\nseccomp = "${seccomp}"\n`);
    const r = run(area.bin, a, ["run", "--config", cfg("default"), "--", python, "-c", tiocsti]);
    expect(r.stdout).toBe("TIOCSTI 1\nTIOCLINUX 1\nsession-leader True\n");
    const c = run(area.bin, a, ["run", "--config", cfg("unconfined"), "--", python, "-c", tiocsti]);
    expect(c.stdout).not.toContain("TIOCSTI 1\n");
    expect(c.stdout).not.toContain("TIOCLINUX 1\n");
  });
});

describe.each(area.actors)("bad [security] config, for $name", (a) => {
  test("exits 125 naming the key", () => {
    const prof = join(a.area, "configs");
    writeFileSync(join(prof, "not-json.json"), "{ nope");
    writeFileSync(join(prof, "bad-syscall.json"), JSON.stringify({ defaultAction: "SCMP_ACT_ALLOW", syscalls: [{ names: ["no_such_call"], action: "SCMP_ACT_ERRNO" }] }));
    if (a.name === "user") Bun.spawnSync(["chown", `${a.uid}:${a.gid}`, join(prof, "not-json.json"), join(prof, "bad-syscall.json")]);
    const cases: Array<[string, string]> = [
      ['capabilities = ["CHOWN", "NOT_A_CAP"]', "security.capabilities[1]"],
      ['seccomp = "not-json.json"', "security.seccomp"],
      ['seccomp = "bad-syscall.json"', "security.seccomp"],
      ['seccomp = "missing.json"', "security.seccomp"],
      ['masked_paths = ["proc/kcore"]', "security.masked_paths[0]"],
      ["no_new_privileges = 1", "security.no_new_privileges"],
    ];
    for (const [line, key] of cases) {
      const cfg = writeConfig(a, "bad-security.toml", `rootfs = "../rootfs"\n[security]\n${line}\n`);
      const r = run(area.bin, a, ["--config", cfg]);
      expect({ line, code: r.code }).toEqual({ line, code: 125 });
      expect(r.stderr).toContain(`${key}:`);
      expect(r.stderr.trim().split("\n").length).toBeLessThanOrEqual(2);
    }
    const bad = run(area.bin, a, ["--config", writeConfig(a, "bad-sys.toml", 'rootfs = "../rootfs"\n[security]\nseccomp = "bad-syscall.json"\n')]);
    expect(bad.stderr).toContain("no_such_call");
  });
});

