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
import { build, cacheFolder, readCacheFile, sha256, writeCacheFile } from "./cachefiles";
import type { ChildFds } from "../stages/compile";
import type { LoadedConfig } from "../stages/config";
import type { BoxPlan, Caller, HostFacts, PlanOptions } from "../stages/plan";
import { FrozenTape, type RunnableTape } from "../tape/frozen";
import type { Tape } from "../tape/tape";
import { lastCapability, type Tracer } from "./start";

export { cacheFolder };

/** Bump when the entry's layout or what a key covers changes. */
const FORMAT = "nsrun-tape-cache 2";
const MAGIC = 0x3254534e; // "NST2"
const HEAD = 32;

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
}

type Read = [fn: "rootfsFile" | "installed", arg: string, result: string | boolean | null];

interface Entry {
  key: string;
  plan: BoxPlan;
  fds: string;
  reads: Read[];
  tape: FrozenTape;
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
  let entry = memory.get(key) ?? (folder ? load(folder, name, key, trace) : null);
  if (entry) {
    const changed = entry.reads.find(([fn, arg, result]) => (fn === "rootfsFile" ? rootfsFile?.(arg) : installed?.(arg)) !== result);
    if (changed) {
      trace?.(`cache: miss: ${changed[0] === "rootfsFile" ? `the rootfs's ${changed[1]}` : `whether ${changed[1]} is installed`} changed`);
      entry = null;
    }
  }
  let planned: BoxPlan | null = null;
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
      const fdsText = JSON.stringify(fds, (k, v) => (v instanceof Map ? [...v] : v));
      if (entry && entry.fds === fdsText) return entry.tape;
      if (entry) trace?.("cache: the box's fds differ from the cached tape's: compiled anew");
      const tape = FrozenTape.of(await compile(), inputs.trace);
      const plan = entry?.plan ?? planned;
      if (!plan) return tape;
      if (plan.files.length || fds.files?.size) {
        trace?.("cache: not stored: the box has files nsrun generates (a \"nat\" box's /etc/resolv.conf and /etc/hosts)");
        return tape;
      }
      const stored: Entry = { key, plan, fds: fdsText, reads: entry?.reads ?? reads, tape };
      memory.set(key, stored);
      if (folder) store(folder, name, stored, trace);
      return tape;
    },
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

/** Entries kept: beyond, the least recently written go (a box's entry is about 100 KB). */
const KEEP = 200;

function load(folder: string, name: string, key: string, trace: Tracer): Entry | null {
  const bytes = readCacheFile(folder, name, trace);
  if (bytes === null) return null;
  const entry = decode(bytes, key);
  if (!entry) trace?.(`cache: not used: ${JSON.stringify(`${folder}/${name}`)} is corrupt or truncated`);
  else memory.set(key, entry);
  return entry;
}

function store(folder: string, name: string, entry: Entry, trace: Tracer): void {
  writeCacheFile(folder, name, encode(entry), trace, /^[0-9a-f]{64}$/, KEEP);
}

/**
 * The file: a 32-byte head (magic u32, head JSON length u32, relocation count u32, image length u32,
 * op descriptions' length u32, reserved u32, a 64-bit hash of the rest u64), the head JSON (key, plan,
 * fds, reads, the tape's flags), the relocations (u32 each), the tape's image, and the op
 * descriptions (JSON, decoded only for an error or --trace).
 */
function encode(e: Entry): Uint8Array {
  const { image, relocs, trace, cloneFlags, cgroupFd, launch } = e.tape.parts;
  const meta = e.tape.metaText();
  const head = new TextEncoder().encode(JSON.stringify({ key: e.key, plan: e.plan, fds: e.fds, reads: e.reads, trace, cloneFlags, cgroupFd, launch }));
  const metaBytes = new TextEncoder().encode(meta);
  const headLen = (head.length + 3) & ~3;
  const out = new Uint8Array(HEAD + headLen + relocs.length * 4 + image.length + metaBytes.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, MAGIC, true);
  view.setUint32(4, head.length, true);
  view.setUint32(8, relocs.length, true);
  view.setUint32(12, image.length, true);
  view.setUint32(16, metaBytes.length, true);
  out.set(head, HEAD);
  let at = HEAD + headLen;
  out.set(new Uint8Array(relocs.buffer, relocs.byteOffset, relocs.byteLength), at);
  out.set(image, (at += relocs.length * 4));
  out.set(metaBytes, at + image.length);
  view.setBigUint64(24, BigInt(Bun.hash(out.subarray(HEAD))), true);
  return out;
}

function decode(bytes: Uint8Array, key: string): Entry | null {
  if (bytes.length < HEAD) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(0, true) !== MAGIC) return null;
  const headBytes = view.getUint32(4, true);
  const nrelocs = view.getUint32(8, true);
  const imageLen = view.getUint32(12, true);
  const metaLen = view.getUint32(16, true);
  const headLen = (headBytes + 3) & ~3;
  if (bytes.length !== HEAD + headLen + nrelocs * 4 + imageLen + metaLen) return null;
  if (view.getBigUint64(24, true) !== BigInt(Bun.hash(bytes.subarray(HEAD)))) return null;
  try {
    const h = JSON.parse(new TextDecoder().decode(bytes.subarray(HEAD, HEAD + headBytes)));
    if (h.key !== key) return null;
    // Views, not copies: the buffer is this entry's own, and the image is copied into the tape's
    // memory when it runs. (HEAD and headLen are multiples of 4, so the relocations are aligned.)
    const relocs = new Uint32Array(bytes.buffer, bytes.byteOffset + HEAD + headLen, nrelocs);
    const imageAt = HEAD + headLen + nrelocs * 4;
    const image = bytes.subarray(imageAt, imageAt + imageLen);
    // Every relocation must point at an 8-byte slot inside the image.
    for (const at of relocs) if (at + 8 > image.length) return null;
    const metaAt = imageAt + imageLen;
    const tape = new FrozenTape({ image, relocs, trace: h.trace, cloneFlags: h.cloneFlags, cgroupFd: h.cgroupFd, launch: h.launch, meta: () => new TextDecoder().decode(bytes.subarray(metaAt)) });
    return { key, plan: h.plan, fds: h.fds, reads: h.reads, tape };
  } catch {
    return null;
  }
}
