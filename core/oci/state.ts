// A container's state lives in ROOT/ID/ (runc's layout): state.json (what `state` prints, plus what
// later commands need), config.json (the spec as created), exec.fifo (present until `start`), and
// report.fifo (where the container's stub reports a command that could not start). No nsrun process
// stays behind: every command reads this folder, under an flock(2) on it, so commands on one ID
// take turns. The status is computed, never stored: a PID whose start time still matches is alive.
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, fstatSync, writeFileSync, constants } from "node:fs";
import { join } from "node:path";
import { flock, LOCK_EX } from "../../ffi/fs";
import type { CgroupPlan } from "../stages/cgroup";
import { EXIT_NSRUN_FAILED } from "../errors";
import { privateFiles, privateFolder } from "./private";
import type { SpecHook } from "./spec";
import { NsrunError } from "../../ffi/error";

export const OCI_VERSION = "1.0.2";

export type Status = "creating" | "created" | "running" | "paused" | "stopped";

export interface SavedState {
  ociVersion: string;
  id: string;
  /** The container's first process, in nsrun's PID namespace; 0 while creating. */
  pid: number;
  bundle: string;
  rootfs: string;
  created: string;
  owner: string;
  annotations: Record<string, string>;
  /** /proc/PID/stat field 22: tells the container's process from a later one with the same PID. */
  startTime: string;
  cgroup: CgroupPlan | null;
  hooks: { poststart: SpecHook[]; poststop: SpecHook[] };
  /** The container's namespaces (kinds), joined by `exec`. */
  namespaces: string[];
}

/** The JSON `nsrun state` prints (runtime-spec's state, with runc's extra fields). */
export function publicState(s: SavedState, status: Status) {
  return {
    ociVersion: s.ociVersion,
    id: s.id,
    pid: status === "stopped" ? 0 : s.pid,
    status,
    bundle: s.bundle,
    rootfs: s.rootfs,
    created: s.created,
    owner: s.owner,
    annotations: s.annotations,
  };
}

/** A container that is not there or is busy (exit 1, as runc); a state folder nsrun refuses to use (exit 125). */
export class StateError extends NsrunError {
  constructor(message: string, exitCode = 1) {
    super(message, { exitCode });
  }
}

/** runc's rule for IDs: no path separators, nothing a shell or a folder name would misread. */
export function checkId(id: string | undefined): string {
  if (!id) throw new StateError("a container ID is required");
  if (!/^[\w+.-]+$/.test(id) || id === "." || id === "..") throw new StateError(`invalid container ID ${JSON.stringify(id)}: use letters, digits, _ + - .`);
  return id;
}

/**
 * Whether nsrun runs as the host's root: uid 0 in the initial user namespace. uid 0 in a user
 * namespace of its own (rootless podman runs its runtime there) is an ordinary user to the host.
 */
export function isHostRoot(uid = process.getuid?.() ?? 0): boolean {
  if (uid !== 0) return false;
  const map = readFileSync("/proc/self/uid_map", "utf8").trim().split(/\s+/).map(Number);
  return map.length === 3 && map[0] === 0 && map[1] === 0 && map[2] === 4294967295;
}

/** runc's rule: /run/nsrun for the host's root; otherwise $XDG_RUNTIME_DIR/nsrun (rootless podman sets it). */
export function defaultRoot(hostRoot: boolean, env = process.env): string {
  if (hostRoot) return "/run/nsrun";
  if (env.XDG_RUNTIME_DIR) return join(env.XDG_RUNTIME_DIR, "nsrun");
  throw new StateError("no state folder: set XDG_RUNTIME_DIR or give --root DIR");
}

export class Container {
  constructor(
    readonly root: string,
    readonly id: string,
  ) {}
  get dir(): string {
    return join(this.root, this.id);
  }
  path(name: string): string {
    return join(this.dir, name);
  }
  exists(): boolean {
    return existsSync(this.path("state.json"));
  }
  read(): SavedState {
    keepPrivate(this);
    try {
      return JSON.parse(readFileSync(this.path("state.json"), "utf8")) as SavedState;
    } catch {
      throw new StateError(`container ${JSON.stringify(this.id)} does not exist`);
    }
  }
  /** Written whole and renamed into place: a reader never sees half a file. */
  write(s: SavedState): void {
    const tmp = this.path(".state.json.tmp");
    writeFileSync(tmp, JSON.stringify(s), { mode: 0o600 });
    renameSync(tmp, this.path("state.json"));
  }
  status(s: SavedState): Status {
    if (s.pid === 0) return "creating";
    if (!processAlive(s.pid, s.startTime)) return "stopped";
    return existsSync(this.path("exec.fifo")) ? "created" : "running";
  }
  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Every container in the root folder (an unreadable or half-made one is skipped). */
export function listContainers(root: string): Container[] {
  let names: string[] = [];
  try {
    names = readdirSync(root).sort();
  } catch {
    return [];
  }
  return names.filter((n) => existsSync(join(root, n, "state.json"))).map((n) => new Container(root, n));
}

/** The start time of PID (field 22 of /proc/PID/stat), or null when it is gone or a zombie. */
export function processStartTime(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (fields[0] === "Z" || fields[0] === "X") return null;
    return fields[19];
  } catch {
    return null;
  }
}

export function processAlive(pid: number, startTime: string): boolean {
  return pid > 0 && processStartTime(pid) === startTime;
}

/**
 * Serialise commands on one container: flock(2) on its folder, re-checked after waiting (a `delete`
 * may have removed the folder, and a `create` made a new one, meanwhile). Released on close/exit.
 */
export function lockContainer(c: Container): number {
  keepPrivate(c);
  for (;;) {
    let fd: number;
    try {
      fd = openSync(c.dir, constants.O_RDONLY | constants.O_DIRECTORY);
    } catch {
      throw new StateError(`container ${JSON.stringify(c.id)} does not exist`);
    }
    try {
      flock(fd, LOCK_EX, c.dir);
    } catch (e) {
      closeSync(fd);
      throw new StateError(`cannot lock ${c.dir}: ${(e as Error).message}`);
    }
    try {
      const now = statSync(c.dir);
      if (now.ino === fstatSync(fd).ino) return fd;
    } catch {
      // removed while we waited
    }
    closeSync(fd);
  }
}

/** The state folder and the container's folder are this user's own and private, its files too (core/oci/private.ts). */
function keepPrivate(c: Container): void {
  // A container that does not exist is reported as such by the caller, not as an unsafe folder.
  if (!existsSync(c.dir)) return;
  const unsafe = privateFolder(c.root, false) ?? privateFolder(c.dir, false);
  if (unsafe) throw new StateError(unsafe, EXIT_NSRUN_FAILED);
  privateFiles(c.dir, ["config.json", "state.json"]);
}

/** Make ROOT/ID for a new container and lock it; an existing ID is an error (runtime-spec: MUST). */
export function claimContainer(root: string, id: string): { container: Container; lock: number } {
  const unsafe = privateFolder(root, true);
  if (unsafe) throw new StateError(unsafe, EXIT_NSRUN_FAILED);
  const c = new Container(root, id);
  try {
    mkdirSync(c.dir, { mode: 0o700 });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EEXIST") throw new StateError(`container ${JSON.stringify(id)} already exists`);
    throw new StateError(`cannot make ${c.dir}: ${(e as NodeJS.ErrnoException).code}`);
  }
  return { container: c, lock: lockContainer(c) };
}
