// The tape cache (core/host/tapecache.ts): a box planned before starts from its cached plan and tape;
// every input planning read, changed, plans anew; a cache folder or file anyone else could have
// written is never used. Observed through --trace's "cache:" lines, and through the box's output
// (a box from a tape nsrun did not trust still runs, planned anew).
import { afterAll, describe, expect, test } from "bun:test";
import { spawnSync } from "bun";
import { chmodSync, chownSync, copyFileSync, existsSync, linkSync, mkdirSync, mkdtempSync, readdirSync, rmSync, readFileSync, renameSync, statSync, symlinkSync, truncateSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type Actor, command, setupTestArea, TEST_USER, writeConfig } from "./helpers";
import { compileBox } from "../core/stages/compile";
import { loadConfig, parseConfig } from "../core/stages/config";
import { inspectHost, planBox, planBoxCgroup } from "../core/stages/plan";
import { boxCache } from "../core/host/tapecache";
import { FrozenTape } from "../core/tape/frozen";
import { HEADER } from "../ffi/executor/protocol";
import { writeCacheFile } from "../core/host/cachefiles";
import { close as closeFd, listDir, openat2 } from "../ffi/fs";
import { AT_FDCWD, O_DIRECTORY, O_PATH, O_RDONLY } from "../ffi/flags";

const area = setupTestArea();
afterAll(() => area.cleanup());
const PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const asRoot = process.getuid?.() === 0;
if (!asRoot) console.warn("skipped: cache files and folders of another user (only root can make them)");
const other = Number(spawnSync(["id", "-u", TEST_USER], { stdout: "pipe" }).stdout.toString().trim());

/**
 * A debug log keeps no start record (core/host/startrecord.ts): a line run again then meets the
 * config cache, which the config cache's own tests need.
 */
const NO_RECORD = ["--log-level", "debug"];

