// The tape: what TypeScript compiles a box into, and the C executor that runs it.
//   (a) ffi/executor/protocol.ts and protocol.h agree on every constant and offset (the C static
//       assertions the build compiles, and a reordered header that fails them);
//   (b) golden tapes: a few plans compile to exactly the listing in test/golden/ (pure TypeScript;
//       UPDATE_GOLDEN=1 rewrites the files after an intended change, for review in the diff);
//   (c) the real executor: a failing op reports its index and errno, and nsrun's message names the
//       step; tolerated errnos, jumps, loads and stores; a sync point that waits for the host; an fd
//       passed to the host; setns(2) into another process's namespace.
import { describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSync } from "bun";
import { type LoadedConfig, parseConfig } from "../core/stages/config";
import { compileBox, compileHelper, keepOnlyFds } from "../core/stages/compile";
import { launch } from "../core/launch/launch";
import { SYNC } from "../core/launch/sync";
import type { CgroupHost } from "../core/stages/cgroup";
import { type HostFacts, planBox } from "../core/stages/plan";
import { close, exitGroup, openat, sendFd, setns, syncWithHost } from "../core/tape/calls";
import { Tape } from "../core/tape/tape";
import { ERRNO, errnoName } from "../ffi/errno";
import { BAD, CMP, HEADER, OP, OP_BYTES, OP_FIELD, protocolAsserts, REGISTERS, REPORT, TAPE_MAGIC, TAPE_VERSION } from "../ffi/executor/protocol";
import * as F from "../ffi/flags";
import { sealedStub, tapeMemory } from "../ffi/executor/load";
import { pipe, receiveFd, socketPair } from "../ffi/io";
import { libc } from "../ffi/libc";
import { waitExit } from "../ffi/wait";
import { waitFor } from "./helpers";

const REPO = join(import.meta.dir, "..");

