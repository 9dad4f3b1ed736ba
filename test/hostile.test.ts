// A hostile rootfs, bind source or box: each way out that a red-team review found (issue 10), tried
// for real, root and rootless where both apply, each with a positive control that shows the probe
// would have noticed.
import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ERRNO } from "../ffi/errno";
import * as F from "../ffi/flags";
import { readInRoot } from "../ffi/fs";
import { cstr, errno, libc } from "../ffi/libc";
import { SYS } from "../ffi/syscalls";
import { type Actor, command, hostMounts, run, setupTestArea, start, writeConfig } from "./helpers";

const area = setupTestArea();
afterAll(() => area.cleanup());
const nsrun = (a: Actor, args: string[], opts?: Parameters<typeof run>[3]) => run(area.bin, a, args, opts);
const sh = (a: Actor, cfg: string, script: string) => nsrun(a, ["run", "--config", cfg, "--", "/bin/sh", "-c", script]);
const own = (a: Actor, ...paths: string[]) => a.name === "user" && Bun.spawnSync(["chown", "-R", "-h", `${a.uid}:${a.gid}`, ...paths]);

/** A copy of the actor's rootfs to spoil, with a config for it. */
function spoiled(a: Actor, name: string, spoil: (rootfs: string) => void, extra = ""): string {
  const rootfs = join(a.area, `rootfs-${name}`);
  rmSync(rootfs, { recursive: true, force: true });
  cpSync(join(a.area, "rootfs"), rootfs, { recursive: true, verbatimSymlinks: true });
  spoil(rootfs);
  own(a, rootfs);
  return writeConfig(a, `${name}.toml`, `rootfs = "../rootfs-${name}"\n${extra}`);
}

