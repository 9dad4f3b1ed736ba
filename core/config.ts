// Stage 1: load and validate box.toml. Every key is checked; an unknown key is an error, because a
// typo (`readonyl = true`) must never silently weaken isolation.
import { readFileSync } from "node:fs";
import { dirname, posix, resolve } from "node:path";
import * as v from "valibot";
import { ConfigError } from "./errors";

export const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const absolutePath = v.pipe(
  v.string(),
  v.check((s) => s.startsWith("/"), "expected an absolute path (starting with /)"),
  v.check((s) => !s.includes("\0"), "a path cannot contain NUL"),
);

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
  process: v.optional(
    v.strictObject({
      /** The command and its arguments. Default ["/bin/sh"]. */
      args: v.optional(v.pipe(v.array(v.string()), v.minLength(1, "expected at least the command")), ["/bin/sh"]),
      /** Working directory inside the box. Default "/". */
      cwd: v.optional(absolutePath, "/"),
      /** The box's whole environment; the host's is never inherited. Default { PATH = "<standard>" }. */
      env: v.optional(v.record(v.pipe(v.string(), v.regex(/^[^=\0]+$/, "expected a name without = or NUL")), v.string())),
      /** uid:gid inside the box. Default "0:0". */
      user: v.optional(v.pipe(v.string(), v.regex(/^\d+:\d+$/, 'expected "uid:gid", e.g. "0:0"')), "0:0"),
      /** Run a small init as PID 1 that reaps zombies and forwards signals. Default false. */
      init: v.optional(v.boolean(), false),
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
      net: v.optional(v.boolean(), true),
      cgroup: v.optional(v.boolean(), true),
      time: v.optional(v.boolean(), false),
    }),
    {},
  ),
  mounts: v.optional(v.array(MountSchema), []),
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
    throw new ConfigError(file, null, `not valid TOML: ${(e as Error).message}`);
  }
  return { config: parseConfig(raw, file), file, dir: dirname(path) };
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
  if (issue.type === "min_length") return issue.message;
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
