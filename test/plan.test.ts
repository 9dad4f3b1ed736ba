// Pure planning: config -> BoxPlan, mount ops, namespace flags, id maps, signals, PATH, CLI flags.
// Nothing here needs privileges or touches the system (except loadConfig reading a temp file).
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ArgsError, parseArgs, runArgs, startsABox } from "../cmd/args";
import * as F from "../ffi/flags";
import { ConfigError } from "../core/errors";
import { DEFAULT_PATH, type LoadedConfig, loadConfig, parseConfig } from "../core/stages/config";
import { defaultMounts, type MountOp, MountPlanError, planMount, planMounts } from "../core/stages/mounts";
import { NAMESPACE_ORDER, planNamespaces, unshareFlags } from "../core/stages/namespaces";
import { type HostFacts, planBox } from "../core/stages/plan";
import { type ProcessPlan, searchPath } from "../core/stages/process";
import { deliveryFor, maskHas } from "../core/stages/signals";
import { idMapped, idMapWrites, parseIdMap, planIdMaps, subordinateRanges } from "../core/stages/userns";

/** The ConfigError thrown by fn (fails the test when fn does not throw one). */
function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
  throw new Error("expected a ConfigError, but nothing was thrown");
}

const parse = (raw: Record<string, unknown>) => parseConfig({ rootfs: "r", ...raw }, "box.toml");
const keyOf = (raw: Record<string, unknown>) => configError(() => parse(raw)).key;

describe("parseConfig", () => {
  test("fills in every default", () => {
    expect(parse({})).toEqual({
      rootfs: "r",
      readonly: false,
      ephemeral: false,
      process: { args: ["/bin/sh"], cwd: "/", user: "0:0" },
      namespaces: { mount: true, pid: true, uts: true, ipc: true, cgroup: true, time: false },
      user_namespace: { mode: "auto" },
      network: { ports: [] },
      mounts: [],
      limits: {},
      security: { no_new_privileges: true, seccomp: "default" },
    });
  });

  test("an unknown key is refused, named by its key path, at every level", () => {
    expect(keyOf({ readonyl: true })).toBe("readonyl");
    expect(keyOf({ process: { argz: ["ls"] } })).toBe("process.argz");
    expect(keyOf({ namespaces: { usr: true } })).toBe("namespaces.usr");
    expect(keyOf({ mounts: [{ type: "tmpfs", target: "/a" }, { type: "tmpfs", target: "/b", targte: "/c" }] })).toBe("mounts[1].targte");
    expect(configError(() => parse({ readonyl: true })).message).toContain("unknown key");
  });

  // valibot lists the missing required "target" before the unknown "targte": parseConfig reports
  // the unknown key first, so the typo itself is named.
  test("a misspelt required key is reported as the unknown key, not as the missing one", () => {
    expect(keyOf({ mounts: [{ type: "tmpfs", target: "/a" }, { type: "tmpfs", targte: "/b" }] })).toBe("mounts[1].targte");
  });

  test("a wrong type names the key", () => {
    expect(keyOf({ hostname: 5 })).toBe("hostname");
    expect(keyOf({ readonly: "yes" })).toBe("readonly");
    expect(configError(() => parse({ hostname: 5 })).message).toContain("expected string");
  });

  test("mount rules name the mount's key", () => {
    const t = (target: string) => ({ type: "tmpfs", target });
    expect(keyOf({ mounts: [t("/a"), t("/b"), t("relative")] })).toBe("mounts[2].target");
    expect(keyOf({ mounts: [{ type: "bind", target: "/a" }] })).toBe("mounts[0].source");
    expect(keyOf({ mounts: [{ type: "tmpfs", source: "x", target: "/a" }] })).toBe("mounts[0].source");
    expect(keyOf({ mounts: [t("/a/../etc")] })).toBe("mounts[0].target");
    expect(keyOf({ mounts: [t("/")] })).toBe("mounts[0].target");
  });

  test("process.user must be uid:gid and process.args must not be empty", () => {
    expect(keyOf({ process: { user: "abc" } })).toBe("process.user");
    expect(keyOf({ process: { args: [] } })).toBe("process.args");
  });
});

