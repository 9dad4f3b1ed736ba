// The tape cache: a box planned before starts from its plan and compiled tape, kept on disk, instead
// of planning, compiling and encoding again (about 3.5 ms of a 17 ms start).
//
// The key is a SHA-256 of everything planning and compiling read: nsrun's build (the identity of
// its executable), the validated config (which holds the env files' content and the flags), the
// caller's ids and groups, the host facts (subordinate ids, cgroup and id-map facts, the seccomp
// profile's text), the identity of the rootfs and every bind source (device, inode, mtime, ctime),
// the kernel (release, boot id, last capability), nsrun's own id maps, and the planning options
// (command, terminal). What the
// plan read lazily (the rootfs's /etc/passwd, installed programs) is stored with the entry and read
// again on a hit: a difference is a miss. The host fds the tape embeds are stored too, and compared
// once the box's fds exist: a difference compiles anew from the plan. What must be fresh for each box
// is never taken from the cache: the cgroup's name (nsrun-PID) is planned again on a hit, and a box
// with generated files (a "nat" box's resolv.conf and hosts, at random paths) is not cached.
//
// A tape is privileged code: it runs as the caller, as root for root. So the cache lives in a
// folder only the caller can write ($XDG_CACHE_HOME/nsrun, else ~/.cache/nsrun, or /run/nsrun-cache
// for root), read and written under core/host/cachefiles.ts's checks. Any doubt (a check failing, a
// short or corrupt file, a key that does not match) means planning as if there were no cache; the
// reason shows under --trace.
import { readFileSync, statSync } from "node:fs";
import { build, cacheFolder, sha256 } from "./cachefiles";
import { type Entry, fdsText, loadEntry, type Read, storeEntry } from "./tapefile";
import type { ChildFds } from "../stages/compile";
import type { LoadedConfig } from "../stages/config";
import type { BoxPlan, Caller, HostFacts, PlanOptions } from "../stages/plan";
import { FrozenTape, type RunnableTape } from "../tape/frozen";
import type { Tape } from "../tape/tape";
import { lastCapability, type Tracer } from "./start";

export { cacheFolder };

/** Bump when the entry's layout or what a key covers changes. */
const FORMAT = "nsrun-tape-cache 2";

export interface CacheInputs {
  loaded: LoadedConfig;
  /** Its lazy readers (rootfsFile, installed) are wrapped so that what planning reads is recorded. */
  facts: HostFacts;
  caller: Caller;
  /** Planning options; a cgroup name is left out (it is planned again for each box). */
  options: PlanOptions;
  /** --trace encodes room for results: a tape of its own. */
  trace: boolean;
}

export interface BoxCache {
  /** Whether the cache has this box's plan (then plan() does not call `make`). */
  readonly hit: boolean;
  /** The cached plan with `fresh` applied (the cgroup planned anew), or `make()`'s. */
  plan(make: () => BoxPlan, fresh: (cached: BoxPlan) => BoxPlan): BoxPlan;
  /** The cached tape when it was compiled for these fds; otherwise `compile()`'s, frozen and stored. */
  tape(fds: ChildFds, compile: () => Promise<Tape>): Promise<RunnableTape>;
  /** After tape(): the entry's file as it now is (its name, key and hash), or null when the box has none. */
  onDisk(): { name: string; key: string; sum: string } | null;
  /** What planning read lazily (the rootfs's files, installed programs), with what each gave. */
  reads(): Read[];
}

/** Entries already read or written by this process (a long-lived one runs many boxes: core/api.ts). */
const memory = new Map<string, Entry>();

/**
 * The cache for one box. With `enabled` false (--no-cache) nothing is read or written. Without a
 * build identity (nsrun run from source rather than its executable) only this process's memory is used.
 */
