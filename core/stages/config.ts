// Stage 1: load and validate box.toml. Every key is checked; an unknown key is an error, because a
// typo (`readonyl = true`) must never silently weaken isolation.
import { readFileSync } from "node:fs";
import { dirname, posix, resolve } from "node:path";
import * as v from "valibot";
import { ConfigError } from "../errors";
import { rangeProblem, userTextProblem } from "./ids";
import { DURATION_EXPECTED, parseDuration } from "../verdict";
import { parseSize } from "./sizes";

export { parseSize };

export const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const absolutePath = v.pipe(
  v.string(),
  v.check((s) => s.startsWith("/"), "expected an absolute path (starting with /)"),
  v.check((s) => !s.includes("\0"), "a path cannot contain NUL"),
);

const ID_MAP_LINE = /^\s*\d+\s+\d+\s+\d+\s*$/;
/** An id map line whose ids and count fit the kernel's ids (core/stages/ids.ts). */
const idMapLine = v.pipe(
  v.string(),
  v.regex(ID_MAP_LINE, 'expected "inside outside count", e.g. "0 100000 65536"'),
  v.check((s) => {
    const [inside, outside, count] = s.trim().split(/\s+/).map(Number);
    return rangeProblem(inside, outside, count) === null;
  }, "expected ids 0 to 4294967294 and a count of 1 or more that keeps the range within them"),
);

const boxPath = v.pipe(absolutePath, v.check((s) => !s.split("/").includes(".."), 'expected a path without ".."'));

const MountSchema = v.strictObject({
  /** bind | tmpfs | proc | sysfs | devpts | mqueue */
  type: v.picklist(["bind", "tmpfs", "proc", "sysfs", "devpts", "mqueue"]),
  /** Host path for type = "bind", relative to the config file's folder. Not used by other types. */
  source: v.optional(v.pipe(v.string(), v.minLength(1, "expected a non-empty path"))),
  /** Where it appears inside the box. */
  target: absolutePath,
  /** Mount it read-only (recursively, for binds). Default false. */
  readonly: v.optional(v.boolean(), false),
  /** Flags (nosuid, nodev, noexec, ro, ...) and filesystem options (size=64m, mode=755). Default []. */
  options: v.optional(v.array(v.string()), []),
});

/** Below this a box's memory limit leaves no room for the box's own setup (podman's minimum too). */
const MIN_MEMORY = 6 * 1024 * 1024;

const size = (min: number, tooSmall?: string) =>
  v.pipe(
    v.union([v.string(), v.number()], 'expected a size such as "256M"'),
    v.check((s) => parseSize(s) !== null, 'expected a size such as "256M" (bytes, or with K, M, G)'),
    v.check((s) => (parseSize(s) ?? -1) >= min, tooSmall ?? (min > 0 ? "expected a size above 0" : "")),
  );

/** [namespaces] time: true/false, or a table of clock offsets in seconds (negative or fractional too, at most about 126 years). */
type TimeKey = boolean | { monotonic?: number; boottime?: number };
const isSeconds = (n: unknown) => typeof n === "number" && Number.isFinite(n) && Math.abs(n) <= 4_000_000_000;
const timeKey = v.pipe(
  v.union([v.boolean(), v.record(v.string(), v.unknown())], "expected true, false or a table { monotonic = SECONDS, boottime = SECONDS }"),
  v.check((t) => typeof t === "boolean" || Object.entries(t).every(([k, n]) => (k === "monotonic" || k === "boottime") && isSeconds(n)), "expected a table { monotonic = SECONDS, boottime = SECONDS }, each a number of seconds, at most 4000000000 either way"),
  v.transform((t) => t as TimeKey),
);

const weight = v.pipe(v.number(), v.integer("expected a whole number"), v.minValue(1, "expected 1 to 10000"), v.maxValue(10000, "expected 1 to 10000"));

/** An rlimit: a number, "unlimited", or [soft, hard]. */
const rlimitValue = v.union([v.pipe(v.number(), v.integer(), v.minValue(0)), v.literal("unlimited")], 'expected a whole number >= 0 or "unlimited"');
const rlimit = v.union([rlimitValue, v.tuple([rlimitValue, rlimitValue])], 'expected a number, "unlimited", or [soft, hard]');