describe("loadConfig", () => {
  const dir = mkdtempSync(join(tmpdir(), "nsrun-plan-test-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test("invalid TOML is a ConfigError without a key", () => {
    const file = join(dir, "bad.toml");
    writeFileSync(file, 'rootfs = "r"\nthis is = = not toml [\n');
    const e = configError(() => loadConfig(file));
    expect(e.key).toBeNull();
    expect(e.message).toContain("not valid TOML");
  });

  test("a missing file says ENOENT", () => {
    expect(configError(() => loadConfig(join(dir, "missing.toml"))).message).toContain("ENOENT");
  });

  test("a valid file loads, with the file's folder as dir", () => {
    const file = join(dir, "ok.toml");
    writeFileSync(file, 'rootfs = "r"\nhostname = "box"\n');
    const loaded = loadConfig(file);
    expect(loaded.dir).toBe(dir);
    expect(loaded.config.hostname).toBe("box");
  });
});

const ranges = { uids: [{ start: 200000, count: 65536 }], gids: [{ start: 300000, count: 65536 }], helpers: true };

describe("planBox", () => {
  const loaded = (raw: Record<string, unknown> = {}): LoadedConfig => ({ config: parse(raw), file: "box.toml", dir: "/tmp" });
  const facts = (rootfs = "/r", sources: HostFacts["sources"] = []): HostFacts => ({ rootfs, sources });
  const user = { uid: 1000, gid: 1000 };
  const root = { uid: 0, gid: 0 };
  const plan = (raw: Record<string, unknown> = {}, caller = user, opts = {}) => planBox(loaded(raw), facts(), caller, opts);
  const planKey = (raw: Record<string, unknown>, caller = user, rootfs = "/r") =>
    configError(() => planBox(loaded(raw), facts(rootfs), caller)).key;

  test("devpts gets the tty group only when the box shares a user namespace that maps gid 5", () => {
    const ptsData = (caller: typeof user, ttyGroupMapped: boolean) =>
      (planBox(loaded(), { ...facts(), ttyGroupMapped }, caller).mounts.find((o) => o.target === "/dev/pts" && o.op === "mount") as { options: string[] }).options;
    expect(ptsData(root, true)).toContain("gid=5");
    // uid 0 inside someone else's user namespace (`unshare -Ur nsrun ...`): gid 5 is not mapped there.
    expect(ptsData(root, false)).not.toContain("gid=5");
    expect(ptsData(user, true)).not.toContain("gid=5");
    // With subordinate ids gid 5 exists in the box's own namespace.
    expect(planBox(loaded(), { ...facts(), subordinate: ranges }, user).mounts.find((o) => o.target === "/dev/pts" && o.op === "mount")).toHaveProperty("options", expect.arrayContaining(["gid=5"]));
    expect(idMapped(parseIdMap("         0          0 4294967295\n"), 5)).toBe(true);
    expect(idMapped(parseIdMap("         0       1000          1\n"), 5)).toBe(false);
    expect(idMapped(parseIdMap("0 1000 1\n5 100005 1\n"), 5)).toBe(true);
  });

  test("device nodes of its own only for root in the initial user namespace without a box user namespace; its masks then use its own null", () => {
    const devices = (caller: typeof user, raw: Record<string, unknown> = {}, initialUserns = true) => {
      const p = planBox(loaded(raw), { ...facts(), initialUserns, subordinate: ranges }, caller);
      const masks = p.mounts.filter((o) => o.op === "mask");
      return { made: p.mounts.filter((o) => o.op === "node").length, bound: p.mounts.filter((o) => o.op === "bind" && o.source.startsWith("/dev/")).length, ownNull: masks.every((o) => o.op === "mask" && o.ownNull) };
    };
    expect(devices(root)).toEqual({ made: 6, bound: 0, ownNull: true });
    expect(devices(root, { namespaces: { user: true } })).toEqual({ made: 0, bound: 6, ownNull: false });
    expect(devices(user)).toEqual({ made: 0, bound: 6, ownNull: false });
    // uid 0 in someone else's user namespace may not mknod a device.
    expect(devices(root, {}, false)).toEqual({ made: 0, bound: 6, ownNull: false });
    // A /dev of the config's own has no null of nsrun's: masks use the host's, read-only.
    expect(devices(root, { mounts: [{ type: "tmpfs", target: "/dev" }] })).toEqual({ made: 0, bound: 0, ownNull: false });
  });

  test("setgroups(2) is called only where /proc/self/setgroups allows it", () => {
    const setgroups = (caller: typeof user, setgroupsAllowed: boolean) => planBox(loaded(), { ...facts(), setgroupsAllowed }, caller).process.setgroups;
    expect(setgroups(root, true)).toBe(true);
    expect(setgroups(root, false)).toBe(false); // uid 0 in an `unshare -r` namespace, which wrote "deny"
    expect(setgroups(user, true)).toBe(false); // the box's own user namespace denies it
  });

  test("an ordinary user without subordinate ids gets a user namespace mapping 0 to their uid, written by the box", () => {
    const p = plan({}, { uid: 1000, gid: 1001 });
    expect(p.idMap).toEqual({ writer: "self", setgroups: "deny", uidMap: [{ inside: 0, outside: 1000, count: 1 }], gidMap: [{ inside: 0, outside: 1001, count: 1 }] });
    expect(p.namespaces[0]).toBe("user");
    expect(p.process.setgroups).toBe(false);
  });

  test("an ordinary user with subordinate ids and newuidmap gets 0 = the user and 1..65536 = the first range (podman's layout)", () => {
    const p = planBox(loaded(), { ...facts(), subordinate: ranges }, user);
    expect(p.idMap).toEqual({
      writer: "newuidmap",
      setgroups: "allow",
      uidMap: [{ inside: 0, outside: 1000, count: 1 }, { inside: 1, outside: 200000, count: 65536 }],
      gidMap: [{ inside: 0, outside: 1000, count: 1 }, { inside: 1, outside: 300000, count: 65536 }],
    });
    expect(p.process.setgroups).toBe(true);
    // "single", or no helpers: only the user's own id.
    expect(planBox(loaded({ user_namespace: { mode: "single" } }), { ...facts(), subordinate: ranges }, user).idMap?.writer).toBe("self");
    expect(planBox(loaded(), { ...facts(), subordinate: { ...ranges, helpers: false } }, user).idMap?.writer).toBe("self");
    // process.user 1000:1000 works when it is mapped.
    expect(planBox(loaded({ process: { user: "1000:1000" } }), { ...facts(), subordinate: ranges }, user).process.uid).toBe(1000);
  });

  test("explicit [user_namespace] maps are checked against what the user may map", () => {
    const f = { ...facts(), subordinate: ranges };
    const ok = planBox(loaded({ user_namespace: { uid_map: ["0 1000 1", "1 200010 10"], gid_map: ["0 1000 1"] } }), f, user);
    expect(ok.idMap?.writer).toBe("newuidmap");
    expect(configError(() => planBox(loaded({ user_namespace: { uid_map: ["0 0 1"], gid_map: ["0 1000 1"] } }), f, user)).key).toBe("user_namespace.uid_map[0]");
    expect(configError(() => planBox(loaded({ user_namespace: { uid_map: ["0 200000 70000"], gid_map: ["0 1000 1"] } }), f, user)).key).toBe("user_namespace.uid_map[0]");
    expect(keyOf({ user_namespace: { uid_map: ["0 x 1"] } })).toBe("user_namespace.uid_map[0]");
  });

  test("root gets no user namespace unless asked, and then never maps host root", () => {
    const p = plan({}, root);
    expect(p.idMap).toBeNull();
    expect(p.namespaces).not.toContain("user");
    expect(p.process.setgroups).toBe(true);
    const asked = plan({ namespaces: { user: true } }, root);
    expect(asked.namespaces[0]).toBe("user");
    expect(asked.idMap).toMatchObject({ writer: "root", uidMap: [{ inside: 0, outside: 0x70000000, count: 65536 }] });
    const fromSubuid = planBox(loaded({ namespaces: { user: true } }), { ...facts(), subordinate: { uids: [{ start: 500000, count: 1000 }], gids: [{ start: 600000, count: 1000 }], helpers: false } }, root);
    expect(fromSubuid.idMap).toMatchObject({ uidMap: [{ inside: 0, outside: 500000, count: 1000 }], gidMap: [{ inside: 0, outside: 600000, count: 1000 }] });
  });

  test("namespaces come in the canonical order", () => {
    expect(plan({ namespaces: { time: true } }).namespaces).toEqual(["user", "mount", "pid", "uts", "ipc", "net", "cgroup", "time"]);
    expect(plan({ namespaces: { pid: false, ipc: false } }, root).namespaces).toEqual(["mount", "uts", "net", "cgroup"]);
  });

  test("process.user must be mapped in the box's user namespace", () => {
    expect(planKey({ process: { user: "5:5" } })).toBe("process.user");
    const p = plan({ process: { user: "5:6" } }, root);
    expect([p.process.uid, p.process.gid]).toEqual([5, 6]);
  });

  test("keys that contradict each other are refused", () => {
    expect(planKey({ hostname: "box", namespaces: { uts: false } })).toBe("hostname");
    expect(planKey({ namespaces: { mount: false } })).toBe("namespaces.mount");
    expect(planKey({ ephemeral: true }, user, "/srv/a,b")).toBe("rootfs");
    expect(planBox(loaded({ ephemeral: true }), facts("/srv/ab"), user).rootfs).toEqual({ hostPath: "/srv/ab", readonly: false, ephemeral: true, userns: true });
  });

  test("a mount planning error becomes a ConfigError with the option's key", () => {
    const mounts = [{ type: "bind", source: "d", target: "/d", options: ["ro", "bogus"] }];
    const e = configError(() => planBox(loaded({ mounts }), facts("/r", [{ path: "/d", isDir: true }]), user));
    expect(e.key).toBe("mounts[0].options[1]");
  });

  test("opts.args replace process.args", () => {
    expect(plan({ process: { args: ["/bin/true"] } }, user, { args: ["ls", "-l"] }).process.args).toEqual(["ls", "-l"]);
    expect(plan({ process: { args: ["/bin/true"] } }, user, { args: [] }).process.args).toEqual(["/bin/true"]);
  });

  test("env defaults to PATH and HOME; a configured env is used as it is, with HOME when it has none", () => {
    expect(plan().process.env).toEqual(["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"]);
    expect(plan({ process: { env: { TERM: "xterm", A: "1=2" } } }).process.env).toEqual(["TERM=xterm", "A=1=2", "HOME=/root"]);
    expect(plan({ process: { env: { HOME: "/h" } } }).process.env).toEqual(["HOME=/h"]);
  });

  test("hostname defaults to nsrun, is null without uts; the network mode follows net, or says it", () => {
    expect(plan().hostname).toBe("nsrun");
    expect(plan({ hostname: "box" }).hostname).toBe("box");
    expect(plan({ namespaces: { uts: false } }).hostname).toBeNull();
    expect(plan().network).toEqual({ mode: "none", ports: [], pingGroupRange: "0 0" });
    expect(plan({ namespaces: { net: false } }).network).toEqual({ mode: "host", ports: [] }); // the host's ping_group_range is left alone
    expect(plan({ network: { mode: "host" } }).namespaces).not.toContain("net");
    expect(planKey({ network: { mode: "host" }, namespaces: { net: true } })).toBe("network.mode");
    expect(planKey({ network: { mode: "none", ports: ["8080:80"] } })).toBe("network.ports");
  });

  test("nat: ports parsed, a helper required, resolv.conf always generated (keeping search), hosts unless the rootfs has one", () => {
    const nat = (files: Record<string, string>, helpers = true) =>
      planBox(loaded({ network: { mode: "nat", ports: ["8080:80", "127.0.0.1:5353:53/udp"] } }), { ...facts(), installed: () => helpers, rootfsFile: (p) => files[p] ?? null }, user);
    const p = nat({});
    expect(p.network.ports).toEqual([
      { proto: "tcp", hostAddress: null, hostPort: 8080, boxPort: 80 },
      { proto: "udp", hostAddress: "127.0.0.1", hostPort: 5353, boxPort: 53 },
    ]);
    expect(p.files.map((f) => f.target)).toEqual(["/etc/resolv.conf", "/etc/hosts"]);
    expect(p.files[1].content).toContain("127.0.1.1\tnsrun");
    expect(nat({ "/etc/resolv.conf": "nameserver 127.0.0.53\n" }).files.map((f) => f.target)).toContain("/etc/resolv.conf");
    expect(nat({ "/etc/resolv.conf": "nameserver 9.9.9.9\nsearch lan\n", "/etc/hosts": "127.0.0.1 x\n" }).files).toEqual([{ target: "/etc/resolv.conf", content: "nameserver 169.254.1.1\nsearch lan\n" }]);
    expect(configError(() => nat({}, false)).key).toBe("network.mode");
    expect(configError(() => planBox(loaded({ network: { mode: "nat", ports: ["80:x"] } }), facts(), user)).key).toBe("network.ports[0]");
  });

  test("HOME comes from the rootfs's passwd entry of the box's user, else /root or /", () => {
    const home = (passwd: string | null, u = "0:0") => planBox(loaded({ process: { user: u } }), { ...facts(), rootfsFile: () => passwd }, root).process.env.find((e) => e.startsWith("HOME="));
    expect(home("root:x:0:0::/root:/bin/sh\nbob:x:5:5::/home/bob:/bin/sh\n", "5:5")).toBe("HOME=/home/bob");
    expect(home(null)).toBe("HOME=/root");
    expect(home(null, "5:5")).toBe("HOME=/");
  });
});