describe.each(area.actors)("a hostile rootfs ($name)", (a) => {
  test.each(["proc", "sys", "dev"])("whose /%s is a symlink is refused (exit 125, one line naming it); nothing is left mounted", (dir) => {
    const before = hostMounts();
    const cfg = spoiled(a, `link-${dir}`, (r) => {
      rmSync(join(r, dir), { recursive: true, force: true });
      mkdirSync(join(r, "elsewhere"), { recursive: true });
      symlinkSync("/elsewhere", join(r, dir));
    });
    const r = sh(a, cfg, "echo STARTED");
    expect(r.stdout).toBe("");
    expect(r.code).toBe(125);
    expect(r.stderr).toContain(`on "/${dir}"`);
    expect(r.stderr).toContain("ELOOP");
    expect(r.stderr).toContain("hint: nsrun mounts proc, sysfs, devpts, mqueue and /dev only on a real directory");
    expect(hostMounts()).toBe(before);
    // Control: the same rootfs with a real directory there starts.
    const fixed = spoiled(a, `real-${dir}`, () => {});
    expect(sh(a, fixed, "echo STARTED").stdout).toBe("STARTED\n");
  });

  test("whose /proc is a file is refused too", () => {
    const cfg = spoiled(a, "file-proc", (r) => {
      rmSync(join(r, "proc"), { recursive: true, force: true });
      writeFileSync(join(r, "proc"), "not a directory\n");
    });
    const r = sh(a, cfg, "echo STARTED");
    expect(r.code).toBe(125);
    expect(r.stderr).toContain("ENOTDIR");
  });

  test("whose /etc/passwd is a FIFO starts the box, nsrun never waiting for a writer (control: a regular one gives the box its HOME)", () => {
    const control = spoiled(a, "passwd-home", (r) => writeFileSync(join(r, "etc/passwd"), "root:x:0:0:root:/home-from-passwd:/bin/sh\n"));
    expect(sh(a, control, 'echo "$HOME"').stdout).toBe("/home-from-passwd\n");
    const fifo = spoiled(a, "passwd-fifo", (r) => {
      rmSync(join(r, "etc/passwd"));
      expect(Bun.spawnSync(["mkfifo", join(r, "etc/passwd")]).exitCode).toBe(0);
    });
    // Twice: planning reads it, and a start from the start record reads it again (its inputs).
    for (const start of ["first", "second"]) {
      const r = nsrun(a, ["run", "--config", fifo, "--", "/bin/sh", "-c", 'echo "$HOME"'], { timeoutMs: 20_000 });
      expect({ start, code: r.code, stdout: r.stdout }).toEqual({ start, code: 0, stdout: "/root\n" });
    }
  });

  test("a masked path that cannot be applied where the box's procfs is stops the box (control: unmasked, it is readable)", () => {
    // /proc/self is a symlink inside procfs: a mask through it cannot be resolved without following it.
    const cfg = writeConfig(a, "mask-through-link.toml", 'rootfs = "../rootfs"\n[security]\nmasked_paths = ["/proc/self/status"]\n');
    const r = sh(a, cfg, "echo STARTED");
    expect(r.code).toBe(125);
    expect(r.stderr).toContain('mask "/proc/self/status"');
    const plain = writeConfig(a, "mask-none.toml", 'rootfs = "../rootfs"\n');
    expect(sh(a, plain, "grep -c ^Name: /proc/self/status").stdout).toBe("1\n");
  });

  test("a script run through #!/proc/self/exe (with /etc/ld.so.preload) reaches nsrun's stub, never the nsrun file, which stays unchanged", () => {
    const before = { mode: statSync(area.bin).mode, hash: Bun.hash(readFileSync(area.bin)) };
    const cfg = spoiled(a, "selfexe", (r) => {
      writeFileSync(join(r, "evil"), "#!/proc/self/exe\n");
      chmodSync(join(r, "evil"), 0o755);
      writeFileSync(join(r, "etc/ld.so.preload"), "/lib/evil.so\n");
    });
    const r = nsrun(a, ["run", "--config", cfg, "--", "/evil"]);
    expect(r.stderr).toContain("nsrun's internal helper");
    expect(r.code).toBe(127);
    // With init = true PID 1 is the stub: non-dumpable, its exe cannot even be named from the box,
    // and it is a sealed memfd besides (control: the box's own exe can be read).
    const initCfg = spoiled(a, "selfexe-init", () => {}, "[process]\ninit = true\n");
    const probe = "readlink /proc/1/exe || echo HIDDEN; chmod 4777 /proc/1/exe 2>/dev/null; echo x >> /proc/1/exe 2>/dev/null && echo WROTE; readlink /proc/self/exe";
    const i = sh(a, initCfg, probe);
    expect(i.stdout).toBe("HIDDEN\n/bin/busybox\n");
    expect({ mode: statSync(area.bin).mode, hash: Bun.hash(readFileSync(area.bin)) }).toEqual(before);
  });

  test("the same probe notices a changed binary (control: a copy bound into the box read-write)", () => {
    if (a.name !== "root") return; // chmod of a file the box's root does not own needs CAP_FOWNER over it
    const copy = join(a.area, "nsrun-copy");
    cpSync(area.bin, copy);
    chmodSync(copy, 0o755);
    const cfg = writeConfig(a, "bound-copy.toml", `rootfs = "../rootfs"\n[[mounts]]\ntype = "bind"\nsource = "${copy}"\ntarget = "/nsrun-copy"\n`);
    sh(a, cfg, "chmod 4777 /nsrun-copy");
    expect(statSync(copy).mode & 0o7777).toBe(0o4777);
  });
});

const root = area.actors.find((a) => a.name === "root");
describe.skipIf(!root)(`device nodes a rootfs or a bind source ships (root only: only root can make them)${root ? "" : " (skipped: not root)"}`, () => {
  const a = root as Actor;
  test.each([
    ["a plain rootfs", ""],
    ["an ephemeral rootfs", "ephemeral = true\n"],
    ["a read-only rootfs", "readonly = true\n"],
  ])("in %s do not open (nodev); the box's own /dev/null does (control)", (_, extra) => {
    const cfg = spoiled(a, `dev-${extra.split(" ")[0] || "plain"}`, (r) => {
      Bun.spawnSync(["mknod", join(r, "evilnull"), "c", "1", "3"]);
    }, extra);
    const r = sh(a, cfg, "echo x > /evilnull && echo OPENED; echo y > /dev/null && echo OWN-DEV-OK");
    expect(r.stdout).toBe("OWN-DEV-OK\n");
    expect(r.stderr).toContain("Permission denied");
  });

  test("in a bind source do not open either (control: the same node outside the box does)", () => {
    const src = join(a.area, "devsrc");
    mkdirSync(src, { recursive: true });
    Bun.spawnSync(["mknod", join(src, "evilnull"), "c", "1", "3"]);
    const cfg = writeConfig(a, "dev-bind.toml", `rootfs = "../rootfs"\n[[mounts]]\ntype = "bind"\nsource = "${src}"\ntarget = "/src"\n`);
    expect(sh(a, cfg, "echo x > /src/evilnull && echo OPENED; true").stdout).toBe("");
    writeFileSync(join(src, "evilnull"), "x"); // host side: a real device, it opens
  });
});

