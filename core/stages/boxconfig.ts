// Where a box's config comes from: box.toml, the default box, and the command line's flags
// (`nsrun run --rootfs DIR --bind A:B -e K=V ... CMD`), which override the keys they name. All three
// meet as raw TOML-shaped data, then go through the one schema (core/stages/config.ts); an image named as
// the rootfs ("image:NAME", --image) adds its defaults where the config has none.
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { type Config, DEFAULT_PATH, type LoadedConfig, parseConfig, readRawConfig } from "./config";
import { ConfigError } from "../errors";
import { canonicalHostPath, HostPathError, realpathOrNull } from "./hostpath";
import { lookupUserIn, MAX_ID, UserDbError } from "./userdb";
import { userTextProblem } from "./ids";
import type { OwnersRecord } from "../image/owners";
import { DURATION_EXPECTED, parseDuration } from "../verdict";

export interface BoxFlags {
  rootfs?: string;
  image?: string;
  /** --bind, --ro-bind, -v/--volume and --tmpfs, in the order typed: mounts are made in this order. */
  mounts?: Array<[flag: MountFlag, spec: string]>;
  env?: string[];
  envFile?: string;
  hostname?: string;
  cwd?: string;
  user?: string;
  net?: string;
  publish?: string[];
  /** --net-host-loopback: [network] host_loopback = true. */
  netHostLoopback?: boolean;
  memory?: string;
  pids?: string;
  cpus?: string;
  cpuTime?: string;
  wallTime?: string;
  ephemeral?: boolean;
  readonly?: boolean;
  layer?: string;
  init?: boolean;
  /** -t / --no-tty: [process] terminal, so that --print-config keeps it. */
  terminal?: boolean;
}

export type MountFlag = "bind" | "ro-bind" | "volume" | "tmpfs";

type Raw = Record<string, unknown>;
const table = (raw: Raw, key: string): Raw => {
  const t = raw[key];
  if (t && typeof t === "object" && !Array.isArray(t)) return t as Raw;
  const made: Raw = {};
  raw[key] = made;
  return made;
};

/**
 * The default box, as box.toml would say it: the host's root read-only, fresh /proc, a minimal
 * /dev, private /tmp, loopback only, hostname "nsrun", the caller's cwd; the host's sockets hidden
 * (/run, /var/run and $XDG_RUNTIME_DIR are empty tmpfs: a read-only bind does not stop connect(2)).
 */
export function defaultBoxRaw(cwd: string, env: Record<string, string | undefined>, record?: (read: AssemblyRead) => void): Raw {
  const hide = new Set(["/run"]);
  for (const dir of ["/var/run", env.XDG_RUNTIME_DIR]) {
    if (!dir?.startsWith("/")) continue;
    const real = realpathOrNull(dir); // null: nothing there to hide
    record?.({ kind: "realpath", path: dir, result: real });
    if (real !== null && real !== "/run" && !real.startsWith("/run/")) hide.add(real);
  }
  return { rootfs: "/", readonly: true, process: { cwd }, mounts: [...hide].map((target) => ({ type: "tmpfs", target, options: ["mode=755"] })) };
}

/**
 * What assembling a config read beyond the command line and cwd, in order: a file's text, what a
 * path resolved to (null: it did not exist), an environment variable (null: unset). "other" is
 * anything else (an image, a user looked up by name in the rootfs): the config cache
 * (core/host/configcache.ts) keeps no config that read one.
 */
export type AssemblyRead =
  | { kind: "file"; path: string; text: string }
  | { kind: "realpath"; path: string; result: string | null }
  | { kind: "env"; name: string; value: string | null }
  | { kind: "other"; what: string };

export interface Assembled {
  loaded: LoadedConfig;
  /** The default box: its cwd falls back to / when the caller's is not inside. */
  isDefault: boolean;
  /** The image the rootfs comes from (rootfs = "image:NAME", --image), or null. */
  image: string | null;
  /** What the image's host owners mean (core/image/store.ts), or null without an image. */
  imageOwners: OwnersRecord | null;
}

