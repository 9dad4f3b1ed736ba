// start, state, kill, delete, list, ps: each reads the container's folder (state.ts) and acts on
// its process by pidfd, so a PID that was reused by another process is never signalled.
import { closeSync, constants, existsSync, openSync, readdirSync, readFileSync, readlinkSync, unlinkSync, writeSync } from "node:fs";
import { decodeReport, REPORT, REPORT_BYTES } from "../../ffi/executor/protocol";
import { readAll } from "../../ffi/io";
import { clearNonblock } from "../../ffi/libc";
import { errnoName } from "../../ffi/errno";
import * as F from "../../ffi/flags";
import { removeCgroup } from "../stages/cgroup";
import { EXIT_CANNOT_EXECUTE, EXIT_NOT_FOUND } from "../errors";
import { isFrozen, thaw } from "./freeze";
import { runHooksWarning } from "./hooks";
import { describeHookReport } from "./emit";
import { Container, listContainers, lockContainer, processAlive, publicState, type SavedState, StateError, type Status } from "./state";
import { pidfdOpen, pidfdSignal, pidfdWait } from "../../ffi/proc";
import { OciError } from "./error";

/** A command's failure, with the exit status it should end with. */
export { OciError };

export function stateOf(root: string, id: string): { container: Container; saved: SavedState; status: Status } {
  const container = new Container(root, id);
  const saved = container.read();
  return { container, saved, status: withPaused(container.status(saved), saved) };
}

/** "running" is "paused" while the container's cgroup is frozen (core/oci/freeze.ts). */
function withPaused(status: Status, saved: SavedState): Status {
  return status === "running" && isFrozen(saved.cgroup) ? "paused" : status;
}

/** `start`: wake the process waiting on exec.fifo, then learn from report.fifo whether its command started. */
export async function startContainer(root: string, id: string, warn: (line: string) => void): Promise<void> {
  const c = new Container(root, id);
  const lock = lockContainer(c);
  try {
    const saved = c.read();
    const status = c.status(saved);
    if (status !== "created") throw new OciError(`cannot start container ${JSON.stringify(id)}: it is ${status}, not created`);
    const report = openSync(c.path("report.fifo"), constants.O_RDONLY | constants.O_NONBLOCK | F.O_CLOEXEC);
    let fifo: number;
    try {
      fifo = openSync(c.path("exec.fifo"), constants.O_WRONLY | constants.O_NONBLOCK | F.O_CLOEXEC);
    } catch (e) {
      closeSync(report);
      // ENXIO: nobody has it open for reading: the container's process is gone.
      throw new OciError(`cannot start container ${JSON.stringify(id)}: its process is no longer waiting (${(e as NodeJS.ErrnoException).code})`);
    }
    writeSync(fifo, "0");
    closeSync(fifo);
    unlinkSync(c.path("exec.fifo"));
    // End of file once the command has been exec'd (the fifo is close-on-exec there), or a record why not.
    clearNonblock(report);
    const bytes = readAll(report);
    closeSync(report);
    if (bytes.length >= REPORT_BYTES) {
      const r = decodeReport(bytes);
      if (r.kind === REPORT.HOOK) {
        const hooks = JSON.parse(readFileSync(c.path("config.json"), "utf8")).hooks ?? {};
        throw new OciError(describeHookReport(r, { createContainer: hooks.createContainer ?? [], startContainer: hooks.startContainer ?? [] }) ?? "a hook failed");
      }
      if (r.kind === REPORT.EXEC_FAILED) {
        const cmd = JSON.stringify(JSON.parse(readFileSync(c.path("config.json"), "utf8")).process.args[0]);
        if (r.value === 2) throw new OciError(`exec: ${cmd}: executable file not found in $PATH: no such file or directory`, EXIT_NOT_FOUND);
        if (r.value === 13) throw new OciError(`exec: ${cmd}: permission denied`, EXIT_CANNOT_EXECUTE);
        throw new OciError(`exec: ${cmd}: ${errnoName(r.value)}`, EXIT_CANNOT_EXECUTE);
      }
      throw new OciError(`start: the container's process failed before its command (report ${r.kind}, errno ${errnoName(r.value)})`);
    }
    await runHooksWarning("poststart", saved.hooks.poststart, publicState(saved, "running"), warn);
  } finally {
    closeSync(lock);
  }
}