const duration = v.pipe(
  v.union([v.string(), v.number()], DURATION_EXPECTED),
  v.check((d) => parseDuration(d) !== null, DURATION_EXPECTED),
);

const LimitsSchema = v.strictObject({
  /** Memory for the box; past it the kernel's OOM killer ends the box. Bytes, or "256M"; at least 6M. */
  memory: v.optional(size(MIN_MEMORY, "at least 6M: nsrun cannot set a box up in less")),
  /** Swap the box may use on top of memory. "0": none. */
  memory_swap: v.optional(size(0)),
  /** Processes and threads in the box. */
  pids: v.optional(v.pipe(v.number(), v.integer("expected a whole number"), v.minValue(1, "expected 1 or more"))),
  /** CPUs' worth of time per period (cpu.max quota/period); 1.5 is one and a half CPUs. */
  cpu: v.optional(v.pipe(v.number(), v.check((n) => n > 0 && Number.isFinite(n), "expected a number of CPUs above 0, e.g. 1.5"))),
  /** Relative CPU share, 1-10000 (cgroup v2 cpu.weight; default 100). */
  cpu_weight: v.optional(weight),
  /** Relative I/O share, 1-10000, where the io controller is available. */
  io_weight: v.optional(weight),
  /** CPU time of the whole box (all its processes, user + system), e.g. "1.5s"; past it nsrun kills the box. */
  cpu_time: v.optional(duration),
  /** Real time from the command's start, e.g. "10s"; past it nsrun kills the box. */
  wall_time: v.optional(duration),
  /** rlimits (setrlimit(2)): a number, "unlimited", or [soft, hard]. Unset ones are inherited, except core = 0. */
  nofile: v.optional(rlimit),
  nproc: v.optional(rlimit),
  core: v.optional(rlimit),
  fsize: v.optional(rlimit),
  stack: v.optional(rlimit),
  as: v.optional(rlimit),
});

const SecuritySchema = v.strictObject({
  /** The capabilities the box keeps (names as in capabilities(7), with or without CAP_). Default: podman's set. */
  capabilities: v.optional(v.array(v.string())),
  /** prctl(PR_SET_NO_NEW_PRIVS): setuid binaries and file capabilities grant nothing. Default true. */
  no_new_privileges: v.optional(v.boolean(), true),
  /** "default", "unconfined", or a path to an OCI/docker seccomp profile (JSON). Default "default". */
  seccomp: v.optional(v.pipe(v.string(), v.minLength(1, "expected \"default\", \"unconfined\" or a file path")), "default"),
  /** Paths hidden inside the box (an empty file or folder is mounted over them). */
  masked_paths: v.optional(v.array(boxPath)),
  /** Paths made read-only inside the box. */
  readonly_paths: v.optional(v.array(boxPath)),
});

