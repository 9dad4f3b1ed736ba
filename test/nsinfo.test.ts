// `nsrun ns PID`: the drawing from made-up data, the parent walk against a fake /proc, and real
// boxes of the compiled binary, one started by root and one by the ordinary user nsrun-test.
import { afterAll, describe, expect, test } from "bun:test";
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { runCommand } from "citty";
import nsCommand from "../cmd/ns";
import { StageError } from "../core/errors";
import { INITIAL_PID_NS, INITIAL_USER_NS, inspectNamespaces, type NamespaceInfo, type NsIO, parseIdMap, renderTree } from "../core/tools/nsinfo";
import { DIST, REPO, TEST_SUBORDINATE, TEST_USER, waitFor } from "./helpers";

const ROOT = process.getuid?.() === 0;
const OURS = {
  user: INITIAL_USER_NS, pid: INITIAL_PID_NS, mnt: 4026531832, uts: 4026531838,
  ipc: 4026531839, net: 4026531833, cgroup: 4026531835, time: 4026531834,
};
type Kind = keyof typeof OURS;
const BOX: Record<Kind, number> = {
  user: 4026532841, pid: 4026532844, mnt: 4026532842, uts: 4026532845,
  ipc: 4026532846, net: 4026532847, cgroup: 4026532848, time: OURS.time,
};

/** A rootless box's PID 1 as a host at the top of both trees sees it. */
function handMade(): NamespaceInfo {
  const kinds = Object.keys(BOX) as Kind[];
  return {
    pid: 12345,
    command: "sleep 5",
    namespaces: kinds.map((kind) => ({
      kind,
      inode: BOX[kind],
      ours: OURS[kind],
      new: BOX[kind] !== OURS[kind],
      ownerUserns: kind === "user" ? null : kind === "time" ? OURS.user : BOX.user,
    })),
    user: {
      ownerUid: 1000,
      parents: [{ inode: OURS.user, ours: true, initial: true, ownerUid: 0 }],
      end: "initial",
      uidMap: parseIdMap("         0       1000          1\n"),
      gidMap: [{ inside: 0, outside: 1000, count: 1 }],
    },
    pidNs: { nspid: [12345, 1], parents: [{ inode: OURS.pid, ours: true, initial: true, ownerUid: null }], end: "initial" },
  };
}

describe("renderTree", () => {
  test("draws a rootless box as a tree, one line per kind, maps under user", () => {
    expect(renderTree(handMade())).toBe(
      [
        "pid 12345 (sleep 5)",
        "├─ user   4026532841  new     owner uid 1000, parent 4026531837 (nsrun's, initial)",
        "│         uid_map: 0 1000 1   gid_map: 0 1000 1",
        "├─ pid    4026532844  new     NSpid: 12345 1   parent 4026531836 (nsrun's, initial)",
        "├─ mnt    4026532842  new",
        "├─ uts    4026532845  new",
        "├─ ipc    4026532846  new",
        "├─ net    4026532847  new",
        "├─ cgroup 4026532848  new",
        "└─ time   4026531834  shared  owned by user 4026531837 (nsrun's)",
        "",
      ].join("\n"),
    );
  });

  test("a longer chain that leaves nsrun's view says so, and a shared initial namespace says initial", () => {
    const info = handMade();
    const middle = { inode: 4026532900, ours: false, initial: false, ownerUid: 0 };
    info.user = { ...info.user, parents: [middle, { inode: 4026532800, ours: true, initial: false, ownerUid: 0 }], end: "outside-scope" };
    info.pidNs = { ...info.pidNs, parents: [], end: "initial" };
    const out = renderTree(info);
    expect(out).toContain("owner uid 1000, parents 4026532900 → 4026532800 (nsrun's) → outside nsrun's view\n");
    expect(out).toContain("NSpid: 12345 1   initial\n");
  });
});

/** A made-up /proc: a chain box(user) → middle → ours, where asking above ours is refused. */
function fakeProc(opts: { status?: boolean; zombie?: boolean; openError?: string; selfUser?: number } = {}) {
  const parentOf: Record<number, number> = { 7001: 7002, 7101: OURS.pid };
  if (!opts.selfUser) parentOf[7002] = OURS.user;
  const open = new Map<number, number>(); // fd -> inode
  let nextFd = 100;
  const fail = (code: string) => Object.assign(new Error(code), { code });
  const newFd = (inode: number) => (open.set(nextFd, inode), nextFd++);
  const io: NsIO = {
    readText(path) {
      if (opts.status === false) throw fail("ENOENT");
      if (path.endsWith("/status")) return `Name:\tsleep\nState:\t${opts.zombie ? "Z (zombie)" : "S (sleeping)"}\nNSpid:\t55\t1\n`;
      if (path.endsWith("/cmdline")) return "";
      return "0 4242 1\n";
    },
    open(path) {
      const kind = path.split("/").pop() as Kind;
      if (path.includes("/self/")) return newFd(kind === "user" && opts.selfUser ? opts.selfUser : OURS[kind]);
      if (opts.openError) throw fail(opts.openError);
      return newFd(kind === "user" ? 7001 : kind === "pid" ? 7101 : OURS[kind] + 1);
    },
    inode: (fd) => open.get(fd) ?? Number.NaN,
    parent(fd) {
      const p = parentOf[open.get(fd) ?? 0];
      if (p === undefined) throw fail("EPERM");
      return newFd(p);
    },
    ownerUserns: () => newFd(7001),
    ownerUid: (fd) => (open.get(fd) === 7001 ? 4242 : 0),
    close: (fd) => void open.delete(fd),
  };
  return { io, open };
}

