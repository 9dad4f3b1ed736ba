// The runtime stages against a recording fake of Sys: the exact syscalls, in order, and how
// failures surface. No privileges, no real mounts.
import { describe, expect, test } from "bun:test";
import * as F from "../ffi/flags";
import { SyscallError } from "../ffi/libc";
import { StageError } from "../core/errors";
import { applyMounts, type MountEnv, type MountOp } from "../core/mounts";
import { applyPivot } from "../core/pivot";
import { dropPrivileges, enterCwd, execCommand, type ProcessPlan } from "../core/process";
import { applyPrivateRoot, applyRootfs, type RootfsPlan } from "../core/rootfs";
import { type Call, ExecReplaced, FakeSys } from "./fake-sys";

const EPERM = 1;
const ENOENT = 2;
const EACCES = 13;
const EINVAL = 22;
const ENOEXEC = 8;

/** The error fn throws (fails the test when it does not throw). */
function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  throw new Error("expected an error, but nothing was thrown");
}

function stageError(fn: () => unknown): StageError {
  const e = thrown(fn);
  if (!(e instanceof StageError)) throw new Error(`expected a StageError, got ${String(e)}`);
  return e;
}

describe("FakeSys", () => {
  test("records typed calls, counts fds from 100, fails only the chosen call", () => {
    const sys = new FakeSys().failOn("mkdirat", 2, EACCES);
    expect(sys.openat2(3, "/a", F.O_PATH, 0)).toBe(100);
    expect(sys.openat(3, "b", F.O_CREAT, 0o644)).toBe(101);
    sys.mkdirat(3, "x", 0o755);
    const e = thrown(() => sys.mkdirat(3, "y", 0o755)) as SyscallError;
    expect(e).toBeInstanceOf(SyscallError);
    expect([e.syscall, e.errnoName]).toEqual(["mkdirat", "EACCES"]);
    expect(e.hint).toContain("may not write there");
    sys.mkdirat(3, "z", 0o755);
    expect(sys.calls.map((c) => c.name)).toEqual(["openat2", "openat", "mkdirat", "mkdirat", "mkdirat"]);
    expect(sys.calls[1]).toEqual({ name: "openat", args: [3, "b", F.O_CREAT, 0o644] });
  });
});

describe("applyRootfs", () => {
  const plan = (over: Partial<RootfsPlan> = {}): RootfsPlan => ({ hostPath: "/r", readonly: false, ephemeral: false, ...over });
  const run = (p: RootfsPlan, sys = new FakeSys()) => {
    applyPrivateRoot(sys);
    applyRootfs(sys, p);
    return sys;
  };
  const scratch: Call[] = [
    { name: "mount", args: [null, "/", null, F.MS_REC | F.MS_PRIVATE, null] },
    { name: "mount", args: ["nsrun", "/tmp", "tmpfs", F.MS_NOSUID | F.MS_NODEV, "mode=0700"] },
    { name: "mkdirat", args: [F.AT_FDCWD, "/tmp/oldroot", 0o700] },
    { name: "mkdirat", args: [F.AT_FDCWD, "/tmp/newroot", 0o700] },
    { name: "pivotRoot", args: ["/tmp", "/tmp/oldroot"] },
    { name: "chdir", args: ["/"] },
  ];

  test("a plain rootfs: private /, scratch tmpfs, pivot into it, then bind the rootfs on /newroot", () => {
    expect(run(plan()).calls).toEqual([...scratch, { name: "mount", args: ["/oldroot/r", "/newroot", null, F.MS_BIND | F.MS_REC, null] }]);
  });

  test('a rootfs of "/" binds /oldroot itself', () => {
    expect(run(plan({ hostPath: "/" })).calls.at(-1)).toEqual({ name: "mount", args: ["/oldroot", "/newroot", null, F.MS_BIND | F.MS_REC, null] });
  });

  test("ephemeral mounts an overlay with upper and work dirs in the scratch tmpfs", () => {
    const sys = run(plan({ ephemeral: true }));
    expect(sys.calls.slice(scratch.length)).toEqual([
      { name: "mkdirat", args: [F.AT_FDCWD, "/upper", 0o755] },
      { name: "mkdirat", args: [F.AT_FDCWD, "/work", 0o700] },
      { name: "mount", args: ["overlay", "/newroot", "overlay", 0, "lowerdir=/oldroot/r,upperdir=/upper,workdir=/work"] },
    ]);
  });

  test("ephemeral retries with userxattr when the first overlay mount fails", () => {
    const sys = run(plan({ ephemeral: true }), new FakeSys().failOn("mount", 3, EPERM));
    expect(sys.only("mount").slice(2)).toEqual([
      ["overlay", "/newroot", "overlay", 0, "lowerdir=/oldroot/r,upperdir=/upper,workdir=/work"],
      ["overlay", "/newroot", "overlay", 0, "lowerdir=/oldroot/r,upperdir=/upper,workdir=/work,userxattr"],
    ]);
  });

  test("readonly makes the rootfs mount read-only, recursively, right after mounting it", () => {
    const calls = run(plan({ readonly: true })).calls;
    expect(calls.at(-2)).toEqual({ name: "mount", args: ["/oldroot/r", "/newroot", null, F.MS_BIND | F.MS_REC, null] });
    expect(calls.at(-1)).toEqual({ name: "mountSetattr", args: [F.AT_FDCWD, "/newroot", F.AT_RECURSIVE, F.MOUNT_ATTR_RDONLY] });
    expect(run(plan()).only("mountSetattr")).toEqual([]);
  });

  test("a failing pivot_root is a rootfs StageError with the errno and the mount-point hint", () => {
    const sys = new FakeSys().failOn("pivotRoot", 1, EINVAL);
    const e = stageError(() => applyPrivateRoot(sys));
    expect(e.stage).toBe("rootfs");
    expect(e.message).toContain("EINVAL");
    expect(e.hint).toContain("mount point");
    expect(sys.calls.at(-1)?.name).toBe("pivotRoot");
  });
});

