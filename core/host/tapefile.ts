// The tape cache's files (core/host/tapecache.ts): one entry, a box's plan and compiled tape, read and
// written under core/host/cachefiles.ts's checks. Apart from the cache's key (which reads the host
// through node:fs) so that a box from its start record (core/host/startrecord.ts) loads neither.
import type { ChildFds } from "../stages/compile";
import type { BoxPlan } from "../stages/plan";
import { FrozenTape } from "../tape/frozen";
import type { Tracer } from "../pipeline";
import { readCacheFile, writeCacheFile } from "./cachefiles";

const MAGIC = 0x3254534e; // "NST2"
const HEAD = 32;

/** What planning read lazily, with what it gave: read again on a hit. */
export type Read = [fn: "rootfsFile" | "installed", arg: string, result: string | boolean | null];

export interface Entry {
  key: string;
  plan: BoxPlan;
  /** The host fds the tape was compiled for (JSON): a box whose fds differ compiles anew. */
  fds: string;
  reads: Read[];
  tape: FrozenTape;
  /** The file's hash (its head's), once the entry has been read from or written to one. */
  sum?: string;
}

/** The host fds a tape is compiled for, as an entry keeps them. */
export function fdsText(fds: ChildFds): string {
  return JSON.stringify(fds, (_, v) => (v instanceof Map ? [...v] : v));
}

/** Entries kept: beyond, the least recently written go (a box's entry is about 100 KB). */
const KEEP = 200;

export function loadEntry(folder: string, name: string, key: string, trace: Tracer): Entry | null {
  const bytes = readCacheFile(folder, name, trace);
  if (bytes === null) return null;
  const entry = decode(bytes, key);
  if (!entry) trace?.(`cache: not used: ${JSON.stringify(`${folder}/${name}`)} is corrupt or truncated`);
  return entry;
}

/** Write the entry's file; true when it was written (then `entry.sum` is its hash). */
export function storeEntry(folder: string, name: string, entry: Entry, trace: Tracer): boolean {
  const bytes = encode(entry);
  if (!writeCacheFile(folder, name, bytes, trace, /^[0-9a-f]{64}$/, KEEP)) return false;
  entry.sum = sumOf(bytes);
  return true;
}

const sumOf = (bytes: Uint8Array) => new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getBigUint64(24, true).toString(16);

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
    for (let i = 0; i < relocs.length; i++) if (relocs[i] + 8 > image.length) return null; // indexed: see frozen.ts encode
    const metaAt = imageAt + imageLen;
    const tape = new FrozenTape({ image, relocs, trace: h.trace, cloneFlags: h.cloneFlags, cgroupFd: h.cgroupFd, launch: h.launch, meta: () => new TextDecoder().decode(bytes.subarray(metaAt)) });
    return { key, plan: h.plan, fds: h.fds, reads: h.reads, tape, sum: sumOf(bytes) };
  } catch {
    return null;
  }
}