/** box.toml (or the default box), then the flags, then the image's defaults: one validated config. */
export async function assembleConfig(o: {
  configFile?: string;
  flags: BoxFlags;
  command: string[];
  cwd: string;
  env: Record<string, string | undefined>;
  /** Told each thing read beyond the arguments (the config cache keys on them). */
  record?: (read: AssemblyRead) => void;
}): Promise<Assembled> {
  const f = o.flags;
  const fromFlags = f.rootfs !== undefined || f.image !== undefined;
  let raw: Raw;
  let dir = o.cwd;
  let file: string;
  if (o.configFile) {
    const read = readRawConfig(o.configFile);
    ({ raw, dir } = read);
    o.record?.({ kind: "file", path: read.path, text: read.text });
    file = o.configFile;
  } else if (fromFlags) {
    raw = {};
    file = "(command line)";
  } else {
    raw = defaultBoxRaw(o.cwd, o.env, o.record);
    file = "(default box)";
  }
  const abs = (p: string) => resolve(o.cwd, p);
  const fail = (flag: string, problem: string): never => {
    throw new ConfigError(file, null, `${flag}: ${problem}`);
  };
  if (f.rootfs === "") fail("--rootfs", "expected a directory path, got \"\"");
  if (f.rootfs !== undefined) raw.rootfs = abs(f.rootfs);
  if (f.image !== undefined) raw.rootfs = `image:${f.image}`;
  const mounts = Array.isArray(raw.mounts) ? (raw.mounts as Raw[]) : [];
  // In the order typed, as bubblewrap does: `--ro-bind src:/w --bind out:/w/out` leaves /w/out writable.
  for (const [flag, spec] of f.mounts ?? []) mounts.push(mountFromFlag(flag, spec, abs, fail));
  if (mounts.length) raw.mounts = mounts;
  const proc = table(raw, "process");
  const image = typeof raw.rootfs === "string" && raw.rootfs.startsWith("image:") ? raw.rootfs.slice(6) : null;
  let flagsOnlyEnv = false;
  if (f.envFile !== undefined || f.env?.length) {
    // With an image, variables of its own fill in below (applyImage): no default PATH over its PATH.
    // An image without an Env gets the standard PATH there, as it would without these flags.
    flagsOnlyEnv = proc.env === undefined && image !== null;
    const env = flagsOnlyEnv ? {} : envTable(proc.env);
    if (f.envFile !== undefined) Object.assign(env, readEnvFile(abs(f.envFile), f.envFile, fail, o.record));
    for (const kv of f.env ?? []) set(env, kv, "--env", fail);
    proc.env = env;
  }
  if (f.cwd !== undefined) proc.cwd = f.cwd;
  if (f.user !== undefined) {
    // Numbers are checked here (4294967295 is (uid_t)-1); a name is looked up in the rootfs below.
    const problem = /^[\d:]+$/.test(f.user) || /^-/.test(f.user) ? userTextProblem(f.user) : null;
    if (problem) fail("--user", problem);
    proc.user = f.user;
  }
  if (f.init !== undefined) proc.init = f.init;
  if (f.terminal !== undefined) proc.terminal = f.terminal;
  if (o.command.length) proc.args = o.command;
  if (f.hostname !== undefined) raw.hostname = f.hostname;
  if (f.ephemeral !== undefined) raw.ephemeral = f.ephemeral;
  if (f.readonly !== undefined) raw.readonly = f.readonly;
  if (f.layer === "") fail("--layer", "expected a directory path, got \"\"");
  if (f.layer !== undefined) raw.layer = abs(f.layer);
  if (f.net !== undefined || f.publish?.length || f.netHostLoopback !== undefined) {
    const net = table(raw, "network");
    if (f.net !== undefined) net.mode = f.net;
    else if (!net.mode && (f.publish?.length || f.netHostLoopback)) net.mode = "nat"; // -p or --net-host-loopback alone: they need "nat"
    if (f.publish?.length) net.ports = [...(Array.isArray(net.ports) ? (net.ports as string[]) : []), ...f.publish];
    if (f.netHostLoopback !== undefined) net.host_loopback = f.netHostLoopback;
  }
  if (f.memory !== undefined || f.pids !== undefined || f.cpus !== undefined) {
    const limits = table(raw, "limits");
    if (f.memory !== undefined) limits.memory = f.memory;
    if (f.pids !== undefined) limits.pids = numberFlag("--pids", f.pids, fail);
    if (f.cpus !== undefined) limits.cpu = numberFlag("--cpus", f.cpus, fail);
  }
  for (const [flag, key, text] of [["--cpu-time", "cpu_time", f.cpuTime], ["--wall-time", "wall_time", f.wallTime]] as const) {
    if (text === undefined) continue;
    if (parseDuration(text) === null) fail(flag, `${DURATION_EXPECTED}, got ${JSON.stringify(text)}`);
    table(raw, "limits")[key] = text;
  }
  if (Object.keys(proc).length === 0) delete raw.process;
  if (image !== null) o.record?.({ kind: "other", what: `image ${JSON.stringify(image)}` });
  const imageOwners = image !== null ? await applyImage(raw, image, file, flagsOnlyEnv) : null;
  // A user by name (-u alice, user = "alice") is the rootfs's: looked up in its passwd and group.
  if (typeof proc.user === "string" && !/^\d+:\d+$/.test(proc.user) && typeof raw.rootfs === "string" && raw.rootfs !== "") {
    o.record?.({ kind: "other", what: `user ${JSON.stringify(proc.user)} looked up in the rootfs` });
    proc.user = boxUser(resolve(dir, raw.rootfs), proc.user, file, f.user !== undefined ? "--user" : "process.user");
  }
  return { loaded: { config: parseConfig(raw, file), file, dir }, isDefault: file === "(default box)", image, imageOwners };
}