export const ConfigSchema = v.strictObject({
  /** The box's root filesystem: a directory, relative to the config file's folder. Required. */
  rootfs: v.pipe(v.string(), v.minLength(1, "expected a directory path")),
  /** The box's hostname (needs namespaces.uts). Default "nsrun". */
  hostname: v.optional(
    v.pipe(
      v.string(),
      v.regex(/^[A-Za-z0-9]([A-Za-z0-9.-]{0,63})$/, "expected 1-64 letters, digits, dots or dashes"),
    ),
  ),
  /** Mount the rootfs read-only. Default false. */
  readonly: v.optional(v.boolean(), false),
  /** Overlay a throw-away upper dir on the rootfs; the box's writes vanish at exit. Default false. */
  ephemeral: v.optional(v.boolean(), false),
  /** A folder that keeps the box's writes: an overlay upper layer (DIR/upper, DIR/work, made on first use) over the rootfs, which is never written; kept after the box, and used again by the next box given it. Default: none. */
  layer: v.optional(v.pipe(v.string(), v.minLength(1, "expected a directory path"))),
  process: v.optional(
    v.strictObject({
      /** The command and its arguments. Default ["/bin/sh"]. */
      args: v.optional(v.pipe(v.array(v.string()), v.minLength(1, "expected at least the command")), ["/bin/sh"]),
      /** Working directory inside the box. Default "/". */
      cwd: v.optional(absolutePath, "/"),
      /** The box's whole environment, a table or ["NAME=value", ...]; the host's is never inherited. Default { PATH = "<standard>" }, and HOME. */
      env: v.optional(
        v.union(
          [
            // The array first: a record would take an array too, keyed "0", "1", ...
            v.pipe(
              v.array(v.pipe(v.string(), v.regex(/^[^=\0]+=/, 'expected "NAME=value"'))),
              v.transform((list) => Object.fromEntries(list.map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)]))),
            ),
            v.pipe(
              v.custom<Record<string, unknown>>((x) => typeof x === "object" && x !== null && !Array.isArray(x)),
              v.record(v.pipe(v.string(), v.regex(/^[^=\0]+$/, "expected a name without = or NUL")), v.string()),
            ),
          ],
          'expected a table (FOO = "bar") or an array of "NAME=value" strings',
        ),
      ),
      /** uid:gid inside the box. Default "0:0". */
      user: v.optional(
        v.pipe(
          v.string(),
          v.regex(/^\d+:\d+$/, 'expected "uid:gid", e.g. "0:0"'),
          v.check((s) => userTextProblem(s) === null, 'expected ids 0 to 4294967294 (4294967295 is (uid_t)-1, which setresuid(2) reads as "unchanged")'),
        ),
        "0:0",
      ),
      /** Run a small init as PID 1 that reaps zombies and forwards signals. Default: when the box has a terminal (and a PID namespace). */
      init: v.optional(v.boolean()),
      /** A pseudo-terminal for the box (job control, Ctrl-C and Ctrl-Z inside). Default: when nsrun's stdin and stdout are both terminals. */
      terminal: v.optional(v.boolean()),
    }),
    {},
  ),
  namespaces: v.optional(
    v.strictObject({
      /** Default: true for an ordinary user, false for root. */
      user: v.optional(v.boolean()),
      mount: v.optional(v.boolean(), true),
      pid: v.optional(v.boolean(), true),
      uts: v.optional(v.boolean(), true),
      ipc: v.optional(v.boolean(), true),
      /** Default true: the box's own network namespace (false is [network] mode = "host"). */
      net: v.optional(v.boolean()),
      cgroup: v.optional(v.boolean(), true),
      /** A time namespace: true, or a table of clock offsets in seconds, { monotonic = 86400, boottime = 86400 }, which implies one. */
      time: v.optional(timeKey, false),
    }),
    {},
  ),
  /** The box's user namespace's id maps (with [namespaces] user = true, the default for ordinary users). */
  user_namespace: v.optional(
    v.strictObject({
      /** "auto": subordinate id ranges (/etc/subuid, /etc/subgid) when the user has them, else the user alone as 0; "single": the user alone as 0. Default "auto". */
      mode: v.optional(v.picklist(["auto", "single"], 'expected "auto" or "single"'), "auto"),
      /** Explicit maps instead of the mode's: "inside outside count" lines, within what the user may map. */
      uid_map: v.optional(v.array(idMapLine)),
      gid_map: v.optional(v.array(idMapLine)),
    }),
    {},
  ),
  /** The box's network. */
  network: v.optional(
    v.strictObject({
      /** "none": loopback only; "host": the host's network, shared; "nat": outbound connections and forwarded ports through pasta or slirp4netns. Default "none" ("host" with [namespaces] net = false). */
      mode: v.optional(v.picklist(["none", "host", "nat"], 'expected "none", "host" or "nat"')),
      /** With "nat": the program that connects the box. "auto": pasta when installed, else slirp4netns. Default "auto". */
      helper: v.optional(v.picklist(["auto", "pasta", "slirp4netns"], 'expected "auto", "pasta" or "slirp4netns"')),
      /** With "nat": ports forwarded from the host into the box, "[HOST_ADDRESS:]HOST_PORT[:BOX_PORT][/tcp|/udp]". Default []. */
      ports: v.optional(v.array(v.string()), []),
      /** With "nat": the box may reach the host's loopback (127.0.0.1 services) through the gateway address. Default false. */
      host_loopback: v.optional(v.boolean()),
    }),
    {},
  ),
  mounts: v.optional(v.array(MountSchema), []),
  /** Resource limits: a cgroup of the box's own, and rlimits. Default: core = 0 only. */
  limits: v.optional(LimitsSchema, {}),
  /** What the box's process may do: capabilities, seccomp, masked and read-only paths. */
  security: v.optional(SecuritySchema, {}),
});