describe("applyMounts", () => {
  const env: MountEnv = { hostRoot: "/oldroot", fdPath: (fd) => `/fd/${fd}` };
  const RESOLVE = F.RESOLVE_IN_ROOT | F.RESOLVE_NO_MAGICLINKS;
  const run = (ops: MountOp[], sys = new FakeSys()) => {
    applyMounts(sys, 50, ops, env);
    return sys;
  };
  const tmpfs: MountOp = { op: "mount", fstype: "tmpfs", source: "tmpfs", target: "/tmp", flags: F.MS_NOSUID, data: "mode=1777", origin: "mounts[0]" };
  const proc: MountOp = { op: "mount", fstype: "proc", source: "proc", target: "/proc", flags: F.MS_NOSUID, data: null, fallbackBind: "/proc", origin: "mounts[0]" };

  test("a filesystem is mounted on the fd of its target, resolved inside the root", () => {
    expect(run([tmpfs]).calls).toEqual([
      { name: "openat2", args: [50, "/tmp", F.O_PATH, RESOLVE] },
      { name: "mount", args: ["tmpfs", "/fd/100", "tmpfs", F.MS_NOSUID, "mode=1777"] },
      { name: "close", args: [100] },
    ]);
  });

  test("a bind mounts the host path under hostRoot, then sets attributes on the new mount", () => {
    const bind: MountOp = { op: "bind", source: "/data", target: "/mnt", recursive: true, attrs: F.MOUNT_ATTR_RDONLY | F.MOUNT_ATTR_NOEXEC, file: false, origin: "mounts[0]" };
    expect(run([bind]).calls).toEqual([
      { name: "openat2", args: [50, "/mnt", F.O_PATH, RESOLVE] },
      { name: "mount", args: ["/oldroot/data", "/fd/100", null, F.MS_BIND | F.MS_REC, null] },
      { name: "close", args: [100] },
      { name: "openat2", args: [50, "/mnt", F.O_PATH, RESOLVE] },
      { name: "mountSetattr", args: [101, "", F.AT_EMPTY_PATH | F.AT_RECURSIVE, F.MOUNT_ATTR_RDONLY | F.MOUNT_ATTR_NOEXEC] },
      { name: "close", args: [101] },
    ]);
  });

  test("a non-recursive bind without attributes: plain MS_BIND, no mount_setattr", () => {
    const sys = run([{ op: "bind", source: "/data", target: "/mnt", recursive: false, attrs: 0, file: false, origin: "mounts[0]" }]);
    expect(sys.only("mount")).toEqual([["/oldroot/data", "/fd/100", null, F.MS_BIND, null]]);
    expect(sys.only("mountSetattr")).toEqual([]);
  });

  test("EPERM on a mount with fallbackBind becomes a read-only recursive bind of the host's", () => {
    const sys = run([proc], new FakeSys().failOn("mount", 1, EPERM));
    expect(sys.calls).toEqual([
      { name: "openat2", args: [50, "/proc", F.O_PATH, RESOLVE] },
      { name: "mount", args: ["proc", "/fd/100", "proc", F.MS_NOSUID, null] },
      { name: "openat2", args: [50, "/proc", F.O_PATH, RESOLVE] },
      { name: "mount", args: ["/oldroot/proc", "/fd/101", null, F.MS_BIND | F.MS_REC, null] },
      { name: "close", args: [101] },
      { name: "openat2", args: [50, "/proc", F.O_PATH, RESOLVE] },
      { name: "mountSetattr", args: [102, "", F.AT_EMPTY_PATH | F.AT_RECURSIVE, F.MOUNT_ATTR_RDONLY | F.MOUNT_ATTR_NOSUID | F.MOUNT_ATTR_NODEV | F.MOUNT_ATTR_NOEXEC] },
      { name: "close", args: [102] },
      { name: "close", args: [100] },
    ]);
  });

  test("any other errno is not retried: a mounts StageError naming the op's origin", () => {
    const sys = new FakeSys().failOn("mount", 1, EINVAL);
    const e = stageError(() => run([proc], sys));
    expect(e.stage).toBe("mounts");
    expect(e.message).toContain("mounts[0]");
    expect(e.message).toContain("EINVAL");
    expect(sys.only("mount")).toHaveLength(1);
    expect(sys.only("close")).toEqual([[100]]);
  });

  test("EPERM without fallbackBind is an error too", () => {
    const sys = new FakeSys().failOn("mount", 1, EPERM);
    expect(stageError(() => run([tmpfs], sys)).hint).toContain("CAP_SYS_ADMIN");
    expect(sys.only("mount")).toHaveLength(1);
  });

  test("a missing target directory is created component by component", () => {
    const sys = run([{ ...tmpfs, target: "/a/b" }], new FakeSys().failOn("openat2", 1, ENOENT));
    expect(sys.calls).toEqual([
      { name: "openat2", args: [50, "/a/b", F.O_PATH, RESOLVE] },
      { name: "openat2", args: [50, "/", F.O_PATH | F.O_DIRECTORY, RESOLVE] },
      { name: "mkdirat", args: [100, "a", 0o755] },
      { name: "openat2", args: [50, "/a", F.O_PATH | F.O_DIRECTORY, RESOLVE] },
      { name: "close", args: [100] },
      { name: "mkdirat", args: [101, "b", 0o755] },
      { name: "openat2", args: [50, "/a/b", F.O_PATH, RESOLVE] },
      { name: "close", args: [101] },
      { name: "mount", args: ["tmpfs", "/fd/102", "tmpfs", F.MS_NOSUID, "mode=1777"] },
      { name: "close", args: [102] },
    ]);
  });

  test("a missing target of a file bind is created as an empty file, never through a symlink", () => {
    const bind: MountOp = { op: "bind", source: "/dev/null", target: "/dev/null", recursive: false, attrs: 0, file: true, origin: "default /dev" };
    const sys = run([bind], new FakeSys().failOn("openat2", 1, ENOENT));
    expect(sys.only("mkdirat")).toEqual([[100, "dev", 0o755]]);
    expect(sys.only("openat")).toEqual([[101, "null", F.O_WRONLY | F.O_CREAT | F.O_EXCL | F.O_NOFOLLOW | F.O_NOCTTY, 0o644]]);
    expect(sys.only("openat2").at(-1)).toEqual([50, "/dev/null", F.O_PATH, RESOLVE]);
    expect(sys.only("mount")).toEqual([["/oldroot/dev/null", "/fd/103", null, F.MS_BIND, null]]);
  });
});