describe("protocol.h and protocol.ts", () => {
  const header = readFileSync(join(REPO, "ffi/executor/protocol.h"), "utf8");
  const define = (name: string) => {
    const m = header.match(new RegExp(`#define ${name} (-?(?:0x)?[0-9a-f]+)u?\\b`, "i"));
    if (!m) throw new Error(`protocol.h has no #define ${name}`);
    return Number(m[1]);
  };

  test("every constant has the same value on both sides", () => {
    expect([define("NSRUN_TAPE_MAGIC"), define("NSRUN_TAPE_VERSION"), define("NSRUN_REGISTERS")]).toEqual([TAPE_MAGIC, TAPE_VERSION, REGISTERS]);
    for (const [name, value] of Object.entries(OP)) expect([name, define(`NSRUN_OP_${name}`)]).toEqual([name, value]);
    for (const [name, value] of Object.entries(CMP)) expect([name, define(`NSRUN_CMP_${name}`)]).toEqual([name, value]);
    for (const [name, value] of Object.entries(REPORT)) expect([name, define(`NSRUN_REPORT_${name}`)]).toEqual([name, value]);
  });

  // The checks the build compiles (out/protocol_check.h), compiled here against protocol.h, and
  // against a copy with two same-size fields swapped: the copy must fail, naming a field.
  const compileAsserts = (headerText: string) => {
    const dir = mkdtempSync(join(tmpdir(), "nsrun-protocol-"));
    try {
      mkdirSync(join(dir, "out"));
      writeFileSync(join(dir, "protocol.h"), headerText);
      writeFileSync(join(dir, "out/protocol_check.h"), protocolAsserts());
      writeFileSync(join(dir, "check.c"), '#include "protocol.h"\n');
      const r = spawnSync([process.env.CC ?? "gcc", "-fsyntax-only", "-std=c11", "check.c"], { cwd: dir, stderr: "pipe" });
      return { ok: r.exitCode === 0, stderr: r.stderr.toString() };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };

  test("protocol.ts's offsets, sizes and values hold in protocol.h (C static assertions)", () => {
    expect(compileAsserts(header)).toEqual({ ok: true, stderr: "" });
  });

  test("positive control: a same-size reorder of protocol.h fails the assertions", () => {
    const swapped = header.replace(
      "  long long cgroup_fd;            // >= 0: CLONE_INTO_CGROUP this cgroup v2 directory\n  long long report_fd;            // the report pipe's write end\n",
      "  long long report_fd;\n  long long cgroup_fd;\n",
    );
    expect(swapped).not.toBe(header);
    const r = compileAsserts(swapped);
    expect(r.ok).toBe(false);
    expect(r.stderr).toContain("nsrun_tape.cgroup_fd");
    const reordered = header.replace("  int kind;\n  int index;\n", "  int index;\n  int kind;\n");
    expect(reordered).not.toBe(header);
    expect(compileAsserts(reordered).stderr).toContain("nsrun_report.kind");
  });
});

// ---- golden tapes ---------------------------------------------------------------------------

const FDS = { report: 30, sync: null, stub: 31, cgroupDir: null, cgroupProcs: [] };
const loaded = (raw: Record<string, unknown>): LoadedConfig => ({ config: parseConfig({ rootfs: "rootfs", ...raw }, "box.toml"), file: "box.toml", dir: "/srv" });
const facts = (extra: Partial<HostFacts> = {}): HostFacts => ({ rootfs: "/srv/rootfs", sources: [], ttyGroupMapped: true, setgroupsAllowed: true, ...extra });

const GOLDEN: Array<{ name: string; tape: () => Tape }> = [
  {
    name: "root-minimal",
    tape: () => compileBox(planBox(loaded({ hostname: "box" }), facts(), { uid: 0, gid: 0, pid: 7 }), { fds: FDS, lastCap: 40, arch: "x64" }),
  },
  {
    name: "rootless-ephemeral-binds",
    tape: () => {
      const raw = {
        ephemeral: true,
        mounts: [
          { type: "bind", source: "data", target: "/data", readonly: true },
          { type: "tmpfs", target: "/scratch", options: ["size=1m"] },
        ],
        security: { seccomp: "unconfined", masked_paths: ["/proc/keys", "/etc/secret"], readonly_paths: ["/proc/sys"] },
        process: { args: ["/bin/sh", "-c", "echo hi"], cwd: "/tmp", env: { PATH: "/bin", HOME: "/root" } },
      };
      const f = facts({ sources: [{ path: "/srv/data", isDir: true }], ttyGroupMapped: false });
      return compileBox(planBox(loaded(raw), f, { uid: 1000, gid: 1000, pid: 7 }), { fds: FDS, lastCap: 40, arch: "x64" });
    },
  },
  {
    name: "root-init-cgroup-v1-no-pidns",
    tape: () => {
      const raw = { process: { init: true, user: "1000:1000" }, namespaces: { pid: false, net: false }, limits: { pids: 16 }, security: { no_new_privileges: false } };
      const cgroups: CgroupHost = { v2: null, v1: { pids: { mount: "/sys/fs/cgroup/pids", own: "/" } } };
      const plan = planBox(loaded(raw), facts({ cgroups }), { uid: 0, gid: 0, pid: 7 });
      return compileBox(plan, { fds: { ...FDS, cgroupProcs: [32] }, lastCap: 40, arch: "x64" });
    },
  },
  // The other profiles of the outline (core/stages/compile.ts): OCI create and exec, run sealed by the stub.
  {
    name: "oci-create-rootless",
    tape: () => {
      const raw = { process: { args: ["/bin/sh", "-c", "echo hi"], env: { PATH: "/bin" } }, mounts: [{ type: "tmpfs", target: "/scratch" }] };
      const plan = planBox(loaded(raw), facts({ ttyGroupMapped: false }), { uid: 1000, gid: 1000, pid: 7 });
      return compileBox(plan, { profile: "create", fds: { ...FDS, sync: 33, keep: [34] }, lastCap: 40, arch: "x64", parentDeath: false });
    },
  },
  {
    name: "oci-exec-root",
    tape: () => {
      const plan = planBox(loaded({ process: { args: ["ps"] } }), facts(), { uid: 0, gid: 0, pid: 7 });
      const join = (["user", "mount", "pid", "net", "ipc", "uts"] as const).map((kind, i) => ({ kind, fd: 40 + i }));
      return compileBox(plan, { profile: "exec", fds: { ...FDS, join }, lastCap: 40, arch: "x64", parentDeath: false });
    },
  },
  // The helper tapes: processes nsrun starts that never enter a box.
  { name: "helper-program", tape: () => compileHelper({ kind: "program", report: 70, what: "start pasta for the box", fds: [64, 65, 66, 67], path: "/usr/bin/pasta", args: ["pasta", "--config-net"], env: ["PATH=/usr/bin"] }) },
  { name: "helper-userns", tape: () => compileHelper({ kind: "userns", report: 30, sync: 33, what: "mounts[0]: make a user namespace for the id map" }) },
  {
    name: "helper-as-root",
    tape: () =>
      compileHelper({
        kind: "as-root",
        report: 30,
        sync: 33,
        what: "give the image's files their owners",
        map: { writer: "newuidmap", uidMap: [{ inside: 0, outside: 1000, count: 1 }, { inside: 1, outside: 100000, count: 65536 }], gidMap: [{ inside: 0, outside: 1000, count: 1 }], setgroups: "allow" },
        keep: [40],
        body: (t) => exitGroup(t, 0),
      }),
  },
];

describe("golden tapes (test/golden/*.tape)", () => {
  for (const g of GOLDEN) {
    test(`${g.name} compiles to its listing`, () => {
      const tape = g.tape();
      const listing = `# clone3 flags: ${F.flagNames(tape.cloneFlags, F.CLONE_FLAGS)}\n${tape.listing(errnoName)}`;
      const file = join(REPO, "test/golden", `${g.name}.tape`);
      // A missing golden file fails: UPDATE_GOLDEN=1 writes it, for review in the diff.
      if (process.env.UPDATE_GOLDEN === "1") writeFileSync(file, listing);
      if (!existsSync(file)) throw new Error(`test/golden/${g.name}.tape is missing: run UPDATE_GOLDEN=1 bun test test/tape.test.ts and review it`);
      expect(listing).toBe(readFileSync(file, "utf8"));
    });
  }

  test("every tape ends in the stub's execveat, with the command's paths and argv", () => {
    const tape = GOLDEN[1].tape();
    const last = tape.ops[tape.ops.length - 1];
    expect(last.name).toBe("execveat");
    expect(last.text).toBe('execveat(31, "", ["nsrun","exec","30","1","/bin/sh","--","/bin/sh","-c","echo hi"], [2 variables], AT_EMPTY_PATH)');
  });

  test("every jump lands on an op of the tape", () => {
    for (const g of GOLDEN) {
      const tape = g.tape();
      for (const op of tape.ops) {
        if (op.code !== OP.JUMP && op.code !== OP.JUMP_IF) continue;
        const target = op.args[op.code === OP.JUMP ? 0 : 3] as { index: number };
        expect(target.index).toBeGreaterThan(tape.ops.indexOf(op));
        expect(target.index).toBeLessThanOrEqual(tape.ops.length);
      }
    }
  });
});

// ---- the real executor ----------------------------------------------------------------------

/** Run a hand-made tape in a child with no namespaces; `build` gets the report fd and adds the ops. */
async function run(
  build: (t: Tape, report: number, extra: { sync: number }) => void,
  opts: { onSync?: (id: number, pid: number) => Promise<void> | void; keep?: number[]; sealed?: boolean; corrupt?: (op: (index: number) => DataView) => void } = {},
) {
  const [reportRead, reportWrite] = pipe(true);
  const [syncRead, syncWrite] = pipe(true);
  const t = new Tape();
  t.reportFd = reportWrite;
  t.stage("namespaces", "test");
  // As a box's tape does: the process keeps only the fds it needs, so our ends of its pipes close
  // when we close them.
  keepOnlyFds(t, [reportWrite, syncRead, ...(opts.keep ?? [])]);
  build(t, reportWrite, { sync: syncRead });
  if (opts.corrupt) {
    // A hand-made bad tape: the encoder refuses to make one, so its bytes are changed after it.
    const encode = t.encode.bind(t);
    const corrupt = opts.corrupt;
    t.encode = (alloc, trace) => {
      const m = encode(alloc, trace);
      corrupt((i) => new DataView(m.bytes.buffer, m.bytes.byteOffset + HEADER.size + i * OP_BYTES, OP_BYTES));
      return m;
    };
  }
  const handlers = Object.fromEntries(Object.values(SYNC).map((id) => [id, (pid: number) => opts.onSync?.(id, pid)]));
  const stub = opts.sealed ? sealedStub() : undefined;
  const r = await launch(t, { report: [reportRead, reportWrite], syncWrite, sync: handlers, sealedStub: stub });
  if (stub !== undefined) libc.close(stub);
  libc.close(syncRead);
  libc.close(syncWrite);
  const exit = await waitExit(r.pidfd);
  libc.close(r.pidfd);
  return { run: r, exit, tape: t };
}

describe("the assembler's registers and jumps", () => {
  test("registers no longer used are reused: 100 fds opened and closed one after another fit", () => {
    const t = new Tape();
    t.stage("namespaces", "test");
    for (let i = 0; i < 100; i++) {
      const fd = t.reg(`fd${i}`);
      openat(t, F.AT_FDCWD, "/", F.O_RDONLY, 0, { dst: fd });
      close(t, fd);
    }
    const regs = t.allocate();
    expect(regs.size).toBe(100);
    expect(new Set(regs.values())).toEqual(new Set([0]));
  });

  test("more registers live at once than the executor has is a compiler error (control: one fewer fits)", () => {
    const live = (n: number) => {
      const t = new Tape();
      t.stage("namespaces", "test");
      const fds = Array.from({ length: n }, (_, i) => t.reg(`fd${i}`));
      for (const fd of fds) openat(t, F.AT_FDCWD, "/", F.O_RDONLY, 0, { dst: fd });
      for (const fd of fds) close(t, fd);
      return t;
    };
    expect(live(REGISTERS).allocate().size).toBe(REGISTERS);
    expect(() => live(REGISTERS + 1).allocate()).toThrow(`tape: more than ${REGISTERS} registers live at op ${REGISTERS}`);
  });

  test("a register read before any op writes it is a compiler error (control: written first, it is fine)", () => {
    const make = (writeFirst: boolean) => {
      const t = new Tape();
      t.stage("namespaces", "test");
      const fd = t.reg("fd");
      if (writeFirst) openat(t, F.AT_FDCWD, "/", F.O_RDONLY, 0, { dst: fd });
      close(t, fd);
      return () => t.allocate();
    };
    expect(make(true)).not.toThrow();
    expect(make(false)).toThrow("tape: op 0 (close) reads register fd before any op writes it");
  });

  test("a jump backwards, or to itself, is refused when the tape is encoded (control: forward is fine)", () => {
    const make = (where: "before" | "self" | "after") => {
      const t = new Tape();
      t.stage("namespaces", "test");
      const l = t.label("l");
      if (where === "before") t.place(l);
      exitGroup(t, 0);
      if (where === "self") t.place(l);
      t.jump(l);
      if (where === "after") t.place(l);
      exitGroup(t, 1);
      return () => t.encode(tapeMemory, false);
    };
    expect(make("after")).not.toThrow();
    expect(make("before")).toThrow("tape: op 1 (jump) jumps to l at 0: jumps must go forward");
    expect(make("self")).toThrow("tape: op 1 (jump) jumps to l at 1: jumps must go forward");
  });
});

describe("the executor", () => {
  // Each bad tape ends in exit_group(7) after the bad op. The executor checks every op before it runs
  // the first, so a bad tape exits 125 with a FAILED record naming the op and what is wrong; the
  // control, the same tape unchanged, exits 7.
  const badTape = async (corrupt: (op: (index: number) => DataView, index: number) => void) => {
    let at = -1;
    const build = (t: Tape) => {
      exitGroup(t, 7);
      const fd = t.reg("fd");
      const l = t.label("end");
      at = t.ops.length;
      openat(t, F.AT_FDCWD, "/", F.O_RDONLY, 0, { dst: fd });
      t.jumpIf(fd, "LT", 0, l);
      close(t, fd);
      t.place(l);
    };
    const control = await run(build);
    expect([control.exit, control.run.reports]).toEqual([{ code: 7, signal: null }, []]);
    const bad = await run(build, { corrupt: (op) => corrupt(op, at) });
    return { at, exit: bad.exit, reports: bad.run.reports, tape: bad.tape };
  };

  test("a register out of range (dst or argument) is refused before any op runs, not masked", async () => {
    const dst = await badTape((op, at) => op(at).setInt16(OP_FIELD.dst, REGISTERS, true));
    expect(dst.exit).toEqual({ code: 125, signal: null });
    expect(dst.reports).toEqual([{ kind: REPORT.FAILED, index: dst.at, value: BAD.REGISTER }]);
    const arg = await badTape((op, at) => op(at + 1).setBigInt64(OP_FIELD.a, BigInt(REGISTERS + 1), true)); // jump_if's register
    expect(arg.reports).toEqual([{ kind: REPORT.FAILED, index: arg.at + 1, value: BAD.REGISTER }]);
    const { describeRecord } = await import("../core/launch/launch");
    expect(describeRecord(arg.reports[0], arg.tape).message).toBe(`the executor refused the tape at op ${arg.at + 1}: a register out of range: a bug in nsrun`);
  });

  test("a jump backwards, to itself or past the end is refused before any op runs", async () => {
    for (const target of [0, "self", 10_000] as const) {
      const r = await badTape((op, at) => op(at + 1).setBigInt64(OP_FIELD.a + 3 * 8, BigInt(target === "self" ? at + 1 : target), true));
      expect(r.exit).toEqual({ code: 125, signal: null });
      expect(r.reports).toEqual([{ kind: REPORT.FAILED, index: r.at + 1, value: BAD.JUMP }]);
    }
  });

  test("an unknown control op is refused before any op runs", async () => {
    const r = await badTape((op, at) => op(at).setInt32(OP_FIELD.code, -100, true));
    expect(r.reports).toEqual([{ kind: REPORT.FAILED, index: r.at, value: BAD.OP }]);
  });

  test("a failing op reports its index and errno, and ends the process with 125", async () => {
    const { run: r, exit, tape } = await run((t) => {
      t.doing("open something that is not there");
      openat(t, F.AT_FDCWD, "/nonexistent/nsrun-test", F.O_RDONLY, 0);
      exitGroup(t, 0);
    });
    const index = tape.ops.findIndex((op) => op.name === "openat");
    expect(r.reports).toEqual([{ kind: REPORT.FAILED, index, value: ERRNO.ENOENT }]);
    expect(exit).toEqual({ code: 125, signal: null });
    expect(tape.ops[index].step.what).toBe("open something that is not there");
  });

  test("a tolerated errno goes on, with -errno in the register; jumps, loads and stores work", async () => {
    const { run: r, exit } = await run((t) => {
      const fd = t.reg("fd");
      const x = t.reg("x");
      const missing = t.label("missing");
      const cell = t.slot(8, "cell");
      openat(t, F.AT_FDCWD, "/nonexistent/nsrun-test", F.O_RDONLY, 0, { dst: fd, ok: [ERRNO.ENOENT] });
      t.jumpIf(fd, "EQ", -ERRNO.ENOENT, missing);
      exitGroup(t, 1); // not reached
      t.place(missing);
      t.store(fd, cell, 8);
      t.load(cell, 8, x);
      const fine = t.label("fine");
      t.jumpIf(x, "LT", 0, fine);
      exitGroup(t, 2);
      t.place(fine);
      exitGroup(t, 42);
    });
    expect(r.reports).toEqual([]);
    expect(exit).toEqual({ code: 42, signal: null });
  });

  test("the message of a failed box names the stage, the step, the call and the errno", async () => {
    const { startBox } = await import("../core/host/start");
    const plan = planBox(loaded({ mounts: [{ type: "bind", source: "gone", target: "/gone" }] }), facts({ rootfs: "/", sources: [{ path: "/nonexistent/nsrun-gone", isDir: true }] }), {
      uid: process.getuid?.() ?? 0,
      gid: process.getgid?.() ?? 0,
      pid: process.pid,
    });
    const started = await startBox(plan);
    if (started.ok) throw new Error("the box started");
    if (started.started) await waitExit(started.started.pidfd);
    expect(started.failure.message).toBe(
      'mounts: mounts[0]: bind "/nonexistent/nsrun-gone" on "/gone": openat2(AT_FDCWD, "/nonexistent/nsrun-gone", {O_CLOEXEC|O_PATH, RESOLVE_NO_MAGICLINKS|RESOLVE_NO_SYMLINKS}): ENOENT (No such file or directory)',
    );
    expect(started.failure.exitCode).toBe(125);
  });

  test("a sync point waits for the host; the host sees the process paused there", async () => {
    const seen: string[] = [];
    const { exit } = await run(
      (t, report, { sync }) => {
        syncWithHost(t, report, sync, SYNC.NETWORK, "wait for the host");
        exitGroup(t, 3);
      },
      {
        onSync: async (id, pid) => {
          // The process goes on to read(2) on the sync pipe right after its record, and stays there
          // until this returns: wait (bounded) until it is there, then record what it waits in.
          const wchan = () => readFileSync(`/proc/${pid}/wchan`, "utf8");
          await waitFor(() => /pipe_read$/.test(wchan()), 5000);
          seen.push(`${id} ${wchan()}`);
        },
      },
    );
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatch(/^2 (anon_)?pipe_read$/);
    expect(exit).toEqual({ code: 3, signal: null });
  });

  test("a sync point the host never answers (its end closes) fails the tape (control: answered, it goes on)", async () => {
    const [reportRead, reportWrite] = pipe(true);
    const [syncRead, syncWrite] = pipe(true);
    const t = new Tape();
    t.reportFd = reportWrite;
    t.stage("namespaces", "test");
    keepOnlyFds(t, [reportWrite, syncRead]);
    syncWithHost(t, reportWrite, syncRead, 1, "wait for the host");
    exitGroup(t, 0);
    // No syncWrite given to launch: nothing answers; closing our end tells the process we are gone.
    const r = await launch(t, { report: [reportRead, reportWrite], sync: { [SYNC.ID_MAPS]: () => void libc.close(syncWrite) } });
    libc.close(syncRead);
    expect(r.reports.map((x) => x.kind)).toEqual([REPORT.SYNC, REPORT.FAILED]);
    expect(r.reports[1].value).toBe(ERRNO.EPIPE);
    expect(await waitExit(r.pidfd)).toEqual({ code: 125, signal: null });
  });

  test("an fd opened in the process reaches the host over a Unix socket (SCM_RIGHTS)", async () => {
    const [mine, theirs] = socketPair();
    const { exit } = await run(
      (t) => {
        const fd = t.reg("fd");
        openat(t, F.AT_FDCWD, "/proc/self/status", F.O_RDONLY, 0, { dst: fd });
        sendFd(t, theirs, fd);
        exitGroup(t, 0);
      },
      { keep: [theirs] },
    );
    libc.close(theirs);
    expect(exit).toEqual({ code: 0, signal: null });
    const got = receiveFd(mine);
    libc.close(mine);
    expect(got).not.toBeNull();
    // The child's /proc/self/status, opened by the child: our new fd names the child's file.
    expect(readlinkSync(`/proc/self/fd/${got}`)).toMatch(/^\/proc\/\d+\/status$/);
    expect(readlinkSync(`/proc/self/fd/${got}`)).not.toBe(`/proc/${process.pid}/status`);
    libc.close(got as number);
  });

  const root = process.getuid?.() === 0;
  test.skipIf(!root)(`setns(2) joins the namespace of an fd the host opened${root ? "" : " (skipped: needs root to enter another UTS namespace)"}`, async () => {
    const other = Bun.spawn(["unshare", "--uts", "sleep", "30"]);
    try {
      const target = `/proc/${other.pid}/ns/uts`;
      // unshare(1) execs sleep once the namespace exists: wait for the link to differ from ours.
      for (let i = 0; i < 1000 && readlinkSync(target) === readlinkSync("/proc/self/ns/uts"); i++) await Bun.sleep(1);
      const nsfd = Number(libc.openat(F.AT_FDCWD, Buffer.from(`${target}\0`), F.O_RDONLY | F.O_CLOEXEC, 0));
      expect(nsfd).toBeGreaterThan(0);
      const seen: string[] = [];
      const { exit } = await run(
        (t, report, { sync }) => {
          setns(t, nsfd, F.CLONE_NEWUTS);
          syncWithHost(t, report, sync, 1, "let the host look");
          exitGroup(t, 0);
        },
        { onSync: (_id, pid) => void seen.push(readlinkSync(`/proc/${pid}/ns/uts`)), keep: [nsfd] },
      );
      libc.close(nsfd);
      expect(exit).toEqual({ code: 0, signal: null });
      expect(seen).toEqual([readlinkSync(target)]);
      expect(seen[0]).not.toBe(readlinkSync("/proc/self/ns/uts")); // control: not simply ours
    } finally {
      other.kill();
    }
  });
});