/** Ways to tamper with a cache file (a config cache entry, a start record), each with what --trace says of it. */
function fileAttacks(stranger: number): Array<[what: string, attack: (file: string) => void, says: RegExp]> {
  return [
    ["a file another user owns", (f) => chownSync(f, stranger, stranger), /is owned by uid|EACCES/],
    ["a group-writable file", (f) => chmodSync(f, 0o660), /has mode 0660/],
    ["a world-writable file", (f) => chmodSync(f, 0o606), /has mode 0606/],
    [
      "a file that is a symlink",
      (f) => {
        renameSync(f, `${f}.real`);
        symlinkSync(`${f}.real`, f);
      },
      /not used: openat2\(.*ELOOP/,
    ],
    ["a file with a second hard link", (f) => linkSync(f, `${f}-linked`), /has 2 links/],
    [
      "a corrupt file (one byte changed, its sum not)",
      (f) => {
        const b = readFileSync(f);
        b[b.length - 20] ^= 0x01;
        writeFileSync(f, b);
      },
      /is corrupt or truncated/,
    ],
    ["a truncated file", (f) => truncateSync(f, statSync(f).size - 10), /is corrupt or truncated/],
  ];
}

/** A sealed cache file's JSON (core/host/cachefiles.ts sealedJson: its SHA-256, a newline, the JSON). */
const sealedBody = (file: string) => readFileSync(file, "utf8").split("\n")[1];

/**
 * The attacks on one kind of sealed cache file (config entries, start records): each of fileAttacks
 * on an honest file means it is not used (the box says "honest") and --trace says why. What the
 * checks are for: a forged file, sealed right, the caller's own and mode 0600, is used (the cache
 * trusts only what the caller could have written); another user's copy of it is not.
 */
function attackSealedFiles<C extends { home: string; file: string }>(
  actor: Actor,
  o: { run: (home: string) => Run; used: (r: Run) => boolean; lines: (r: Run) => string[]; honest: () => C; forged: (c: C) => string },
): void {
  const stranger = actor.uid === 0 ? other : 0;
  for (const [what, attack, says] of fileAttacks(stranger).filter(([what]) => asRoot || !what.includes("another user"))) {
    const c = o.honest();
    attack(c.file);
    const r = o.run(c.home);
    expect({ what, used: o.used(r), code: r.code, stdout: r.stdout }).toEqual({ what, used: false, code: 0, stdout: "honest\n" });
    expect({ what, said: o.lines(r).some((l) => says.test(l)) }).toEqual({ what, said: true });
  }
  const sealed = (body: string) => `${new Bun.CryptoHasher("sha256").update(body).digest("hex")}\n${body}`;
  const c = o.honest();
  writeFileSync(c.file, sealed(o.forged(c)));
  expect(o.run(c.home).stdout).toBe("forged\n");
  if (asRoot) {
    const d = o.honest();
    writeFileSync(d.file, sealed(o.forged(d)));
    chownSync(d.file, stranger, stranger);
    expect(o.run(d.home).stdout).toBe("honest\n");
  }
}

let n = 0;
/** A fresh cache home for one test (XDG_CACHE_HOME), owned by the actor. */
function cacheHome(actor: Actor): string {
  const home = join(actor.area, `cache-${++n}`);
  mkdirSync(home, { mode: 0o700 });
  chownSync(home, actor.uid, actor.gid);
  return home;
}

interface Run {
  code: number;
  stdout: string;
  cache: string[];
  hit: boolean;
  stored: string | null;
  stderr: string;
  /** nsrun's PID (setpriv execs it): names the box's cgroup. */
  pid: number;
  /** The config cache's lines ("cache: config: ..."), whether it had the config, and where it stored it. */
  config: string[];
  configHit: boolean;
  configStored: string | null;
  /** The start record's lines ("cache: start: ..."), whether the box started from one, and where one was kept. */
  start: string[];
  startHit: boolean;
  startStored: string | null;
}

function box(actor: Actor, home: string, args: string[], opts: { bin?: string; prefix?: string[]; env?: Record<string, string> } = {}): Run {
  const argv = command(opts.bin ?? area.bin, actor, ["run", "--trace", ...args]);
  const r = spawnSync([...(opts.prefix ?? []), ...argv], { env: { PATH, XDG_CACHE_HOME: home, ...opts.env }, cwd: actor.area, stdin: "ignore", stdout: "pipe", stderr: "pipe", timeout: 30_000 });
  const cache = r.stderr
    .toString()
    .split("\n")
    .filter((l) => l.startsWith("nsrun[host] cache: "))
    .map((l) => l.slice("nsrun[host] cache: ".length));
  const stored = cache.find((l) => l.startsWith("stored "))?.slice("stored ".length) ?? null;
  const config = cache.filter((l) => l.startsWith("config: ")).map((l) => l.slice("config: ".length));
  const configStored = config.find((l) => l.startsWith("stored "))?.slice("stored ".length) ?? null;
  const start = cache.filter((l) => l.startsWith("start: ")).map((l) => l.slice("start: ".length));
  const startStored = start.find((l) => l.startsWith("stored "))?.slice("stored ".length) ?? null;
  return {
    code: r.exitCode ?? -1,
    stdout: r.stdout.toString(),
    cache,
    hit: cache.some((l) => l.startsWith("hit ")),
    stored,
    stderr: r.stderr.toString(),
    pid: r.pid,
    config,
    configHit: config.some((l) => l.startsWith("hit ")),
    configStored,
    start,
    startHit: start.some((l) => l.startsWith("hit ")),
    startStored,
  };
}

describe("a frozen tape (core/tape/frozen.ts)", () => {
  const config = parseConfig({ rootfs: "/srv/box", hostname: "box", mounts: [{ type: "bind", source: "/data", target: "/data" }] }, "(test)");
  const plan = planBox({ config, file: "(test)", dir: "/" }, { rootfs: "/srv/box", sources: [{ path: "/data", isDir: true }] }, { uid: 0, gid: 0, pid: 7 });
  const fds = { report: 10, sync: null, stub: 11, cgroupDir: null, cgroupProcs: [] };
  const tape = compileBox(plan, { fds, lastCap: 40, arch: "x64" });
  const at = (address: number) => (size: number) => ({ bytes: new Uint8Array(size), address });

  test("loaded at any address, it is byte for byte the tape encoded there, traced or not", () => {
    for (const trace of [false, true]) {
      const frozen = FrozenTape.of(tape, trace);
      for (const address of [0x7f0012345000, 0x1000, 0xffffffff000, 0x10000fff8000]) {
        expect(Buffer.from(frozen.encode(at(address), trace).bytes).equals(Buffer.from(tape.encode(at(address), trace).bytes))).toBe(true);
      }
      // Control: encoded elsewhere, the bytes differ (the relocations matter).
      expect(Buffer.from(frozen.encode(at(0x2000), trace).bytes).equals(Buffer.from(tape.encode(at(0x3000), trace).bytes))).toBe(false);
      expect(frozen.ops.map((op) => [op.name, op.text, op.step])).toEqual(tape.ops.map((op) => [op.name, op.text, op.step]));
      expect(frozen.stages).toEqual(tape.stages);
    }
  });

  test("a tape frozen for --trace runs only traced, and one without only without", () => {
    expect(() => FrozenTape.of(tape, false).encode(at(0x1000), true)).toThrow();
    expect(() => FrozenTape.of(tape, true).encode(at(0x1000), false)).toThrow();
  });

  test("a cached tape is used only with the host fds it was compiled for; the cgroup is planned for each box", async () => {
    // From source there is no executable to identify: the cache is this process's memory alone.
    const rootfs = join(area.actors[0].area, "rootfs");
    const loaded = { config: parseConfig({ rootfs, limits: { pids: 64 } }, "(test)"), file: "(test)", dir: "/" };
    const lines: string[] = [];
    const open = (pid: number) => {
      const facts = { ...inspectHost(loaded), cgroups: { v2: { mount: "/sys/fs/cgroup", own: "/", controllers: ["pids"], delegated: ["pids"] }, v1: {} } };
      const caller = { uid: 0, gid: 0, pid };
      const cache = boxCache({ loaded, facts, caller, options: {}, trace: false }, true, (l) => lines.push(l));
      if (!cache) throw new Error("no cache");
      const plan = cache.plan(() => planBox(loaded, facts, caller, {}), (p) => ({ ...p, cgroup: planBoxCgroup(loaded, facts, caller, {}) }));
      return { cache, plan };
    };
    let compiled = 0;
    const tapeFor = async (c: ReturnType<typeof open>, report: number) => {
      const f = { report, sync: null, stub: 11, cgroupDir: 12, cgroupProcs: [] };
      return c.cache.tape(f, async () => (compiled++, compileBox(c.plan, { fds: f, lastCap: 40 })));
    };
    const first = open(101);
    const t1 = await tapeFor(first, 10);
    expect(compiled).toBe(1);
    const second = open(202);
    expect(lines).toContain("cache: hit (memory)");
    // Positive control: the same fds take the cached tape as it is.
    expect(await tapeFor(second, 10)).toBe(t1);
    expect(compiled).toBe(1);
    // The cgroup is the new box's own, not the cached plan's.
    expect(JSON.stringify(second.plan.cgroup)).toContain("nsrun-202");
    expect(JSON.stringify(second.plan.cgroup)).not.toContain("nsrun-101");
    // Another report fd: compiled anew, and the new tape names it.
    const third = open(303);
    const t3 = await tapeFor(third, 13);
    expect(compiled).toBe(2);
    expect(lines).toContain("cache: the box's fds differ from the cached tape's: compiled anew");
    const header = (t: typeof t3) => new DataView(t.encode((size) => ({ bytes: new Uint8Array(size), address: 0x1000 }), false).bytes.buffer);
    expect(Number(header(t3).getBigInt64(HEADER.reportFd, true))).toBe(13);
    expect(Number(header(t1).getBigInt64(HEADER.reportFd, true))).toBe(10);
  });

  test("a plan survives the cache's JSON unchanged", () => {
    expect(JSON.parse(JSON.stringify(plan))).toEqual(plan);
  });

  test("a config from the config cache's JSON plans the same box as the one validated (every fixture config)", () => {
    const dir = join(import.meta.dir, "../fixtures/configs");
    const files = readdirSync(dir).filter((f) => f.endsWith(".toml"));
    expect(files.length).toBeGreaterThan(3);
    for (const f of files) {
      const loaded = loadConfig(join(dir, f));
      const copy = JSON.parse(JSON.stringify(loaded));
      const facts = { rootfs: "/srv/box", sources: loaded.config.mounts.map((m) => (m.type === "bind" ? { path: "/data", isDir: true } : null)) };
      expect({ f, plan: planBox(copy, facts, { uid: 0, gid: 0, pid: 7 }) }).toEqual({ f, plan: planBox(loaded, facts, { uid: 0, gid: 0, pid: 7 }) });
    }
  });
});

for (const actor of area.actors) {
  describe(`the tape cache, ${actor.name}`, () => {
    const rootfs = join(actor.area, "rootfs");
    const echo = ["--", "/bin/sh", "-c", "echo $HOME $GREETING; cat /data/note 2>/dev/null; true"];

    test("a box planned before starts from the cache; each input changed plans anew (and then is cached itself)", () => {
      const home = cacheHome(actor);
      const data = join(actor.area, "data-cache");
      mkdirSync(data, { recursive: true });
      writeFileSync(join(data, "note"), "note\n");
      const envFile = join(actor.area, "cache.env");
      writeFileSync(envFile, "GREETING=hello\n");
      if (actor.name === "user") spawnSync(["chown", "-R", `${actor.uid}:${actor.gid}`, data, envFile]);
      const config = writeConfig(actor, "cache.toml", `rootfs = "../rootfs"\n[[mounts]]\ntype = "bind"\nsource = "../data-cache"\ntarget = "/data"\n`);
      const base = ["--config", config, "--env-file", envFile];

      const first = box(actor, home, [...base, ...echo]);
      expect(first.stdout).toBe("/root hello\nnote\n");
      expect(first.hit).toBe(false);
      expect(first.stored).not.toBeNull();
      expect(first.startStored).not.toBeNull();
      const second = box(actor, home, [...base, ...echo]);
      expect(second.cache).toContain(`hit ${first.stored}`);
      // From its start record: neither the config cache nor planning was asked.
      expect(second.start).toEqual([`hit ${first.startStored}`]);
      expect(second.config).toEqual([]);
      expect(second.stdout).toBe(first.stdout);

      /**
       * Change one input: the next box is planned anew (its start record and the tape cache both miss:
       * the new output), the one after starts from its new start record.
       */
      let env: Record<string, string> = {};
      const changes: Array<[what: string, change: () => void, args: () => string[], expected: string]> = [
        ["the config's content", () => writeFileSync(config, `hostname = "other"\n${readFileSync(config, "utf8")}`), () => [...base, ...echo], "/root hello\nnote\n"],
        ["an env file's content", () => writeFileSync(envFile, "GREETING=bonjour\n"), () => [...base, ...echo], "/root bonjour\nnote\n"],
        ["a flag", () => {}, () => [...base, "--env", "GREETING=hi", ...echo], "/root hi\nnote\n"],
        ["the command", () => {}, () => [...base, "--", "/bin/sh", "-c", "echo $GREETING"], "bonjour\n"],
        ["the rootfs's identity (its mtime)", () => utimesSync(rootfs, new Date(), new Date(Date.now() - 60_000)), () => [...base, ...echo], "/root bonjour\nnote\n"],
        ["a bind source's identity", () => utimesSync(data, new Date(), new Date(Date.now() - 60_000)), () => [...base, ...echo], "/root bonjour\nnote\n"],
        [
          "the rootfs's /etc/passwd (the box's HOME comes from it)",
          () => writeFileSync(join(rootfs, "etc/passwd"), readFileSync(join(rootfs, "etc/passwd"), "utf8").replace("root:x:0:0:root:/root:", "root:x:0:0:root:/home/root:")),
          () => [...base, ...echo],
          "/home/root bonjour\nnote\n",
        ],
        // TERM: the box's own when it gets a terminal (a planning option, so an input of both).
        ["$TERM", () => void (env = { TERM: "dumb" }), () => [...base, ...echo], "/home/root bonjour\nnote\n"],
      ];
      for (const [what, change, args, expected] of changes) {
        change();
        const miss = box(actor, home, args(), { env });
        expect({ what, start: miss.startHit, hit: miss.hit, stdout: miss.stdout }).toEqual({ what, start: false, hit: false, stdout: expected });
        const again = box(actor, home, args(), { env });
        expect({ what, start: again.startHit, hit: again.hit, stdout: again.stdout }).toEqual({ what, start: true, hit: true, stdout: expected });
      }
      env = {};

      // nsrun's build: another executable (a copy is another file) plans anew.
      const copy = join(actor.area, "nsrun-copy");
      copyFileSync(area.bin, copy);
      chmodSync(copy, 0o755);
      expect(box(actor, home, [...base, ...echo], { bin: copy }).hit).toBe(false);
      expect(box(actor, home, [...base, ...echo], { bin: copy }).hit).toBe(true);
      // --trace lays the tape out with room for results; without it, another entry. Positive control
      // for all the above: the original inputs are still a hit.
      expect(box(actor, home, [...base, ...echo]).hit).toBe(true);
      if (actor.name === "root") {
        // uid, gid and groups: the same root with another supplementary group plans anew.
        const prefix = ["setpriv", "--groups=4242"];
        expect(box(actor, home, [...base, ...echo], { prefix }).hit).toBe(false);
        expect(box(actor, home, [...base, ...echo], { prefix }).hit).toBe(true);
      }
    });

    test.skipIf(actor.name !== "root")("a box from the cache gets a cgroup of its own, named for its nsrun (root: [limits])", () => {
      const home = cacheHome(actor);
      const config = writeConfig(actor, "limits.toml", `rootfs = "../rootfs"\n[limits]\npids = 64\n`);
      const args = ["--config", config, "--", "/bin/true"];
      const first = box(actor, home, args);
      expect(first.stored).not.toBeNull();
      expect(first.stderr).toContain(`nsrun-${first.pid}`);
      const second = box(actor, home, args);
      expect(second.hit).toBe(true);
      expect(second.code).toBe(0);
      expect(second.stderr).toContain(`nsrun-${second.pid}`);
      expect(second.stderr).not.toContain(`nsrun-${first.pid}`);
    });

    test("a setup step of a cached tape that fails says the same as a planned one (the op's stage, key, path and errno)", () => {
      const home = cacheHome(actor);
      const config = writeConfig(actor, "cache-fails.toml", 'rootfs = "../rootfs"\nreadonly = true\n[[mounts]]\ntype = "tmpfs"\ntarget = "/no/such/dir"\n');
      const args = ["--config", config, "--", "/bin/true"];
      const planned = box(actor, home, args);
      const cached = box(actor, home, args);
      expect(planned.hit).toBe(false);
      expect(cached.hit).toBe(true);
      const message = (r: Run) => r.stderr.split("\n").filter((l) => l.startsWith("nsrun: ") || l.startsWith("  hint"));
      expect(planned.code).toBe(125);
      expect(cached.code).toBe(125);
      expect(message(planned).join("\n")).toContain('mounts[0]: mount tmpfs on "/no/such/dir"');
      expect(message(cached)).toEqual(message(planned));
    });

    test("--no-cache neither reads nor writes the cache", () => {
      const home = cacheHome(actor);
      const config = writeConfig(actor, "nocache.toml", `rootfs = "../rootfs"\n`);
      const r = box(actor, home, ["--no-cache", "--config", config, "--", "/bin/true"]);
      expect(r.code).toBe(0);
      expect(r.cache).toEqual(["off (--no-cache)"]);
      expect(existsSync(join(home, "nsrun"))).toBe(false);
      // Control: without the flag the same box is stored.
      expect(box(actor, home, ["--config", config, "--", "/bin/true"]).stored).not.toBeNull();
    });

    test("the config cache: a command line run before is not assembled again; each thing assembly read, changed, assembles anew", () => {
      const home = cacheHome(actor);
      const envFile = join(actor.area, "config-cache.env");
      writeFileSync(envFile, "GREETING=hello\n");
      if (actor.name === "user") spawnSync(["chown", `${actor.uid}:${actor.gid}`, envFile]);
      const config = writeConfig(actor, "config-cache.toml", `rootfs = "../rootfs"\n`);
      const args = [...NO_RECORD, "--config", config, "--env-file", envFile, "--", "/bin/sh", "-c", "echo $GREETING; hostname"];
      const first = box(actor, home, args);
      expect(first.stdout).toBe("hello\nnsrun\n");
      expect(first.configHit).toBe(false);
      expect(first.configStored).not.toBeNull();
      const second = box(actor, home, args);
      expect(second.config).toContain(`hit ${first.configStored}`);
      expect(second.hit).toBe(true); // and the tape cache has its plan: nothing is planned
      expect(second.stdout).toBe(first.stdout);
      const changes: Array<[what: string, change: () => void, args: string[], expected: string]> = [
        ["the config's text", () => writeFileSync(config, `rootfs = "../rootfs"\nhostname = "other"\n`), args, "hello\nother\n"],
        ["the env file's text", () => writeFileSync(envFile, "GREETING=bonjour\n"), args, "bonjour\nother\n"],
        ["a flag", () => {}, ["--hostname", "third", ...args], "bonjour\nthird\n"],
      ];
      for (const [what, change, a, expected] of changes) {
        change();
        const miss = box(actor, home, a);
        expect({ what, hit: miss.configHit, stdout: miss.stdout }).toEqual({ what, hit: false, stdout: expected });
        const again = box(actor, home, a);
        expect({ what, hit: again.configHit, stdout: again.stdout }).toEqual({ what, hit: true, stdout: expected });
      }
    });

    test("the config cache: the default box's XDG_RUNTIME_DIR is an input; a user looked up by name is never stored", () => {
      const home = cacheHome(actor);
      const runtime = (n: number) => {
        const dir = join(actor.area, `xdg-runtime-${n}`);
        mkdirSync(dir, { recursive: true });
        if (actor.name === "user") spawnSync(["chown", `${actor.uid}:${actor.gid}`, dir]);
        return dir;
      };
      const [one, two] = [runtime(1), runtime(2)];
      const show = (dir: string) => box(actor, home, [...NO_RECORD, "--", "/bin/sh", "-c", `test -d ${dir} && ls -A ${dir} | wc -l`], { env: { XDG_RUNTIME_DIR: dir } });
      writeFileSync(join(one, "socket-like"), "");
      writeFileSync(join(two, "socket-like"), "");
      // The default box hides $XDG_RUNTIME_DIR under an empty tmpfs: the box sees it empty.
      expect(show(one).stdout).toBe("0\n");
      expect(show(one).configHit).toBe(true);
      const other = show(two);
      expect({ hit: other.configHit, stdout: other.stdout }).toEqual({ hit: false, stdout: "0\n" });
      // Control: the file is there on the host.
      expect(readFileSync(join(two, "socket-like"), "utf8")).toBe("");
      const named = writeConfig(actor, "config-cache-user.toml", `rootfs = "../rootfs"\n[process]\nuser = "nobody"\n`);
      const byName = box(actor, home, ["--config", named, "--", "/bin/true"]);
      expect(byName.code).toBe(0);
      expect(byName.config.some((l) => /^not stored: assembly read user "nobody"/.test(l))).toBe(true);
      expect(box(actor, home, ["--config", named, "--", "/bin/true"]).configHit).toBe(false);
    });

    test("a config cache file anyone else could have written, or a corrupt one, is not used: the config is assembled anew", () => {
      const config = writeConfig(actor, "config-attack.toml", `rootfs = "../rootfs"\nhostname = "honest"\n`);
      const args = [...NO_RECORD, "--config", config, "--", "/bin/hostname"];
      attackSealedFiles(actor, {
        run: (home) => box(actor, home, args),
        used: (r) => r.configHit,
        lines: (r) => r.config,
        honest: () => {
          const home = cacheHome(actor);
          const r = box(actor, home, args);
          expect(r.configStored).not.toBeNull();
          expect(box(actor, home, args).configHit).toBe(true); // positive control: the honest entry is used
          return { home, file: r.configStored as string };
        },
        // An entry that would give another box: the same file with another hostname.
        forged: (c) => {
          const body = sealedBody(c.file).replace('"hostname":"honest"', '"hostname":"forged"');
          expect(body).toContain('"hostname":"forged"');
          return body;
        },
      });
    });

    test("a start record anyone else could have written, or a corrupt one, is not used: the box starts the slow way", () => {
      const config = writeConfig(actor, "record-attack.toml", `rootfs = "../rootfs"\n`);
      const args = ["--config", config, "--", "/bin/echo", "honest"];
      attackSealedFiles(actor, {
        run: (home) => box(actor, home, args),
        used: (r) => r.startHit,
        lines: (r) => r.start,
        honest: () => {
          const home = cacheHome(actor);
          const r = box(actor, home, args);
          expect(r.startStored).not.toBeNull();
          expect(box(actor, home, args).startHit).toBe(true); // positive control: the honest record is used
          // Another line's record: its tape cache entry is what a forged record would name.
          const elsewhere = box(actor, home, ["--config", config, "--", "/bin/echo", "forged"]);
          return { home, file: r.startStored as string, other: elsewhere.startStored as string };
        },
        // The honest record naming the other line's tape cache entry: it would start that box.
        forged: (c) => JSON.stringify({ ...JSON.parse(sealedBody(c.file)), tape: JSON.parse(sealedBody(c.other)).tape }),
      });
    });

    test("a start record or config entry of another command line, renamed to this line's, is not used", () => {
      const config = writeConfig(actor, "record-rename.toml", `rootfs = "../rootfs"\nhostname = "line-b"\n`);
      const configA = writeConfig(actor, "record-rename-a.toml", `rootfs = "../rootfs"\nhostname = "line-a"\n`);
      for (const [kind, stored, used, lines, extra] of [
        ["start record", (r: Run) => r.startStored, (r: Run) => r.startHit, (r: Run) => r.start, []],
        ["config entry", (r: Run) => r.configStored, (r: Run) => r.configHit, (r: Run) => r.config, NO_RECORD],
      ] as const) {
        const home = cacheHome(actor);
        const lineA = [...extra, "--config", configA, "--", "/bin/hostname"];
        const lineB = [...extra, "--config", config, "--", "/bin/hostname"];
        const a = stored(box(actor, home, lineA));
        const b = stored(box(actor, home, lineB));
        expect({ kind, a: a !== null, b: b !== null }).toEqual({ kind, a: true, b: true });
        expect({ kind, used: used(box(actor, home, lineB)) }).toEqual({ kind, used: true }); // positive control
        // The caller's own intact file, mode 0600, one link: only the key inside it says it is line A's.
        copyFileSync(a as string, b as string);
        if (asRoot) chownSync(b as string, actor.uid, actor.gid);
        const r = box(actor, home, lineB);
        expect({ kind, used: used(r), code: r.code, stdout: r.stdout }).toEqual({ kind, used: false, code: 0, stdout: "line-b\n" });
        expect({ kind, said: lines(r).some((l) => /is corrupt or truncated/.test(l)) }).toEqual({ kind, said: true });
      }
    });

    test("a box whose start is not the same each time keeps no start record: a cgroup, a debug log, --report, a rootfs reached through a symlink", () => {
      const link = join(actor.area, "rootfs-link");
      if (asRoot && !existsSync(link)) symlinkSync("rootfs", link); // root's: nsrun follows it
      const plain = writeConfig(actor, "record-plain.toml", `rootfs = "../rootfs"\n`);
      const linked = writeConfig(actor, "record-linked.toml", `rootfs = "../rootfs-link"\n`);
      const limited = writeConfig(actor, "record-limits.toml", `rootfs = "../rootfs"\n[limits]\npids = 64\n`);
      const report = join(actor.area, "record-report.json");
      const cases: Array<[what: string, args: string[], says: RegExp | null]> = [
        ["a debug log", ["--log-level", "debug", "--config", plain, "--", "/bin/true"], null],
        ["--report", ["--report", report, "--config", plain, "--", "/bin/true"], null],
      ];
      // nsrun follows only root's symlinks: the tests' link is root's when root runs them.
      if (asRoot) cases.push(["a rootfs reached through a symlink", ["--config", linked, "--", "/bin/true"], /^not stored: rootfs is reached through a symlink$/]);
      if (asRoot && actor.name === "root") cases.push(["a cgroup ([limits])", ["--config", limited, "--", "/bin/true"], /^not stored: it has a cgroup$/]);
      for (const [what, args, says] of cases) {
        const home = cacheHome(actor);
        const first = box(actor, home, args);
        expect({ what, code: first.code, stored: first.startStored }).toEqual({ what, code: 0, stored: null });
        if (says) expect({ what, said: first.start.some((l) => says.test(l)) }).toEqual({ what, said: true });
        const second = box(actor, home, args);
        // The tape cache still has its plan: only the start record is left out.
        expect({ what, code: second.code, start: second.startHit, hit: second.hit }).toEqual({ what, code: 0, start: false, hit: true });
      }
      // Control: the same box without any of these keeps one, and starts from it.
      const home = cacheHome(actor);
      expect(box(actor, home, ["--config", plain, "--", "/bin/true"]).startStored).not.toBeNull();
      expect(box(actor, home, ["--config", plain, "--", "/bin/true"]).startHit).toBe(true);
    });

    test("a box started from its record with a file the caller left open: fd closed in the box, tape compiled anew once, then cached for those fds", () => {
      const home = cacheHome(actor);
      const config = writeConfig(actor, "record-fds.toml", `rootfs = "../rootfs"\n`);
      const probe = ["--config", config, "--", "/bin/sh", "-c", "[ -e /proc/self/fd/5 ] && echo fd5-open || echo fd5-closed"];
      // fd 5 open in nsrun (a shell's redirection, then exec): nsrun's own fds then take other numbers.
      const withFd5 = { prefix: ["/bin/sh", "-c", 'exec 5</dev/null; exec "$@"', "sh"] };
      // Control: the probe sees an fd 5 the same way left open.
      expect(spawnSync([...withFd5.prefix, "/bin/sh", "-c", "[ -e /proc/self/fd/5 ] && echo fd5-open"], { stdout: "pipe" }).stdout.toString()).toBe("fd5-open\n");
      const plain = box(actor, home, probe);
      expect([plain.code, plain.stdout, plain.startStored !== null]).toEqual([0, "fd5-closed\n", true]);
      expect(box(actor, home, probe).startHit).toBe(true);
      const first = box(actor, home, probe, withFd5);
      expect([first.code, first.stdout, first.startHit]).toEqual([0, "fd5-closed\n", true]);
      expect(first.cache).toContain("the box's fds differ from the cached tape's: compiled anew");
      const again = box(actor, home, probe, withFd5);
      expect([again.code, again.stdout, again.startHit, again.hit]).toEqual([0, "fd5-closed\n", true, true]);
      expect(again.cache).not.toContain("the box's fds differ from the cached tape's: compiled anew");
    });

    test("`nsrun run WORD` from a start record is OCI's run once ./config.json is a runtime-spec config (control: the record is there)", () => {
      const home = cacheHome(actor);
      const dir = join(actor.area, `run-word-${n}`);
      mkdirSync(dir, { recursive: true });
      chownSync(dir, actor.uid, actor.gid);
      const line = () => spawnSync(command(area.bin, actor, ["run", "true"]), { env: { PATH, XDG_CACHE_HOME: home }, cwd: dir, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
      // The default box running `true`: a line that keeps a start record, then starts from it.
      expect(line().exitCode).toBe(0);
      expect(readdirSync(join(home, "nsrun")).some((f) => f.startsWith("start-"))).toBe(true);
      expect(line().exitCode).toBe(0);
      // Now the folder is a bundle: the same line is OCI's `run true`, which fails (root: nsrun refuses
      // the bare config; the ordinary user: no state folder without XDG_RUNTIME_DIR), where the box ran.
      writeFileSync(join(dir, "config.json"), '{"ociVersion": "1.0.2"}');
      const oci = line();
      expect(oci.exitCode).not.toBe(0);
      expect(oci.stderr.toString()).toMatch(/config\.json|state folder/);
    });

    test("a cache folder or file anyone else could have written is not used, and the box is planned anew", () => {
      const config = writeConfig(actor, "attack.toml", `rootfs = "../rootfs"\n`);
      const args = ["--config", config, "--", "/bin/echo", "planned"];
      const stranger = actor.uid === 0 ? other : 0;
      /** A cache home with an honest entry: its folder and file. */
      const honest = () => {
        const home = cacheHome(actor);
        const r = box(actor, home, args);
        expect(r.stored).not.toBeNull();
        expect(box(actor, home, args).hit).toBe(true); // positive control: the honest cache is used
        return { home, folder: join(home, "nsrun"), file: r.stored as string };
      };
      const attacks: Array<[what: string, attack: (c: ReturnType<typeof honest>) => void, says: RegExp]> = [
        // Only root can give a file to another user: as an ordinary user the two are not tried (below).
        ["a folder another user owns", (c) => chownSync(c.folder, stranger, stranger), /folder .* is owned by uid/],
        ["a group-writable folder", (c) => chmodSync(c.folder, 0o770), /folder .* has mode 0770/],
        ["a world-writable folder", (c) => chmodSync(c.folder, 0o707), /folder .* has mode 0707/],
        [
          "a folder reached through a symlink",
          (c) => {
            renameSync(c.folder, `${c.folder}-real`);
            symlinkSync(`${c.folder}-real`, c.folder);
          },
          /not used: openat2\(.*ELOOP/,
        ],
        // (root may open the file and sees the owner; an ordinary user may not open root's 0600 file)
        ["a file another user owns", (c) => chownSync(c.file, stranger, stranger), /is owned by uid|EACCES/],
        ["a group-writable file", (c) => chmodSync(c.file, 0o660), /has mode 0660/],
        ["a world-writable file", (c) => chmodSync(c.file, 0o606), /has mode 0606/],
        [
          "a file that is a symlink",
          (c) => {
            renameSync(c.file, `${c.file}.real`);
            symlinkSync(`${c.file}.real`, c.file);
          },
          /not used: openat2\(.*ELOOP/,
        ],
        ["a file with a second hard link", (c) => linkSync(c.file, `${c.folder}/../linked`), /has 2 links/],
        [
          "a corrupt file (one byte changed)",
          (c) => {
            const b = readFileSync(c.file);
            b[b.length - 100] ^= 0xff;
            writeFileSync(c.file, b);
          },
          /is corrupt or truncated/,
        ],
        ["a truncated file", (c) => truncateSync(c.file, statSync(c.file).size - 1000), /is corrupt or truncated/],
        ["an empty file", (c) => truncateSync(c.file, 0), /is corrupt or truncated/],
      ];
      for (const [what, attack, says] of attacks.filter(([what]) => asRoot || !what.includes("another user"))) {
        const c = honest();
        attack(c);
        const r = box(actor, c.home, args);
        expect({ what, hit: r.hit, code: r.code, stdout: r.stdout }).toEqual({ what, hit: false, code: 0, stdout: "planned\n" });
        expect({ what, said: r.cache.some((l) => says.test(l)) }).toEqual({ what, said: true });
      }
    });
  });
}

describe("the cache folder stays bounded (core/host/cachefiles.ts writeCacheFile)", () => {
  test("writing a file removes the least recently written of its kind beyond the limit, and nothing else", () => {
    const folder = mkdtempSync("/tmp/nsrun-prune-"); // 0700, the caller's: a folder the cache may use
    try {
      const kind = /^start-\w$/;
      for (const n of "abcde") expect(writeCacheFile(folder, `start-${n}`, new Uint8Array([1]), null, kind, 10)).toBe(true);
      writeFileSync(join(folder, "config-x"), ""); // another kind: never this kind's to remove
      // Ages set apart (writes within one clock tick share an mtime): a oldest, e newest.
      "abcde".split("").forEach((n, i) => utimesSync(join(folder, `start-${n}`), 1_000_000 + i, 1_000_000 + i));
      expect(readdirSync(folder).sort()).toEqual(["config-x", "start-a", "start-b", "start-c", "start-d", "start-e"]);
      expect(writeCacheFile(folder, "start-f", new Uint8Array([1]), null, kind, 3)).toBe(true);
      expect(readdirSync(folder).sort()).toEqual(["config-x", "start-d", "start-e", "start-f"]);
    } finally {
      rmSync(folder, { recursive: true, force: true });
    }
  });

  test("listDir reads a folder opened O_PATH (as the cache opens its folder) as well as one opened for reading", () => {
    const folder = mkdtempSync("/tmp/nsrun-list-");
    try {
      const names = Array.from({ length: 700 }, (_, i) => `file-${i}-${"x".repeat(40)}`); // more than one getdents64 buffer
      for (const n of names) writeFileSync(join(folder, n), "");
      for (const flags of [O_PATH | O_DIRECTORY, O_RDONLY | O_DIRECTORY]) {
        const fd = openat2(AT_FDCWD, folder, flags, 0);
        try {
          expect(listDir(fd, folder).sort()).toEqual([...names].sort());
        } finally {
          closeFd(fd);
        }
      }
    } finally {
      rmSync(folder, { recursive: true, force: true });
    }
  });
});
