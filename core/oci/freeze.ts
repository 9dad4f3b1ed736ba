// `pause`, `resume` and `update`: what runc does to a running container through its cgroup. pause
// freezes every process of the container (cgroup v1: freezer.state; v2: cgroup.freeze), resume
// thaws them, and update writes new limits (runc's flags, or --resources with a runtime-spec
// linux.resources object) into the container's own cgroups, planned by the same code as `create`.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import type { CgroupPlan } from "../stages/cgroup";
import { closeSync } from "node:fs";
import { OciError } from "./error";
import { resourceWrites } from "./resources";
import { type SpecResources } from "./spec";
import { Container, lockContainer, type SavedState } from "./state";

interface Freezer {
  file: string;
  frozen: string;
  thawed: string;
  /** Where the kernel says the freeze is complete (v1: the same file; v2: cgroup.events "frozen 1"). */
  done: () => boolean;
}

/** The container's freezer, or null when it has no cgroup that can freeze (a rootless container on cgroup v1). */
export function freezerOf(cgroup: CgroupPlan | null): Freezer | null {
  if (!cgroup) return null;
  if (cgroup.version === 2) {
    const dir = cgroup.boxDirs[0];
    if (!existsSync(`${dir}/cgroup.freeze`)) return null;
    return { file: `${dir}/cgroup.freeze`, frozen: "1", thawed: "0", done: () => /^frozen 1$/m.test(read(`${dir}/cgroup.events`)) };
  }
  const dir = cgroup.boxDirs.find((d) => existsSync(`${d}/freezer.state`));
  if (!dir) return null;
  const file = `${dir}/freezer.state`;
  return { file, frozen: "FROZEN", thawed: "THAWED", done: () => read(file).trim() === "FROZEN" };
}

function read(file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch {
    return "";
  }
}

/** The container's processes are frozen (its status is then "paused"). */
export function isFrozen(cgroup: CgroupPlan | null): boolean {
  const f = freezerOf(cgroup);
  if (!f) return false;
  return cgroup?.version === 2 ? read(f.file).trim() === "1" : read(f.file).trim() !== "THAWED";
}

/** Thaw (best effort): a frozen container's processes take a SIGKILL only once thawed. */
export function thaw(cgroup: CgroupPlan | null): void {
  const f = freezerOf(cgroup);
  if (!f) return;
  try {
    writeFileSync(f.file, f.thawed);
  } catch {
    // already gone
  }
}

function withRunning<T>(root: string, id: string, what: string, allowed: string[], act: (saved: SavedState, status: string) => T): T {
  const c = new Container(root, id);
  const lock = lockContainer(c);
  try {
    const saved = c.read();
    const base = c.status(saved);
    const status = base === "running" && isFrozen(saved.cgroup) ? "paused" : base;
    if (!allowed.includes(status)) throw new OciError(`cannot ${what} container ${JSON.stringify(id)}: it is ${status}`);
    return act(saved, status);
  } finally {
    closeSync(lock);
  }
}

const noFreezer = (id: string) =>
  new OciError(`container ${JSON.stringify(id)} has no freezer cgroup: pause needs cgroup v1's freezer (root) or cgroup v2 (a cgroup the container has of its own)`);

/** `pause`: freeze, then wait (bounded) until the kernel says every process is frozen. */
export async function pauseContainer(root: string, id: string): Promise<void> {
  await withRunning(root, id, "pause", ["running"], async (saved) => {
    const f = freezerOf(saved.cgroup) ?? raise(noFreezer(id));
    writeFileSync(f.file, f.frozen);
    const deadline = Date.now() + 10_000;
    while (!f.done()) {
      if (Date.now() > deadline) {
        writeFileSync(f.file, f.thawed);
        throw new OciError(`pause ${JSON.stringify(id)}: its processes did not freeze within 10 s; thawed again`);
      }
      // v1 goes FREEZING -> FROZEN by itself; reading freezer.state makes it try again.
      await Bun.sleep(10);
    }
  });
}

/** `resume`: thaw a paused container. */
export function resumeContainer(root: string, id: string): void {
  withRunning(root, id, "resume", ["paused"], (saved) => {
    const f = freezerOf(saved.cgroup) ?? raise(noFreezer(id));
    writeFileSync(f.file, f.thawed);
  });
}

function raise(e: Error): never {
  throw e;
}

/** `update`: new limits for a created, running or paused container, written to its own cgroups. */
export function updateContainer(root: string, id: string, res: SpecResources): void {
  withRunning(root, id, "update", ["created", "running", "paused"], (saved) => {
    if (!saved.cgroup) throw new OciError(`container ${JSON.stringify(id)} has no cgroup of its own to update (a rootless container on cgroup v1, or one without limits)`);
    for (const [file, value] of resourceWrites(saved.cgroup, res)) {
      try {
        writeFileSync(file, value);
      } catch (e) {
        throw new OciError(`update: write ${JSON.stringify(value)} to ${JSON.stringify(file)}: ${(e as NodeJS.ErrnoException).code ?? e}`);
      }
    }
  });
}

/** A size as runc's flags take it: bytes, or with a k/m/g/t suffix (1024-based); -1 is unlimited. */
export function parseRuncSize(flag: string, text: string): number {
  const m = text.trim().match(/^(-1|\d+(?:\.\d+)?)\s*([kmgtp]?)i?b?$/i);
  if (!m) throw new OciError(`update: --${flag}: expected a size (bytes, or 512m, 2g), got ${JSON.stringify(text)}`, 125);
  const unit = { "": 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40, p: 2 ** 50 }[m[2].toLowerCase() as "k"];
  return m[1] === "-1" ? -1 : Math.floor(Number(m[1]) * unit);
}