function envTable(env: unknown): Record<string, string> {
  if (Array.isArray(env)) return Object.fromEntries((env as string[]).map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)]));
  return { ...((env as Record<string, string>) ?? { PATH: DEFAULT_PATH }) };
}

function set(env: Record<string, string>, kv: string, flag: string, fail: (flag: string, problem: string) => never): void {
  const eq = kv.indexOf("=");
  if (eq <= 0) fail(flag, `expected NAME=value, got ${JSON.stringify(kv)}`);
  env[kv.slice(0, eq)] = kv.slice(eq + 1);
}

/** A variable's name as a shell, podman and docker take it. */
const VARIABLE_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * An env file: one NAME=value a line, the value as written (quotes included); empty lines and lines
 * starting with # are skipped. A line that is not NAME=value with a valid name is refused with its
 * line number: `export X=1` or `BAD NAME=2` would otherwise become a variable with a space in its name.
 */
export function readEnvFile(path: string, shown: string, fail: (flag: string, problem: string) => never, record?: (read: AssemblyRead) => void): Record<string, string> {
  let text = "";
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    fail("--env-file", `cannot read ${JSON.stringify(path)} (${(e as NodeJS.ErrnoException).code})`);
  }
  record?.({ kind: "file", path, text });
  const env: Record<string, string> = {};
  text.split("\n").forEach((raw, i) => {
    const line = raw.replace(/\r$/, "").trimStart();
    if (!line.trim() || line.startsWith("#")) return;
    const eq = line.indexOf("=");
    const where = `${shown}:${i + 1}`;
    if (eq === -1) fail("--env-file", `${where}: expected NAME=value, got ${JSON.stringify(line)} (nsrun takes no variable from the host's environment)`);
    const name = line.slice(0, eq);
    if (/^export\s/.test(name)) fail("--env-file", `${where}: ${JSON.stringify(name)} is not a variable name: the file is read as NAME=value lines, not by a shell; drop "export"`);
    if (!VARIABLE_NAME.test(name)) fail("--env-file", `${where}: ${JSON.stringify(name)} is not a variable name (letters, digits and _, not starting with a digit)`);
    env[name] = line.slice(eq + 1);
  });
  return env;
}