/** Every process of the container: its cgroup's members, else those in its PID namespace, else its first process. */
export function containerPids(saved: SavedState): number[] {
  if (!processAlive(saved.pid, saved.startTime) && !saved.cgroup) return [];
  const dir = saved.cgroup?.boxDirs[0];
  if (dir && existsSync(`${dir}/cgroup.procs`)) {
    const pids = readFileSync(`${dir}/cgroup.procs`, "utf8").split("\n").filter(Boolean).map(Number);
    if (pids.length || !processAlive(saved.pid, saved.startTime)) return pids;
  }
  let ns: string;
  try {
    ns = readlinkSync(`/proc/${saved.pid}/ns/pid`);
  } catch {
    // A created container's process is the non-dumpable stub until `start` (core/launch/): an
    // ordinary user may not read its namespaces, and nothing else can be in the container yet.
    return processAlive(saved.pid, saved.startTime) ? [saved.pid] : [];
  }
  if (ns === readlinkSync("/proc/self/ns/pid")) return [saved.pid];
  const out: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (readlinkSync(`/proc/${name}/ns/pid`) === ns) out.push(Number(name));
    } catch {
      // gone, or not ours to look at
    }
  }
  return out.sort((a, b) => a - b);
}

/** Send `sig` through a pidfd (never to a PID reused since); false when the process was gone. */
function signal(pid: number, sig: number, startTime: string | null): boolean {
  const fd = pidfdOpen(pid);
  if (fd < 0) return false;
  try {
    if (startTime !== null && !processAlive(pid, startTime)) return false;
    const r = pidfdSignal(fd, sig);
    if (r < 0 && r !== -3 /* ESRCH */) throw new OciError(`kill: ${errnoName(-r)} sending signal ${sig} to ${pid}`);
    return r === 0;
  } finally {
    closeSync(fd);
  }
}

export function killContainer(root: string, id: string, sig: number, all: boolean): void {
  const c = new Container(root, id);
  const lock = lockContainer(c);
  try {
    const saved = c.read();
    const status = c.status(saved);
    if (status === "stopped" && !all) throw new OciError(`container ${JSON.stringify(id)} is not running`);
    if (!all) return void signal(saved.pid, sig, saved.startTime);
    for (const pid of containerPids(saved)) signal(pid, sig, pid === saved.pid ? saved.startTime : null);
  } finally {
    closeSync(lock);
  }
}

/** `delete`: only a stopped (or still created) container unless forced; then its cgroup, poststop hooks, folder. */
export async function deleteContainer(root: string, id: string, force: boolean, warn: (line: string) => void): Promise<void> {
  const c = new Container(root, id);
  if (!existsSync(c.dir)) {
    if (force) return;
    throw new OciError(`container ${JSON.stringify(id)} does not exist`);
  }
  const lock = lockContainer(c);
  try {
    let saved: SavedState;
    try {
      saved = c.read();
    } catch (e) {
      // A create that died half-way leaves a folder without state: only --force removes it.
      if (!force) throw e;
      c.remove();
      return;
    }
    const status = c.status(saved);
    if (status === "running" && !force) throw new OciError(`cannot delete container ${JSON.stringify(id)} that is not stopped: running`);
    if (status !== "stopped") {
      const fd = pidfdOpen(saved.pid);
      for (const pid of containerPids(saved)) signal(pid, F.SIGKILL, pid === saved.pid ? saved.startTime : null);
      // A paused container's processes take the SIGKILL once thawed.
      thaw(saved.cgroup);
      if (fd >= 0) {
        pidfdWait(fd, 10_000);
        closeSync(fd);
      }
    }
    if (saved.cgroup) await removeCgroup(saved.cgroup);
    await runHooksWarning("poststop", saved.hooks.poststop, publicState(saved, "stopped"), warn);
    c.remove();
  } finally {
    closeSync(lock);
  }
}

export function listStates(root: string) {
  return listContainers(root).flatMap((c) => {
    try {
      const saved = c.read();
      return [publicState(saved, withPaused(c.status(saved), saved))];
    } catch {
      return [];
    }
  });
}

export { StateError };
