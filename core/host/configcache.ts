// The config cache: a box started before with the same command line skips assembling its config
// (reading box.toml, applying the flags, validating it with the schema), and so never loads the
// schema (valibot) or, with the tape cache's plan, any planning stage. It maps the raw inputs of
// assembly to its result.
//
// The key is a SHA-256 of the command line (after `run`), the cwd, the caller's ids and groups, and
// nsrun's build. What assembly read beyond those is stored with the entry and read again on a hit:
// the config file's and env file's text (compared by SHA-256), the environment variables it read
// (through a recording view of the environment: the default box's XDG_RUNTIME_DIR), and the paths
// the default box resolves. Any difference is a miss. A config that read anything else (an image
// from the store, a user looked up by name in the rootfs) is not stored. The result then goes on
// to the tape cache (core/host/tapecache.ts), whose key covers the validated config and the host,
// so what comes from here is only ever what the same inputs gave before.
//
// An entry decides what a box runs as the caller: it lives beside the tape cache's, in the same
// private folder, under the same checks (core/host/cachefiles.ts). A file is "config-KEY": the
// SHA-256 of the rest in hex, a newline, then JSON; a sum that does not match is a corrupt file.
import { readFileSync } from "node:fs";
import type { AssemblyRead, Assembled } from "../stages/boxconfig";
import { realpathOrNull } from "../stages/hostpath";
import type { Tracer } from "../pipeline";
import { build, cacheFolder, readCacheFile, sha256, writeCacheFile } from "./cachefiles";

/** Bump when the entry's layout or what a key covers changes. */
const FORMAT = "nsrun-config-cache 1";
const WHAT = "cache: config";
/** Config entries kept (each a kilobyte or two). */
const KEEP = 200;

type StoredRead = { kind: "file"; path: string; sha256: string } | { kind: "realpath"; path: string; result: string | null } | { kind: "env"; name: string; value: string | null };

interface Entry {
  format: string;
  key: string;
  reads: StoredRead[];
  assembled: Assembled;
}

export interface ConfigCache {
  /** The config these inputs gave before, when everything it read is unchanged; else null. */
  get(): Assembled | null;
  /** Keep what assembly gave and read (nothing is kept when it read something the cache cannot check). */
  put(reads: AssemblyRead[], assembled: Assembled): void;
}

/** The cache for one command line; null when there is none (run from source, or no cache folder). */
export function configCache(args: string[], cwd: string, trace: Tracer): ConfigCache | null {
  const id = build();
  const folder = id === null ? null : cacheFolder();
  if (id === null || folder === null) return null;
  const ids = [process.getuid?.(), process.getgid?.(), process.geteuid?.(), process.getegid?.(), process.getgroups?.()];
  const key = sha256(JSON.stringify([FORMAT, id, process.arch, args, cwd, ids]));
  const name = `config-${key}`;
  const path = `${folder}/${name}`;
  return {
    get() {
      const bytes = readCacheFile(folder, name, trace, WHAT);
      if (bytes === null) return null;
      const entry = decode(bytes, key);
      if (!entry) {
        trace?.(`${WHAT}: not used: ${JSON.stringify(path)} is corrupt or truncated`);
        return null;
      }
      const changed = entry.reads.find((r) => !unchanged(r));
      if (changed) {
        trace?.(`${WHAT}: miss: ${changed.kind === "env" ? `$${changed.name}` : JSON.stringify(changed.path)} changed`);
        return null;
      }
      trace?.(`${WHAT}: hit ${path}`);
      return entry.assembled;
    },
    put(reads, assembled) {
      const other = reads.find((r) => r.kind === "other");
      if (other?.kind === "other") return void trace?.(`${WHAT}: not stored: assembly read ${other.what}`);
      const stored = reads.map((r): StoredRead => (r.kind === "file" ? { kind: "file", path: r.path, sha256: sha256(r.text) } : (r as StoredRead)));
      const body = JSON.stringify({ format: FORMAT, key, reads: stored, assembled } satisfies Entry);
      writeCacheFile(folder, name, new TextEncoder().encode(`${sha256(body)}\n${body}`), trace, /^config-[0-9a-f]{64}$/, KEEP, WHAT);
    },
  };
}

/** The environment as assembly sees it: each variable it reads is recorded. */
export function recordingEnv(record: (read: AssemblyRead) => void): Record<string, string | undefined> {
  return new Proxy(process.env, {
    get(env, name) {
      const value = Reflect.get(env, name) as string | undefined;
      if (typeof name === "string") record({ kind: "env", name, value: value ?? null });
      return value;
    },
  });
}

function unchanged(r: StoredRead): boolean {
  if (r.kind === "realpath") return realpathOrNull(r.path) === r.result;
  if (r.kind === "env") return (process.env[r.name] ?? null) === r.value;
  try {
    return sha256(readFileSync(r.path, "utf8")) === r.sha256;
  } catch {
    return false;
  }
}

function decode(bytes: Uint8Array, key: string): Entry | null {
  const text = new TextDecoder().decode(bytes);
  const nl = text.indexOf("\n");
  if (nl !== 64 || sha256(text.slice(nl + 1)) !== text.slice(0, nl)) return null;
  try {
    const entry = JSON.parse(text.slice(nl + 1)) as Entry;
    return entry.format === FORMAT && entry.key === key && Array.isArray(entry.reads) ? entry : null;
  } catch {
    return null;
  }
}