describe.each(area.actors)("resolve-then-mount races ($name)", (a) => {
  test("a component swapped for a symlink to / never gives the box the host's /etc, as a bind source or as the rootfs (control: the path does lead there)", async () => {
    // The attacker's symlink is made by a box: for an ordinary user it is the user's own; for root, a
    // box with user = true, whose files belong to its range. Planning refuses to follow a symlink
    // root does not own, and the box's first process opens the planned path with RESOLVE_NO_SYMLINKS.
    const race = join(a.area, "race");
    rmSync(race, { recursive: true, force: true });
    mkdirSync(join(race, "src/etc"), { recursive: true });
    writeFileSync(join(race, "src/etc/inside"), "the bind source\n");
    cpSync(join(a.area, "rootfs"), join(race, "src/rootfs"), { recursive: true, verbatimSymlinks: true });
    writeFileSync(join(race, "src/rootfs/inside"), "the rootfs\n");
    symlinkSync("/", join(race, "alt"));
    own(a, race);
    if (a.name === "root") Bun.spawnSync(["chown", "-h", `${0x70000000}:${0x70000000}`, join(race, "alt")]);
    const bindCfg = writeConfig(a, "race-bind.toml", `rootfs = "../rootfs"\n[[mounts]]\ntype = "bind"\nsource = "${race}/src/etc"\ntarget = "/bound"\nreadonly = true\n`);
    const rootCfg = writeConfig(a, "race-rootfs.toml", `rootfs = "${race}/src/rootfs"\n`);
    const flipper = Bun.spawn(command(process.execPath, a, [join(import.meta.dir, "race-flipper.ts"), join(race, "src"), join(race, "alt")]), { stdout: "ignore", stderr: "ignore" });
    const seen = { bindInside: 0, rootInside: 0, refused: 0, escaped: [] as string[] };
    let hostEtcThroughPath = false;
    try {
      for (let i = 0; i < 60; i++) {
        const b = sh(a, bindCfg, "cat /bound/inside 2>/dev/null; ls /bound");
        if (b.stdout.includes("passwd")) seen.escaped.push(`bind: ${b.stdout}`);
        else if (b.code === 0) seen.bindInside++;
        else seen.refused++;
        const r = sh(a, rootCfg, "cat /inside; ls /");
        if (r.stdout.includes("boot") || r.stdout.includes("home\nlib")) seen.escaped.push(`rootfs: ${r.stdout}`);
        else if (r.code === 0) seen.rootInside++;
        else seen.refused++;
        // The control: at times the same path, looked up plainly, is the host's /etc.
        hostEtcThroughPath ||= existsSync(join(race, "src/etc/passwd"));
      }
    } finally {
      flipper.kill();
      await flipper.exited;
    }
    expect(seen.escaped).toEqual([]);
    expect(seen.bindInside + seen.rootInside).toBeGreaterThan(0);
    expect(hostEtcThroughPath).toBe(true);
  }, 120_000);
});