export function boxCache(inputs: CacheInputs, enabled: boolean, trace: Tracer): BoxCache | null {
  if (!enabled) {
    trace?.("cache: off (--no-cache)");
    return null;
  }
  const reads: Read[] = [];
  const { facts } = inputs;
  const rootfsFile = facts.rootfsFile;
  const installed = facts.installed;
  // What planning reads lazily is recorded, to be read again on a hit.
  if (rootfsFile)
    facts.rootfsFile = (path) => {
      const r = rootfsFile(path);
      reads.push(["rootfsFile", path, r]);
      return r;
    };
  if (installed)
    facts.installed = (program) => {
      const r = installed(program);
      reads.push(["installed", program, r]);
      return r;
    };
  let key: string;
  try {
    key = keyOf(inputs);
  } catch (e) {
    trace?.(`cache: not used: ${(e as Error).message}`);
    return null;
  }
  const folder = build() === null ? null : cacheFolder();
  if (build() !== null && folder === null) trace?.("cache: no folder (neither XDG_CACHE_HOME nor HOME is set): this process's memory only");
  const name = key.slice(0, 64);
  const shown = folder ? `${folder}/${name}` : "(memory)";
  let entry = memory.get(key) ?? (folder ? loadEntry(folder, name, key, trace) : null);
  if (entry) memory.set(key, entry);
  if (entry) {
    const changed = entry.reads.find(([fn, arg, result]) => (fn === "rootfsFile" ? rootfsFile?.(arg) : installed?.(arg)) !== result);
    if (changed) {
      trace?.(`cache: miss: ${changed[0] === "rootfsFile" ? `the rootfs's ${changed[1]}` : `whether ${changed[1]} is installed`} changed`);
      entry = null;
    }
  }
  let planned: BoxPlan | null = null;
  let disk: { name: string; key: string; sum: string } | null = null;
  return {
    hit: entry !== null,
    plan(make, fresh) {
      if (entry) {
        trace?.(`cache: hit ${shown}`);
        return fresh(entry.plan);
      }
      planned = make();
      return planned;
    },
    async tape(fds, compile) {
      const text = fdsText(fds);
      if (entry && entry.fds === text) {
        if (folder && entry.sum) disk = { name, key, sum: entry.sum };
        return entry.tape;
      }
      if (entry) trace?.("cache: the box's fds differ from the cached tape's: compiled anew");
      const tape = FrozenTape.of(await compile(), inputs.trace);
      const plan = entry?.plan ?? planned;
      if (!plan) return tape;
      if (plan.files.length || fds.files?.size) {
        trace?.("cache: not stored: the box has files nsrun generates (a \"nat\" box's /etc/resolv.conf and /etc/hosts)");
        return tape;
      }
      const stored: Entry = { key, plan, fds: text, reads: entry?.reads ?? reads, tape };
      memory.set(key, stored);
      if (folder && storeEntry(folder, name, stored, trace) && stored.sum) disk = { name, key, sum: stored.sum };
      return tape;
    },
    onDisk: () => disk,
    reads: () => entry?.reads ?? reads,
  };
}

/** The identity of a host path: a folder replaced by another, or changed, is another key. */
function identity(path: string): string {
  const s = statSync(path, { bigint: true });
  return [s.dev, s.ino, s.mtimeNs, s.ctimeNs].join(":");
}

function keyOf({ loaded, facts, caller, options, trace }: CacheInputs): string {
  const { cgroupName: _, ...opts } = options;
  const material = JSON.stringify([
    FORMAT,
    build() ?? "source",
    process.arch,
    // The kernel: its release, and this boot (a reboot may bring another kernel or configuration).
    readFileSync("/proc/sys/kernel/osrelease", "utf8"),
    readFileSync("/proc/sys/kernel/random/boot_id", "utf8"),
    // The user namespace nsrun runs in (it decides what nsrun may map).
    readFileSync("/proc/self/uid_map", "utf8"),
    readFileSync("/proc/self/gid_map", "utf8"),
    lastCapability(),
    [caller.uid, caller.gid, process.geteuid?.(), process.getegid?.(), process.getgroups?.()],
    loaded,
    facts, // functions are left out by JSON; what they return is checked on a hit
    identity(facts.rootfs),
    facts.sources.map((s) => (s ? identity(s.path) : null)),
    opts,
    trace,
  ]);
  return sha256(material);
}

