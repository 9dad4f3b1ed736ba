// The host inputs a cache entry depends on, and how each is observed: once when the entry is stored,
// and again, the same way, before it is used (core/host/configcache.ts, core/host/startrecord.ts).
// An entry holds what each input gave; any that now gives something else makes the entry unusable.
//
// Observed through ffi/ alone (open, pread, statx, access), not node:fs, which costs about a
// millisecond to load: a box started from its start record observes a dozen of these.
import * as F from "../../ffi/flags";
import { close, executable, openat2, readInRoot, realpathOrNull, statAt } from "../../ffi/fs";
import { isTerminal, readBytes, windowSize } from "../../ffi/io";
import { sha256 } from "./cachefiles";

export type Input =
  /**
   * A file's content, by the SHA-256 of its bytes (null: unreadable): for a file in UTF-8 the same
   * as the SHA-256 of its text, which is what assembly recorded.
   */
  | { kind: "file"; path: string }
  | { kind: "env"; name: string }
  /** Where a path leads, every symlink followed. */
  | { kind: "realpath"; path: string }
  /**
   * A host path's identity, reached without following any symlink: device, inode, type and mode,
   * owner, mtime, ctime (a folder replaced, renamed over, chowned or written in is another).
   */
  | { kind: "node"; path: string }
  /** Whether this process may execute a path (newuidmap, newgidmap). */
  | { kind: "executable"; path: string }
  /** A small file as the box would read it in its rootfs (the rootfs's /etc/passwd). */
  | { kind: "rootfs-file"; root: string; path: string }
  /** The caller's terminal: its size when nsrun's stdin and stdout are both terminals, else none. */
  | { kind: "terminal" };

/** An input and what it gave. */
export type Observed = [input: Input, value: string | null];

/** What `input` gives now. */
export function observe(input: Input): string | null {
  switch (input.kind) {
    case "file":
      try {
        return sha256(readBytes(input.path));
      } catch {
        return null;
      }
    case "env":
      return process.env[input.name] ?? null;
    case "realpath":
      return realpathOrNull(input.path);
    case "node":
      return nodeIdentity(input.path);
    case "executable":
      return executable(input.path) ? "yes" : "no";
    case "rootfs-file":
      return readInRoot(input.root, input.path);
    case "terminal":
      return JSON.stringify(terminalSize());
  }
  return undefined as never; // a kind this build does not know: firstChanged counts it changed
}

/** Each input with what it gives now. */
export const observeAll = (inputs: Input[]): Observed[] => inputs.map((input) => [input, observe(input)]);

/** The first input that gives something other than it did, or null when none does. */
export function firstChanged(observed: Observed[]): Input | null {
  for (let i = 0; i < observed.length; i++) {
    const [input, value] = observed[i];
    const now = observe(input);
    if (now === undefined || now !== value) return input;
  }
  return null;
}

/** How an input is named in --trace's lines. */
export function inputName(input: Input): string {
  switch (input.kind) {
    case "env":
      return `$${input.name}`;
    case "terminal":
      return "the terminal";
    case "rootfs-file":
      return `the rootfs's ${input.path}`;
    default:
      return JSON.stringify(input.path);
  }
}

/** The size of the caller's terminal when stdin and stdout are both terminals (planning gives the box one then). */
export function terminalSize(): { rows: number; cols: number } | null {
  return isTerminal(0) && isTerminal(1) ? windowSize(0) : null;
}

function nodeIdentity(path: string): string | null {
  let fd = -1;
  try {
    // Planning resolved the path to one without symlinks: one appearing in it is a change.
    fd = openat2(F.AT_FDCWD, path, F.O_PATH, F.RESOLVE_NO_SYMLINKS | F.RESOLVE_NO_MAGICLINKS);
    const s = statAt(fd, "", F.AT_EMPTY_PATH, path);
    return [s.dev, s.ino, s.mode, s.uid, s.gid, s.mtimeNs, s.ctimeNs].join(":");
  } catch {
    return null;
  } finally {
    if (fd >= 0) close(fd);
  }
}