describe.each(area.actors)("a host whose mounts keep changing ($name)", (a) => {
  test("a box whose paths walk \"..\" in its rootfs starts, every time, during a mount storm any user can make (control: a plain openat2 of such a path then fails with EAGAIN)", async () => {
    // openat2(2) scoped to a root fails with EAGAIN when a mount or rename anywhere on the host
    // races its walk of "..": the kernel's mount and rename seqcounts are global. Here 40 mount
    // targets and /etc/passwd resolve through a symlink of ".."s, while an ordinary user's mount
    // namespace mounts and unmounts a tmpfs without pause. nsrun tries such an openat2 again, in the
    // box's tape and on the host (protocol.h NSRUN_OP_RETRY_EAGAIN); without that, nearly every one
    // of these boxes fails with EAGAIN (exit 125).
    const targets = Array.from({ length: 40 }, (_, i) => `/up/t${i}`);
    const cfg = spoiled(
      a,
      "dotdot-storm",
      (r) => {
        // A long walk of ".." (1,300 of them) widens the window a mount can race: about one walk in 40.
        symlinkSync(`${"../".repeat(1300)}..`, join(r, "up"));
        writeFileSync(join(r, "etc/passwd.real"), "root:x:0:0:root:/home-through-dotdot:/bin/sh\n");
        rmSync(join(r, "etc/passwd"));
        symlinkSync("/up/etc/passwd.real", join(r, "etc/passwd")); // read by planning, on the host
      },
      targets.map((t) => `[[mounts]]\ntype = "tmpfs"\ntarget = "${t}"\n`).join(""),
    );
    const mnt = join(a.area, "storm-mnt");
    mkdirSync(mnt, { recursive: true });
    const storm = Bun.spawn(command("unshare", a, ["-Urm", "--fork", "--kill-child", "sh", "-c", `while :; do mount -t tmpfs storm ${mnt}; umount ${mnt}; done`]), { stdout: "ignore", stderr: "ignore" });
    const results: string[] = [];
    let eagain = 0;
    try {
      // The control: the storm is on, and the same kind of walk without a second try sees it.
      const rootfd = libc.openat(F.AT_FDCWD, cstr(join(a.area, "rootfs-dotdot-storm")), F.O_PATH | F.O_DIRECTORY | F.O_CLOEXEC, 0);
      expect(rootfd).toBeGreaterThanOrEqual(0);
      const how = new BigUint64Array([BigInt(F.O_PATH | F.O_CLOEXEC), 0n, BigInt(F.RESOLVE_IN_ROOT)]);
      const path = cstr("/up/etc/passwd");
      for (let i = 0; i < 2_000_000 && eagain === 0; i++) {
        const fd = libc.syscall(SYS.openat2, rootfd, path, how, 24);
        if (fd >= 0) libc.close(fd);
        else if (errno() === ERRNO.EAGAIN) eagain++;
      }
      libc.close(rootfd);
      // nsrun's own read of the rootfs on the host (planning's /etc/passwd): every one succeeds.
      const reads = Array.from({ length: 2000 }, () => readInRoot(join(a.area, "rootfs-dotdot-storm"), "/etc/passwd"));
      expect(reads.filter((r) => r !== "root:x:0:0:root:/home-through-dotdot:/bin/sh\n").length).toBe(0);
      for (let i = 0; i < 20; i++) {
        const r = sh(a, cfg, 'grep -c " /t[0-9]* tmpfs " /proc/mounts; echo "$HOME"');
        results.push(`${r.code} ${r.stdout.trim().replace("\n", " ")} ${r.stderr.trim()}`);
      }
    } finally {
      storm.kill("SIGKILL");
      await storm.exited;
    }
    expect(eagain).toBe(1);
    expect(results).toEqual(Array(20).fill("0 40 /home-through-dotdot "));
  }, 120_000);
});

describe.each(area.actors)("symlinks in a bind source's or rootfs's path ($name)", (a) => {
  test("one a box could have made (the user's own; for root, a user-namespace box's) is refused, naming the path to give instead (control: root's own system links are followed)", () => {
    const dir = join(a.area, "linked");
    mkdirSync(join(dir, "real"), { recursive: true });
    symlinkSync("real", join(dir, "link"));
    own(a, dir);
    const owner = a.name === "root" ? 0x70000000 : a.uid;
    if (a.name === "root") Bun.spawnSync(["chown", "-h", `${owner}:${owner}`, join(dir, "link")]);
    const cfg = writeConfig(a, "user-link.toml", `rootfs = "../rootfs"\n[[mounts]]\ntype = "bind"\nsource = "${dir}/link"\ntarget = "/l"\n`);
    const r = sh(a, cfg, "true");
    expect(r.code).toBe(125);
    expect(r.stderr).toContain(`mounts[0].source: "${dir}/link" is a symbolic link owned by uid ${owner}`);
    expect(r.stderr).toContain(`"${dir}/real"`);
    // /var/run is root's link to /run on Debian and Ubuntu.
    const sys = writeConfig(a, "root-link.toml", 'rootfs = "../rootfs"\n[[mounts]]\ntype = "bind"\nsource = "/var/run"\ntarget = "/r"\n');
    expect(sh(a, sys, "echo ok").stdout).toBe("ok\n");
  });
});

describe.each(area.actors)("the default box ($name)", (a) => {
  test("hides the host's sockets: /run, /var/run and $XDG_RUNTIME_DIR are empty (control: the host has them)", () => {
    const xdg = join(a.area, "xdg-runtime");
    mkdirSync(xdg, { recursive: true });
    writeFileSync(join(xdg, "session.sock-stand-in"), "");
    own(a, xdg);
    expect(existsSync("/run") && Bun.spawnSync(["ls", "/run"]).stdout.toString().trim().length > 0).toBe(true);
    const r = nsrun(a, ["run", "--", "/bin/sh", "-c", `ls -A /run; ls -A /var/run; ls -A ${xdg}; echo END`], { env: { XDG_RUNTIME_DIR: xdg }, cwd: "/" });
    expect(r.stdout).toBe("END\n");
  });
});