describe("applyPivot", () => {
  test("pivot_root(., .) inside /newroot, then detach the old root", () => {
    const sys = new FakeSys();
    applyPivot(sys);
    expect(sys.calls).toEqual([
      { name: "chdir", args: ["/newroot"] },
      { name: "pivotRoot", args: [".", "."] },
      { name: "umount2", args: [".", F.MNT_DETACH] },
      { name: "chdir", args: ["/"] },
    ]);
  });
});

describe("process", () => {
  const plan = (over: Partial<ProcessPlan> = {}): ProcessPlan => ({
    args: ["ls", "-l"],
    cwd: "/work",
    cwdFallback: false,
    env: ["PATH=/a:/b"],
    uid: 7,
    gid: 5,
    setgroups: true,
    init: false,
    ...over,
  });

  test("dropPrivileges clears groups only when allowed, and sets the gid before the uid", () => {
    const sys = new FakeSys();
    dropPrivileges(sys, plan());
    expect(sys.calls).toEqual([
      { name: "setgroups", args: [[]] },
      { name: "setresgid", args: [5] },
      { name: "setresuid", args: [7] },
    ]);
    const userns = new FakeSys();
    dropPrivileges(userns, plan({ setgroups: false }));
    expect(userns.calls.map((c) => c.name)).toEqual(["setresgid", "setresuid"]);
  });

  test("execCommand tries each PATH candidate until one runs", () => {
    const sys = new FakeSys().failOn("execve", 1, ENOENT);
    expect(thrown(() => execCommand(sys, plan()))).toBeInstanceOf(ExecReplaced);
    expect(sys.only("execve")).toEqual([
      ["/a/ls", ["ls", "-l"], ["PATH=/a:/b"]],
      ["/b/ls", ["ls", "-l"], ["PATH=/a:/b"]],
    ]);
  });

  test("not found anywhere exits 127; permission denied exits 126", () => {
    const missing = stageError(() => execCommand(new FakeSys().failOn("execve", "every", ENOENT), plan()));
    expect(missing.exitCode).toBe(127);
    expect(missing.message).toContain("not found");
    const denied = new FakeSys().failOn("execve", 1, EACCES).failOn("execve", 2, ENOENT);
    expect(stageError(() => execCommand(denied, plan())).exitCode).toBe(126);
    expect(denied.only("execve")).toHaveLength(2);
  });

  test("another exec error stops the search and exits 126", () => {
    const sys = new FakeSys().failOn("execve", 1, ENOEXEC);
    expect(stageError(() => execCommand(sys, plan())).exitCode).toBe(126);
    expect(sys.only("execve")).toHaveLength(1);
  });

  test("enterCwd falls back to / only with cwdFallback and ENOENT", () => {
    const sys = new FakeSys().failOn("chdir", 1, ENOENT);
    enterCwd(sys, plan({ cwdFallback: true }));
    expect(sys.calls.map((c) => c.name)).toEqual(["chdir", "chdir", "getcwd"]);
    expect(sys.only("chdir")).toEqual([["/work"], ["/"]]);

    const strict = stageError(() => enterCwd(new FakeSys().failOn("chdir", 1, ENOENT), plan()));
    expect(strict.stage).toBe("process");
    expect(strict.message).toContain("ENOENT");
    const denied = new FakeSys().failOn("chdir", 1, EACCES);
    expect(stageError(() => enterCwd(denied, plan({ cwdFallback: true }))).message).toContain("EACCES");
    expect(denied.only("chdir")).toHaveLength(1);
  });

  test("enterCwd refuses a working directory outside the root (getcwd without a leading /)", () => {
    const sys = new FakeSys();
    sys.cwd = "(unreachable)/home";
    const e = stageError(() => enterCwd(sys, plan()));
    expect(e.stage).toBe("process");
    expect(e.message).toContain("outside the box");
    const ok = new FakeSys();
    ok.cwd = "/work";
    expect(() => enterCwd(ok, plan())).not.toThrow();
  });
});