describe("inspectNamespaces against a fake /proc", () => {
  test("walks NS_GET_PARENT to EPERM, marks ours, and closes every fd it opened", () => {
    const { io, open } = fakeProc();
    const info = inspectNamespaces(55, "/fake", io);
    expect(info.command).toBe("[sleep]");
    expect(info.user.parents.map((l) => l.inode)).toEqual([7002, OURS.user]);
    expect(info.user.parents.map((l) => l.ours)).toEqual([false, true]);
    expect(info.user.end).toBe("initial");
    expect(info.user.ownerUid).toBe(4242);
    expect(info.pidNs).toEqual({ nspid: [55, 1], parents: [{ inode: OURS.pid, ours: true, initial: true, ownerUid: null }], end: "initial" });
    expect(info.namespaces.filter((n) => n.new).map((n) => n.kind)).toEqual(["user", "pid", "mnt", "uts", "ipc", "net", "cgroup", "time"]);
    expect(open.size).toBe(0);
    // nsrun itself in user namespace 7002: the kernel refuses its parent, and that is not the initial one.
    const nested = fakeProc({ selfUser: 7002 });
    const inner = inspectNamespaces(55, "/fake", nested.io).user;
    expect(inner.parents).toEqual([{ inode: 7002, ours: true, initial: false, ownerUid: 0 }]);
    expect(inner.end).toBe("outside-scope");
    expect(nested.open.size).toBe(0);
  });

  test("a missing process and a refused open become one clear error each", () => {
    expect(() => inspectNamespaces(55, "/fake", fakeProc({ status: false }).io)).toThrow("no process 55");
    expect(() => inspectNamespaces(55, "/fake", fakeProc({ zombie: true }).io)).toThrow("process 55 has exited (a zombie)");
    const denied = fakeProc({ openError: "EACCES" });
    let err: StageError | undefined;
    try {
      inspectNamespaces(55, "/fake", denied.io);
    } catch (e) {
      err = e as StageError;
    }
    expect(err?.message).toBe("cannot open /fake/55/ns/user: EACCES (Permission denied)");
    expect(err?.hint).toContain("same user as the process, or as root");
    expect(denied.open.size).toBe(0);
  });
});

// ---- real boxes -------------------------------------------------------------------------------

const started: Array<ReturnType<typeof Bun.spawn>> = [];
afterAll(async () => {
  for (const p of started) p.kill("SIGKILL");
  await Promise.all(started.map((p) => p.exited));
});

const status = (pid: number | string) => readFileSync(`/proc/${pid}/status`, "utf8");
const nspidOf = (text: string) => (/^NSpid:\s*(.*)$/m.exec(text)?.[1] ?? "").split(/\s+/).filter(Boolean).map(Number);
const nsrunTest = () => Number(Bun.spawnSync(["id", "-u", TEST_USER]).stdout.toString().trim());

/** Starts `sleep 30` in a box (as nsrun-test with `asUser`) and returns its PID 1 as the host numbers it. */
async function startBox(asUser: boolean): Promise<number> {
  const argv = [DIST, "run", "--config", `${REPO}/fixtures/configs/minimal.toml`, "--", "sleep", "30"];
  const drop = ["setpriv", `--reuid=${TEST_USER}`, `--regid=${TEST_USER}`, "--clear-groups"];
  const proc = Bun.spawn(asUser ? [...drop, ...argv] : argv, { cwd: "/tmp", stdin: "ignore", stdout: "ignore", stderr: "inherit" });
  started.push(proc);
  let pid1 = 0;
  const found = await waitFor(() => {
    for (const name of readdirSync("/proc").filter((n) => /^\d+$/.test(n))) {
      try {
        const s = status(name);
        if (!new RegExp(`^PPid:\\s*${proc.pid}$`, "m").test(s) || !/^Name:\s*sleep$/m.test(s) || nspidOf(s).length !== 2) continue;
        pid1 = Number(name);
        return true;
      } catch {
        // gone while we looked
      }
    }
    return false;
  }, 10_000);
  expect(found).toBe(true);
  return pid1;
}