/** One mount flag as a [[mounts]] entry. */
function mountFromFlag(flag: MountFlag, spec: string, abs: (p: string) => string, fail: (flag: string, problem: string) => never): Raw {
  if (flag === "tmpfs") return { type: "tmpfs", target: spec };
  if (flag === "volume") return volume(spec, abs, fail);
  const [src, dst, ...rest] = spec.split(":");
  if (!src || rest.length) fail(`--${flag}`, `expected SRC or SRC:DST, got ${JSON.stringify(spec)}`);
  return { type: "bind", source: abs(src), target: dst ?? abs(src), ...(flag === "ro-bind" ? { readonly: true } : {}) };
}

/**
 * -v/--volume HOST:BOX[:OPTIONS], as podman's and docker's: a bind mount. HOST must be a path (a
 * word without / would be a named volume there, which nsrun does not have); OPTIONS, comma
 * separated, are ro or rw.
 */
function volume(spec: string, abs: (p: string) => string, fail: (flag: string, problem: string) => never): Raw {
  const parts = spec.split(":");
  const [src, dst, opts] = parts;
  const usage = `expected HOST:BOX or HOST:BOX:ro (-v is --volume, as in podman; nsrun's debug output is --verbose), got ${JSON.stringify(spec)}`;
  if (parts.length < 2 || parts.length > 3 || !src || !dst) fail("--volume", usage);
  if (!src.startsWith("/") && !src.startsWith(".")) fail("--volume", `${JSON.stringify(src)}: nsrun has no named volumes; give a host path (/abs/path or ./relative)`);
  if (!dst.startsWith("/")) fail("--volume", `${JSON.stringify(dst)}: expected an absolute path inside the box`);
  let readonly = false;
  for (const o of opts === undefined ? [] : opts.split(",")) {
    if (o === "ro") readonly = true;
    else if (o === "rw") readonly = false;
    else fail("--volume", `unknown option ${JSON.stringify(o)} in ${JSON.stringify(spec)}; nsrun takes ro or rw`);
  }
  return { type: "bind", source: abs(src), target: dst, ...(readonly ? { readonly: true } : {}) };
}

function numberFlag(flag: string, text: string, fail: (flag: string, problem: string) => never): number {
  const n = Number(text);
  return text.trim() !== "" && Number.isFinite(n) ? n : fail(flag, `expected a number, got ${JSON.stringify(text)}`);
}

/** An image as the rootfs: its tree, and its Env, Entrypoint/Cmd, WorkingDir and User where the config has none. Returns its owners. */
async function applyImage(raw: Raw, name: string, file: string, flagsOnlyEnv: boolean): Promise<OwnersRecord> {
  // Loaded only for a box that names an image: the image store is no part of a plain box's start.
  const { resolveImage } = await import("../image/store");
  let image: ReturnType<typeof resolveImage>;
  try {
    image = resolveImage(name);
  } catch (e) {
    throw new ConfigError(file, "rootfs", (e as Error).message);
  }
  raw.rootfs = image.rootfs;
  // The image is never written: a box on it gets a writable layer of its own, in memory and gone
  // when the box ends (ephemeral), or kept in the folder `layer` names.
  if (raw.layer === undefined) {
    if (raw.ephemeral === false) throw new ConfigError(file, "ephemeral", `false would let the box write into image ${JSON.stringify(image.name)}; a box on an image always gets a layer of its own: to keep its changes, name a folder for them with layer = "DIR" (--layer DIR)`);
    raw.ephemeral = true;
  }
  const proc = table(raw, "process");
  const c = image.config;
  if (proc.args === undefined && (c.entrypoint.length || c.cmd.length)) proc.args = [...c.entrypoint, ...c.cmd];
  // The image's Env is the base; the config's and the flags' variables go over it, name by name (as
  // podman's --env does), so `-e FOO=1` keeps the image's PATH.
  if (c.env.length) proc.env = proc.env === undefined ? c.env : { ...envTable(c.env), ...envTable(proc.env) };
  else if (flagsOnlyEnv) proc.env = { PATH: DEFAULT_PATH, ...envTable(proc.env) };
  if (proc.cwd === undefined && c.workingDir) proc.cwd = c.workingDir;
  // The image's User, fail closed: a name its passwd does not list refuses the box (as podman does).
  if (proc.user === undefined && c.user) proc.user = boxUser(image.rootfs, c.user, `image ${JSON.stringify(image.name)}`, "User", "the image's");
  return image.owners;
}

