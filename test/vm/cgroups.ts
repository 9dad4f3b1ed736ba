// A systemd-like cgroup v2 layout for the VM tests, made by hand (the guest runs no systemd):
//   system.slice/NAME.scope                  what `systemd-run --scope` gives root: a cgroup of its own
//   user.slice/user-UID.slice/user@UID.service   an ordinary user's delegated cgroup (Delegate=yes)
//   user.slice/user-UID.slice/session-N.scope    a login session: the user is in it but cannot write it
// and how to start a process inside one of them, as systemd places a unit's process before it
// runs the unit's command.
import { chownSync, existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export const CGROUP_ROOT = "/sys/fs/cgroup";
export const ALL_CONTROLLERS = ["cpu", "io", "memory", "pids"];

/**
 * Make the cgroup `path` (relative to the root, parents too), and enable `controllers` in the
 * subtree_control of every cgroup above it, so that it offers them. The cgroups above hold no
 * processes: cgroup v2 lets only such cgroups hand controllers down.
 */
export function makeCgroup(path: string, controllers = ALL_CONTROLLERS): string {
  let dir = CGROUP_ROOT;
  for (const part of path.split("/")) {
    writeFileSync(join(dir, "cgroup.subtree_control"), controllers.map((c) => `+${c}`).join(" "));
    dir = join(dir, part);
    if (!existsSync(dir)) mkdirSync(dir);
  }
  return dir;
}

/**
 * What systemd's Delegate=yes does to a unit's cgroup: the folder and the three files a delegate
 * needs to manage its subtree belong to the user (see the kernel's cgroup-v2.rst, "Delegation").
 */
export function delegate(dir: string, uid: number, gid: number): void {
  chownSync(dir, uid, gid);
  for (const f of ["cgroup.procs", "cgroup.subtree_control", "cgroup.threads"]) chownSync(join(dir, f), uid, gid);
}

/** argv that moves itself into the cgroup (as root), then execs `argv` there. */
export function inCgroup(dir: string, argv: string[]): string[] {
  return ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', dir, ...argv];
}

/** The cgroups directly below `dir`: after a box, the ones nsrun made and did not remove. */
export function childCgroups(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory())
    .map((e) => e.name);
}

export function members(dir: string): number[] {
  return readFileSync(join(dir, "cgroup.procs"), "utf8").split("\n").filter(Boolean).map(Number);
}

/** A process's cgroup folder, from the `0::` line of /proc/PID/cgroup (read from the root's cgroup namespace). */
export function cgroupOf(pid: number): string {
  const path = readFileSync(`/proc/${pid}/cgroup`, "utf8").match(/^0::(.*)$/m)?.[1];
  if (path === undefined) throw new Error(`/proc/${pid}/cgroup has no cgroup v2 line`);
  return join(CGROUP_ROOT, path);
}

/** Remove a cgroup made by a test and everything below it, killing what is left in it first. */
export function removeCgroupTree(dir: string): void {
  if (!existsSync(dir)) return;
  for (const child of childCgroups(dir)) removeCgroupTree(join(dir, child));
  if (members(dir).length) writeFileSync(join(dir, "cgroup.kill"), "1");
  for (let i = 0; i < 1000 && members(dir).length; i++) Bun.sleepSync(5); // cgroup.kill is asynchronous
  rmdirSync(dir);
}