const linkInode = (pid: number | string, kind: string) => Number(/\[(\d+)\]/.exec(readlinkSync(`/proc/${pid}/ns/${kind}`))?.[1]);
const byKind = (info: NamespaceInfo) => Object.fromEntries(info.namespaces.map((n) => [n.kind, n]));

describe("inspectNamespaces on real processes", () => {
  test("nsrun's own process shares every namespace with itself (control for `new`)", () => {
    const info = inspectNamespaces(process.pid);
    expect(info.namespaces.map((n) => n.new)).toEqual(Array(8).fill(false));
    expect(info.pidNs.nspid.at(-1)).toBe(process.pid);
  });

  test.skipIf(!ROOT)("a box started by root: everything new but user and time; pid parent is ours", async () => {
    const pid = await startBox(false);
    const info = inspectNamespaces(pid);
    const ns = byKind(info);
    expect(info.namespaces.filter((n) => n.new).map((n) => n.kind)).toEqual(["pid", "mnt", "uts", "ipc", "net", "cgroup"]);
    for (const kind of ["user", "pid", "mnt", "uts", "ipc", "net", "cgroup", "time"]) {
      expect(ns[kind].inode).toBe(linkInode(pid, kind));
      expect(ns[kind].ours).toBe(linkInode("self", kind));
    }
    expect(info.pidNs.nspid).toEqual([pid, 1]);
    expect(info.pidNs.parents.map((l) => l.inode)).toEqual([linkInode("self", "pid")]);
    expect(info.pidNs.parents[0].ours).toBe(true);
    expect(info.user.ownerUid).toBe(0);
    expect(renderTree(info)).toContain(`├─ pid    ${ns.pid.inode}  new     NSpid: ${pid} 1   parent ${linkInode("self", "pid")} (nsrun's`);
  });

  test.skipIf(!ROOT)("a box started by nsrun-test: a new user namespace owned by its uid, mapped 0 <uid> 1 and 1.. its subordinate ids", async () => {
    const uid = nsrunTest();
    const pid = await startBox(true);
    const info = inspectNamespaces(pid);
    expect(info.namespaces.filter((n) => !n.new).map((n) => n.kind)).toEqual(["time"]);
    expect(info.user.ownerUid).toBe(uid);
    expect(info.user.uidMap).toEqual([
      { inside: 0, outside: uid, count: 1 },
      { inside: 1, outside: TEST_SUBORDINATE.start, count: TEST_SUBORDINATE.count },
    ]);
    expect(info.user.parents.map((l) => l.inode)).toEqual([linkInode("self", "user")]);
    expect(info.pidNs.nspid.length).toBe(2);
    expect(info.pidNs.nspid.at(-1)).toBe(1);
    const userNs = byKind(info).user.inode;
    expect(info.namespaces.filter((n) => n.ownerUserns === userNs).map((n) => n.kind)).toEqual(["pid", "mnt", "uts", "ipc", "net", "cgroup"]);
    expect(renderTree(info)).toContain(`│         uid_map: 0 ${uid} 1, 1 ${TEST_SUBORDINATE.start} ${TEST_SUBORDINATE.count}   gid_map: 0 `);
  });

  test.skipIf(!ROOT)("nsrun-test may not look into root's processes: EACCES with a hint", () => {
    const script = `import { inspectNamespaces } from "${REPO}/core/tools/nsinfo.ts";
      try { inspectNamespaces(1) } catch (e) { console.log(JSON.stringify([e.message, e.hint])) }`;
    const argv = ["setpriv", `--reuid=${TEST_USER}`, `--regid=${TEST_USER}`, "--clear-groups", process.execPath, "-e", script];
    const r = Bun.spawnSync(argv, { cwd: "/tmp", env: { PATH: "/usr/bin:/bin", HOME: "/tmp" } });
    const [message, hint] = JSON.parse(r.stdout.toString());
    expect(message).toBe("cannot open /proc/1/ns/user: EACCES (Permission denied)");
    expect(hint).toContain("as root");
  });

  test("a PID that does not exist: `ns: no process N`, exit status 125", async () => {
    const missing = Number(readFileSync("/proc/sys/kernel/pid_max", "utf8")) + 1;
    expect(() => inspectNamespaces(missing)).toThrow(`no process ${missing}`);
    const err = await runCommand(nsCommand, { rawArgs: [String(missing)] }).catch((e) => e);
    expect(err).toBeInstanceOf(StageError);
    expect(err.message).toBe(`ns: no process ${missing}`);
    expect(err.exitCode).toBe(125);
  });
});