const ctx = { ttyGroup: false, pidns: true, netns: true };
const sig = (o: MountOp) => `${o.op}:${o.target}`;
const mountsOf = (raw: unknown[]) => parse({ mounts: raw }).mounts;

describe("planMounts and defaultMounts", () => {
  test("defaults are /proc, /dev, /sys, /tmp in that order, /dev fully populated", () => {
    expect([...defaultMounts(ctx).keys()]).toEqual(["/proc", "/dev", "/sys", "/tmp"]);
    expect(planMounts([], [], ctx).map(sig)).toEqual([
      "mount:/proc",
      "mount:/dev",
      ...["null", "zero", "full", "random", "urandom", "tty"].map((n) => `bind:/dev/${n}`),
      "mount:/dev/pts",
      "symlink:/dev/ptmx",
      "mount:/dev/shm",
      ...["fd", "stdin", "stdout", "stderr"].map((n) => `symlink:/dev/${n}`),
      "mount:/sys",
      "mount:/tmp",
    ]);
    const nodes = planMounts([], [], ctx).filter((o) => o.op === "bind");
    // The device nodes are the only binds without nodev: nsrun's own /dev is where devices work.
    // Read-only: a box in a user namespace whose map holds the host inode's owner still cannot chmod it.
    const RO_DEV = F.MOUNT_ATTR_RDONLY | F.MOUNT_ATTR_NOSUID | F.MOUNT_ATTR_NOEXEC;
    expect(nodes.every((o) => o.op === "bind" && o.file && !o.recursive && o.source === o.target && o.attrs === RO_DEV)).toBe(true);
    // A box that may (root, no user namespace) makes its own nodes instead: no bind of a host device.
    const own = planMounts([], [], { ...ctx, ownDevices: true });
    expect(own.filter((o) => o.op === "bind")).toEqual([]);
    expect(own.filter((o) => o.op === "node").map((o) => (o.op === "node" ? `${o.target} ${o.major}:${o.minor} ${o.mode.toString(8)}` : ""))).toEqual([
      "/dev/null 1:3 666", "/dev/zero 1:5 666", "/dev/full 1:7 666", "/dev/random 1:8 666", "/dev/urandom 1:9 666", "/dev/tty 5:0 666",
    ]);
    const special = planMounts([], [], ctx).filter((o) => o.op === "mount" && o.special).map((o) => o.target);
    expect(special).toEqual(["/proc", "/dev", "/dev/pts", "/sys"]);
  });

  test.each(["/tmp", "/tmp/"])("a configured mount on %p replaces only the default /tmp", (target) => {
    const ops = planMounts(mountsOf([{ type: "tmpfs", target }]), [null], ctx);
    expect(ops.filter((o) => o.origin === "default /tmp")).toEqual([]);
    expect(ops.filter((o) => o.target === "/proc" || o.target === "/sys" || o.target === "/dev")).toHaveLength(3);
    expect(ops.at(-1)?.origin).toBe("mounts[0]");
  });

  test("configured mounts follow the defaults, in config order", () => {
    const ops = planMounts(mountsOf([{ type: "tmpfs", target: "/b" }, { type: "mqueue", target: "/a" }]), [null, null], ctx);
    expect(ops.slice(-3).map(sig)).toEqual(["mount:/tmp", "mount:/b", "mount:/a"]);
    expect(ops.slice(-2).map((o) => o.origin)).toEqual(["mounts[0]", "mounts[1]"]);
  });

  test("devpts gets gid=5 only where the tty group is mapped; /proc falls back only without a PID namespace", () => {
    const find = (c: typeof ctx, t: string) => planMounts([], [], c).find((o) => o.target === t && o.op === "mount");
    const options = (c: typeof ctx) => (find(c, "/dev/pts") as { options: string[] }).options;
    expect(options(ctx)).not.toContain("gid=5");
    expect(options({ ...ctx, ttyGroup: true })).toContain("gid=5");
    expect(find(ctx, "/proc")).toHaveProperty("fallbackBind", undefined);
    expect(find({ ...ctx, pidns: false }, "/proc")).toHaveProperty("fallbackBind", "/proc");
    expect(find(ctx, "/sys")).toHaveProperty("fallbackBind", "/sys");
    expect(find({ ...ctx, pidns: false, netns: false }, "/sys")).toHaveProperty("fallbackBind", "/sys");
  });
});