describe.each(area.actors)("sysfs ($name)", (a) => {
  test("an explicit sysfs mount is read-only (control: rw asked for, with a network namespace, is read-write)", () => {
    const ro = writeConfig(a, "sysfs-ro.toml", 'rootfs = "../rootfs"\n[[mounts]]\ntype = "sysfs"\ntarget = "/sys2"\n');
    expect(sh(a, ro, "grep ' /sys2 ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1").stdout).toBe("ro\n");
    const rw = writeConfig(a, "sysfs-rw.toml", 'rootfs = "../rootfs"\n[[mounts]]\ntype = "sysfs"\ntarget = "/sys2"\noptions = ["rw"]\n');
    const c = sh(a, rw, "grep ' /sys2 ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1");
    if (a.name === "root") expect(c.stdout).toBe("rw\n");
    else expect(c.code === 0 || c.code === 125).toBe(true); // rootless: the kernel may refuse sysfs outright
  });

  test("read-write sysfs without a network namespace of the box's own is refused (exit 125 naming the key)", () => {
    const cfg = writeConfig(a, "sysfs-rw-hostnet.toml", 'rootfs = "../rootfs"\n[namespaces]\nnet = false\n[[mounts]]\ntype = "sysfs"\ntarget = "/sys2"\noptions = ["rw"]\n');
    const r = sh(a, cfg, "true");
    expect(r.code).toBe(125);
    expect(r.stderr).toContain("mounts[0].options");
  });
});

describe.skipIf(!root)("root with user = true", () => {
  test("maps the box's root to an unprivileged range, never host root (control: without a user namespace root writes the rootfs)", () => {
    const a = root as Actor;
    const userns = writeConfig(a, "root-userns.toml", 'rootfs = "../rootfs"\n[namespaces]\nuser = true\n');
    const r = sh(a, userns, "id -u; cat /proc/self/uid_map; touch /root-userns-probe && echo WROTE; true");
    const [uid, map] = r.stdout.split("\n");
    expect(uid).toBe("0");
    expect(map.trim().split(/\s+/)).toEqual(["0", String(0x70000000), "65536"]);
    expect(r.stdout).not.toContain("WROTE");
    const plain = writeConfig(a, "root-nouserns.toml", 'rootfs = "../rootfs"\n');
    expect(sh(a, plain, "touch /root-userns-probe && echo WROTE").stdout).toBe("WROTE\n");
    rmSync(join(a.area, "rootfs/root-userns-probe"), { force: true });
  });
});

describe.each(area.actors)("nsrun ns on a box ($name)", (a) => {
  test("prints a box's command line with its control characters escaped (control: they are there, raw, in /proc)", async () => {
    const cfg = writeConfig(a, "escape.toml", 'rootfs = "../rootfs"\n');
    const box = start(area.bin, a, ["run", "--config", cfg, "--", "/bin/sh", "-c", "echo ready; sleep 60; : '\x1b]52;c;ZXZpbA==\x07\x1b[2J'"]);
    try {
      const reader = box.stdout.getReader();
      expect(new TextDecoder().decode((await reader.read()).value)).toBe("ready\n");
      // The box's command: the child of nsrun (now its supervisor, same PID) with the marker. Not a
      // grep over /proc: the grep's own command line would carry the marker too.
      const pid = readdirSync("/proc").find((p) => {
        try {
          return /^\d+$/.test(p) && readFileSync(`/proc/${p}/status`, "utf8").includes(`\nPPid:\t${box.pid}\n`) && readFileSync(`/proc/${p}/cmdline`, "utf8").includes("ZXZpbA");
        } catch {
          return false;
        }
      }) as string;
      expect(readFileSync(`/proc/${pid}/cmdline`, "utf8")).toContain("\x1b]52;");
      const r = nsrun(a, ["ns", pid]);
      expect(r.stdout).toContain("\\x1b]52;c;ZXZpbA==\\x07\\x1b[2J");
      expect(r.stdout).not.toContain("\x1b");
    } finally {
      box.kill();
      await box.exited;
    }
  });
});
