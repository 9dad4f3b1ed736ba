// How `nsrun doctor` looks at the host: read-only file access below a root prefix, so tests can
// stand a temporary folder in for / with fake /proc and /etc contents; the mount table; and one
// child process with a time limit (the live probe). The one libc call it adds, getxattr(2), tells
// whether newuidmap has file capabilities (node:fs has no xattr calls).
import { dlopen, FFIType } from "bun:ffi";
import { accessSync, constants, readdirSync, readFileSync, realpathSync, statSync } from "node:fs";
import { cstr } from "./libc";

export interface HostView {
  /** Prefixed to every path below ("" on the real host). */
  root: string;
  /** A file's text, or null when it is missing or unreadable. */
  read(path: string): string | null;
  /** A directory's entries, or null when it is missing or unreadable. */
  list(path: string): string[] | null;
  /** Mode and owner, or null when the file is missing. */
  stat(path: string): { mode: number; uid: number; isFile: boolean } | null;
  /** True when the file has a security.capability attribute (setcap). */
  hasCapabilities(path: string): boolean;
  /** True when the caller may write the directory. Not prefixed: cgroup paths come from mountinfo as they are. */
  writable(path: string): boolean;
}

let xattr: { getxattr: (path: Uint8Array, name: Uint8Array, value: null, size: number) => number | bigint } | null = null;

function getxattrSize(path: string, name: string): number {
  xattr ??= dlopen("libc.so.6", { getxattr: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.u64], returns: FFIType.i64 } }).symbols as never;
  // With size 0, getxattr returns the attribute's size, or -1 (ENODATA) when there is none.
  return Number(xattr?.getxattr(cstr(path), cstr(name), null, 0));
}

/** The real host (root "") or a fake one below `root`; any method can be replaced. */
export function hostView(root = "", overrides: Partial<HostView> = {}): HostView {
  const at = (p: string) => `${root}${p}`;
  return {
    root,
    read(p) {
      try {
        return readFileSync(at(p), "utf8");
      } catch {
        return null;
      }
    },
    list(p) {
      try {
        return readdirSync(at(p));
      } catch {
        return null;
      }
    },
    stat(p) {
      try {
        const s = statSync(at(p));
        return { mode: s.mode, uid: s.uid, isFile: s.isFile() };
      } catch {
        return null;
      }
    },
    hasCapabilities: (p) => getxattrSize(at(p), "security.capability") > 0,
    writable(p) {
      try {
        accessSync(p, constants.W_OK);
        return true;
      } catch {
        return false;
      }
    },
    ...overrides,
  };
}

export interface Mount {
  point: string;
  opts: string[];
  fstype: string;
  source: string;
}

/** /proc/self/mountinfo (proc(5)): mount point, per-mount options, filesystem type, source. */
export function parseMountinfo(text: string): Mount[] {
  const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(Number.parseInt(o, 8)));
  return text.split("\n").flatMap((line) => {
    const [pre, post] = line.split(" - ");
    if (!post) return [];
    const f = pre.split(" ");
    const [fstype, source] = post.split(" ");
    return [{ point: unescape(f[4]), opts: (f[5] ?? "").split(","), fstype, source: unescape(source ?? "") }];
  });
}

/** The path with symlinks resolved, or the path as given when that fails. */
export function realpathOr(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

/** Runs argv with `input` on stdin (a memfd, so the child may open /dev/stdin); SIGKILL after timeoutMs. */
export async function runProbe(argv: string[], input: string, timeoutMs: number): Promise<{ code: number | null; stderr: string; ms: number; timedOut: boolean }> {
  const started = performance.now();
  let proc: ReturnType<typeof Bun.spawn<Buffer, "ignore", "pipe">>;
  try {
    proc = Bun.spawn(argv, { stdin: Buffer.from(input), stdout: "ignore", stderr: "pipe" });
  } catch (e) {
    return { code: null, stderr: `cannot start ${argv[0]}: ${(e as Error).message}`, ms: 0, timedOut: false };
  }
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    proc.kill("SIGKILL");
  }, timeoutMs);
  const text = new Response(proc.stderr).text();
  const code = await proc.exited;
  clearTimeout(timer);
  // A grandchild may still hold stderr open; its end of file is not worth waiting for.
  const stderr = await Promise.race([text, Bun.sleep(200).then(() => "")]);
  return { code, stderr, ms: Math.round(performance.now() - started), timedOut };
}