describe("planMount", () => {
  const dirSrc = { path: "/host/d", isDir: true };
  const bind = (extra: Record<string, unknown>) => planMount(mountsOf([{ type: "bind", source: "d", target: "/d", ...extra }])[0], 0, dirSrc, ctx);

  test("a bind defaults to recursive, nodev", () => {
    expect(bind({})).toEqual({ op: "bind", source: "/host/d", target: "/d", recursive: true, attrs: F.MOUNT_ATTR_NODEV, file: false, origin: "mounts[0]" });
    expect(planMount(mountsOf([{ type: "bind", source: "f", target: "/f" }])[0], 0, { path: "/host/f", isDir: false }, ctx)).toHaveProperty("file", true);
  });

  test("bind options become mount attributes", () => {
    expect(bind({ readonly: true })).toHaveProperty("attrs", F.MOUNT_ATTR_RDONLY | F.MOUNT_ATTR_NODEV);
    expect(bind({ options: ["nosuid", "nodev", "noexec"] })).toHaveProperty("attrs", F.MOUNT_ATTR_NOSUID | F.MOUNT_ATTR_NODEV | F.MOUNT_ATTR_NOEXEC);
    expect(bind({ options: ["bind"] })).toHaveProperty("recursive", false);
  });

  test("an unknown bind option is a MountPlanError naming the option's index", () => {
    let err: unknown;
    try {
      bind({ options: ["ro", "sizes=1"] });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(MountPlanError);
    expect((err as MountPlanError).key).toBe("mounts[0].options[1]");
  });

  test("filesystem options: flags become mount attributes, the rest go to the filesystem", () => {
    const op = planMount(mountsOf([{ type: "tmpfs", target: "/t", options: ["nosuid", "noexec", "size=1m", "mode=700"] }])[0], 3, null, ctx);
    expect(op).toEqual({ op: "mount", fstype: "tmpfs", target: "/t", attrs: F.MOUNT_ATTR_NOSUID | F.MOUNT_ATTR_NODEV | F.MOUNT_ATTR_NOEXEC, options: ["size=1m", "mode=700"], special: false, origin: "mounts[3]" });
    const ro = planMount(mountsOf([{ type: "tmpfs", target: "/t", readonly: true }])[0], 0, null, ctx);
    expect(ro).toMatchObject({ attrs: F.MOUNT_ATTR_NOSUID | F.MOUNT_ATTR_NODEV | F.MOUNT_ATTR_RDONLY, options: [] });
  });

  test("sysfs is read-only unless asked, and read-write only with a network namespace of the box's own", () => {
    const sysfs = (options: string[], netns: boolean) => planMount(mountsOf([{ type: "sysfs", target: "/s", options }])[0], 0, null, { ...ctx, netns });
    expect(sysfs([], true)).toMatchObject({ attrs: F.MOUNT_ATTR_NOSUID | F.MOUNT_ATTR_NODEV | F.MOUNT_ATTR_NOEXEC | F.MOUNT_ATTR_RDONLY, special: true });
    expect(sysfs(["rw"], true)).toMatchObject({ attrs: F.MOUNT_ATTR_NOSUID | F.MOUNT_ATTR_NODEV | F.MOUNT_ATTR_NOEXEC });
    expect(() => sysfs(["rw"], false)).toThrow(MountPlanError);
    expect(sysfs([], false)).toHaveProperty("special", true);
  });
});

describe("namespaces and id maps", () => {
  test("/etc/subuid lines are found by user name or uid; others and nonsense are ignored", () => {
    const text = "alice:100000:65536\n1000:200000:1000\nbob:300000:65536\nbroken\nalice:x:5\n";
    expect(subordinateRanges(text, { name: "alice", id: 1000 })).toEqual([{ start: 100000, count: 65536 }, { start: 200000, count: 1000 }]);
    expect(subordinateRanges(text, { name: "carol", id: 1001 })).toEqual([]);
  });

  const all = NAMESPACE_ORDER.map(([k]) => k);

  test("unshareFlags is the OR of the CLONE_* constants", () => {
    expect(unshareFlags(all)).toBe(
      F.CLONE_NEWUSER | F.CLONE_NEWNS | F.CLONE_NEWPID | F.CLONE_NEWUTS | F.CLONE_NEWIPC | F.CLONE_NEWNET | F.CLONE_NEWCGROUP | F.CLONE_NEWTIME,
    );
    expect(unshareFlags(["mount", "net"])).toBe(F.CLONE_NEWNS | F.CLONE_NEWNET);
    expect(unshareFlags([])).toBe(0);
  });

  test("planNamespaces keeps the canonical order and only the wanted kinds", () => {
    const wanted = { user: false, mount: true, pid: false, uts: true, ipc: false, net: true, cgroup: false, time: true };
    expect(planNamespaces(wanted)).toEqual(["mount", "uts", "net", "time"]);
  });

  test("id map writes go setgroups, uid_map, gid_map: an unprivileged writer must deny setgroups before gid_map (user_namespaces(7))", () => {
    expect(idMapWrites(planIdMaps({ uid: 1000, gid: 1001 }, { uids: [], gids: [], helpers: false }, "auto"))).toEqual([
      ["/proc/self/setgroups", "deny\n"],
      ["/proc/self/uid_map", "0 1000 1\n"],
      ["/proc/self/gid_map", "0 1001 1\n"],
    ]);
  });
});

describe("signals", () => {
  // SIGTERM is 15: bit 14 = 0x4000. SIGINT is 2: bit 1 = 0x2.
  const status = (cgt: string, ign: string) => `Name:\tsh\nSigQ:\t0/1\nSigPnd:\t0\nSigBlk:\t0\nSigIgn:\t${ign}\nSigCgt:\t${cgt}\n`;
  const none = "0000000000000000";

  test("maskHas reads bit N-1", () => {
    expect(maskHas("0000000000004000", 15)).toBe(true);
    expect(maskHas("0000000000004000", 14)).toBe(false);
    expect(maskHas("0000000000004000", 16)).toBe(false);
    expect(maskHas("0000000000000001", 1)).toBe(true);
    expect(maskHas("8000000000000000", 64)).toBe(true);
  });

  test("an uncaught SIGTERM is turned into a kill; caught or ignored is forwarded", () => {
    expect(deliveryFor("SIGTERM", status(none, none))).toBe("kill");
    expect(deliveryFor("SIGTERM", status("0000000000004000", none))).toBe("forward");
    expect(deliveryFor("SIGTERM", status(none, "0000000000004000"))).toBe("forward");
    expect(deliveryFor("SIGTERM", status("0000000000000002", none))).toBe("kill");
    expect(deliveryFor("SIGINT", status("0000000000000002", none))).toBe("forward");
  });

  test("SIGWINCH and nsrun's own init (status null) always get the signal", () => {
    expect(deliveryFor("SIGWINCH", status(none, none))).toBe("forward");
    expect(deliveryFor("SIGTERM", null)).toBe("forward");
  });
});

describe("searchPath", () => {
  const proc = (args: string[], env: string[]): ProcessPlan => ({ args, env, cwd: "/", cwdFallback: false, uid: 0, gid: 0, setgroups: false, init: false, terminal: null });

  test("a path with a slash is used as it is", () => {
    expect(searchPath(proc(["/bin/x"], ["PATH=/a"]))).toEqual(["/bin/x"]);
  });

  test("a bare name is searched in the box's PATH, or the default PATH", () => {
    expect(searchPath(proc(["ls"], ["HOME=/", "PATH=/a:/b"]))).toEqual(["/a/ls", "/b/ls"]);
    expect(searchPath(proc(["ls"], ["HOME=/"]))).toEqual(DEFAULT_PATH.split(":").map((d) => `${d}/ls`));
    expect(searchPath(proc(["ls"], []))[0]).toBe("/usr/local/sbin/ls");
  });
});

describe("cmd/args", () => {
  const parse = (raw: string[]) => parseArgs(raw, runArgs, { command: true });
  const refused = (raw: string[]) => {
    try {
      parse(raw);
    } catch (e) {
      if (e instanceof ArgsError) return e.message;
      throw e;
    }
    return null;
  };

  test("a misspelt flag is refused; every known spelling is taken", () => {
    expect(refused(["--confg", "x"])).toBe("unknown option --confg");
    expect(parse(["--verbose", "--trace", "--config=x", "--log-level", "info"]).values).toEqual({ config: "x", "log-level": "info", verbose: true, trace: true });
    expect(parse(["-c", "y", "--no-trace"]).values).toMatchObject({ config: "y", trace: false });
  });

  test("a flag that needs a value and has none is refused, and so is a value on a switch", () => {
    expect(refused(["--config"])).toBe("--config needs a value");
    expect(refused(["--trace=yes"])).toBe("--trace takes no value");
  });

  test("the command starts at --, or at the first word that is not an option; what follows is the command's", () => {
    expect(parse(["--", "ls", "--bogus"]).command).toEqual(["ls", "--bogus"]);
    expect(parse(["--trace", "ls", "-l", "--", "x"]).command).toEqual(["ls", "-l", "--", "x"]);
    expect(parse(["-c", "box.toml"]).command).toEqual([]);
    expect(refused(["--bogus", "--", "ls"])).toBe("unknown option --bogus");
  });

  test("startsABox: run, or --config outside a subcommand; never with --help", () => {
    expect(startsABox(["run", "ls"])).toBe(true);
    expect(startsABox(["--config", "b.toml"])).toBe(true);
    expect(startsABox(["run", "--help"])).toBe(false);
    expect(startsABox(["run", "--", "sh", "--help"])).toBe(true);
    expect(startsABox(["doctor", "--config", "x"])).toBe(false);
  });
});