export type Config = v.InferOutput<typeof ConfigSchema>;
export type MountConfig = v.InferOutput<typeof MountSchema>;

/** A validated config plus where it came from, so relative paths and errors can name the file. */
export interface LoadedConfig {
  config: Config;
  file: string;
  dir: string;
}

export function loadConfig(file: string): LoadedConfig {
  const { raw, dir } = readRawConfig(file);
  return { config: parseConfig(raw, file), file, dir };
}

/** box.toml as TOML gives it, before validation: flags (cmd/run.ts) are applied to this form. */
export function readRawConfig(file: string): { raw: Record<string, unknown>; dir: string; path: string; text: string } {
  const path = resolve(file);
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? "error";
    throw new ConfigError(file, null, `cannot read the config file (${code})`);
  }
  let raw: unknown;
  try {
    raw = Bun.TOML.parse(text);
  } catch (e) {
    // A deeply nested value overflows the parser's stack; say what it is rather than how it failed.
    if (e instanceof RangeError) throw new ConfigError(file, null, "not valid TOML: values nested too deeply");
    throw new ConfigError(file, null, `not valid TOML: ${(e as Error).message}`);
  }
  return { raw: raw as Record<string, unknown>, dir: dirname(path), path, text };
}

export function parseConfig(raw: unknown, file: string): Config {
  const result = v.safeParse(ConfigSchema, raw);
  if (!result.success) {
    // An unknown key first: a misspelt required key is reported as the typo, not as "missing".
    const issue = result.issues.find((i) => i.expected === "never") ?? result.issues[0];
    throw new ConfigError(file, keyPath(issue.path), describe(issue));
  }
  const config = result.output;
  checkMounts(config, file);
  return config;
}

/** `mounts[2].target`, the way a user would find the key in the file. */
export function keyPath(path: v.BaseIssue<unknown>["path"]): string | null {
  if (!path?.length) return null;
  let out = "";
  for (const item of path) {
    const key = (item as { key: unknown }).key;
    out += typeof key === "number" ? `[${key}]` : out ? `.${String(key)}` : String(key);
  }
  return out;
}

function describe(issue: v.BaseIssue<unknown>): string {
  if (issue.expected === "never") return "unknown key; check its spelling against the config reference";
  if (issue.kind === "schema") {
    if (issue.received === "undefined") return `missing; expected ${issue.expected}`;
    return `expected ${issue.expected}, got ${issue.received}`;
  }
  if (issue.type === "min_length" || issue.type === "check" || issue.type === "union" || issue.type === "min_value") return `${issue.message}, got ${JSON.stringify(issue.input)}`;
  return `${issue.message}, got ${issue.received}`;
}

/** Rules between keys that a per-key schema cannot say. */
function checkMounts(config: Config, file: string): void {
  config.mounts.forEach((m, i) => {
    if (m.type === "bind" && m.source === undefined)
      throw new ConfigError(file, `mounts[${i}].source`, 'missing; a mount of type = "bind" needs a source path');
    if (m.type !== "bind" && m.source !== undefined)
      throw new ConfigError(file, `mounts[${i}].source`, `only a bind mount has a source; type = "${m.type}"`);
    if (m.target.split("/").includes("..") || posix.normalize(m.target).replace(/\/+$/, "") === "")
      throw new ConfigError(file, `mounts[${i}].target`, `expected a path below / without "..", got "${m.target}"`);
    if (m.readonly && m.options.includes("rw"))
      throw new ConfigError(file, `mounts[${i}].options`, '"rw" contradicts readonly = true');
    // One spelling per target, so "/tmp/", "//tmp" and "/tmp/." all replace the default /tmp.
    m.target = posix.normalize(m.target).replace(/\/+$/, "");
  });
}