/** A user spec ("1000", "1000:100", "app", "app:staff") as "uid:gid", looked up in the rootfs's own passwd and group. */
function boxUser(rootfs: string, spec: string, file: string, key: string, whose?: string): string {
  let root: string;
  try {
    root = canonicalHostPath(rootfs);
  } catch (e) {
    // A rootfs that cannot be used is the plan's error to report (naming `rootfs`); a bare number
    // needs nothing of it, a name cannot be found without it.
    if (/^\d+$/.test(spec) && Number(spec) <= MAX_ID) return `${spec}:${spec}`;
    throw new ConfigError(file, key, `${JSON.stringify(spec)}: cannot look up the user in ${JSON.stringify(rootfs)}: ${e instanceof HostPathError ? e.message : ((e as NodeJS.ErrnoException).code ?? (e as Error).message)}`);
  }
  try {
    const { uid, gid } = lookupUserIn(root, spec, whose);
    return `${uid}:${gid}`;
  } catch (e) {
    if (!(e instanceof UserDbError)) throw e;
    throw new ConfigError(file, key, `${JSON.stringify(spec)}: ${e.message}`);
  }
}

// ---- --print-config ----------------------------------------------------------------------------

const TABLE_ORDER = ["process", "namespaces", "user_namespace", "network", "limits", "security"] as const;

/** A config as box.toml: what `nsrun run --print-config` prints, so a one-liner can grow into a file. */
export function toToml(config: Config): string {
  const value = (v: unknown): string => {
    if (typeof v === "string") return JSON.stringify(v);
    if (typeof v === "number" || typeof v === "boolean") return String(v);
    if (Array.isArray(v)) return `[${v.map(value).join(", ")}]`;
    if (v && typeof v === "object") return `{ ${Object.entries(v).map(([k, x]) => `${key(k)} = ${value(x)}`).join(", ")} }`;
    return '""';
  };
  const key = (k: string) => (/^[A-Za-z0-9_-]+$/.test(k) ? k : JSON.stringify(k));
  const lines: string[] = [];
  const scalars = (obj: Record<string, unknown>) => {
    for (const [k, v] of Object.entries(obj)) if (v !== undefined && !(v && typeof v === "object" && !Array.isArray(v) && TABLE_ORDER.includes(k as never)) && k !== "mounts") lines.push(`${key(k)} = ${value(v)}`);
  };
  scalars(config as unknown as Record<string, unknown>);
  for (const name of TABLE_ORDER) {
    const t = (config as unknown as Record<string, Record<string, unknown>>)[name];
    const entries = Object.entries(t ?? {}).filter(([, v]) => v !== undefined);
    if (!entries.length) continue;
    lines.push("", `[${name}]`);
    for (const [k, v] of entries) lines.push(`${key(k)} = ${value(v)}`);
  }
  for (const m of config.mounts) {
    lines.push("", "[[mounts]]");
    for (const [k, v] of Object.entries(m)) if (v !== undefined) lines.push(`${key(k)} = ${value(v)}`);
  }
  return `${lines.join("\n")}\n`;
}
