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
// private folder, under the same checks (core/host/cachefiles.ts). A file is "config-KEY", a sealed
// JSON file (cachefiles.ts sealedJson): a sum that does not match is a corrupt file.
import type { AssemblyRead, Assembled } from "../stages/boxconfig";
import { firstChanged, inputName, type Observed } from "./inputs";
import type { Tracer } from "../pipeline";
import { commandLineFile, readCacheFile, sealedJson, sha256, unsealFor, writeCacheFile } from "./cachefiles";

/** Bump when the entry's layout or what a key covers changes. */
const FORMAT = "nsrun-config-cache 2";
const WHAT = "cache: config";
/** Config entries kept (each a kilobyte or two). */
const KEEP = 200;

interface Entry {
  format: string;
  key: string;
  reads: Observed[];
  assembled: Assembled;
}

export interface ConfigCache {
  /** The config these inputs gave before, and what it read, when everything it read is unchanged; else null. */
  get(): { assembled: Assembled; reads: Observed[] } | null;
  /**
   * Keep what assembly gave and read; returns what it read as kept, or null when it read something
   * the cache cannot check (and nothing is kept).
   */
  put(reads: AssemblyRead[], assembled: Assembled): Observed[] | null;
}

/** The cache for one command line; null when there is none (run from source, or no cache folder). */
export function configCache(args: string[], cwd: string, trace: Tracer): ConfigCache | null {
  const file = commandLineFile("config", FORMAT, args, cwd);
  if (file === null) return null;
  const { folder, name, key } = file;
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
      const changed = firstChanged(entry.reads);
      if (changed) {
        trace?.(`${WHAT}: miss: ${inputName(changed)} changed`);
        return null;
      }
      trace?.(`${WHAT}: hit ${path}`);
      return { assembled: entry.assembled, reads: entry.reads };
    },
    put(reads, assembled) {
      const other = reads.find((r) => r.kind === "other");
      if (other?.kind === "other") {
        trace?.(`${WHAT}: not stored: assembly read ${other.what}`);
        return null;
      }
      const stored = reads.flatMap((r): Observed[] =>
        r.kind === "file" ? [[{ kind: "file", path: r.path }, sha256(r.text)]] : r.kind === "env" ? [[{ kind: "env", name: r.name }, r.value]] : r.kind === "realpath" ? [[{ kind: "realpath", path: r.path }, r.result]] : [],
      );
      writeCacheFile(folder, name, sealedJson({ format: FORMAT, key, reads: stored, assembled } satisfies Entry), trace, /^config-[0-9a-f]{64}$/, KEEP, WHAT);
      return stored;
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

function decode(bytes: Uint8Array, key: string): Entry | null {
  const entry = unsealFor(bytes, FORMAT, key) as Entry | null;
  return entry && Array.isArray(entry.reads) ? entry : null;
}
