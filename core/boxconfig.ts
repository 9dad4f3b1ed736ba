// Where a box's config comes from: box.toml, the default box, and the command line's flags
// (`nsrun run --rootfs DIR --bind A:B -e K=V ... CMD`), which override the keys they name. All three
// meet as raw TOML-shaped data, then go through the one schema (core/config.ts); an image named as
// the rootfs ("image:NAME", --image) adds its defaults where the config has none.
import { readFileSync, realpathSync } from "node:fs";
import { resolve } from "node:path";
import { type Config, type LoadedConfig, parseConfig, readRawConfig } from "./config";
import { ConfigError } from "./errors";
import { readInRootfs } from "./hostpath";
import type { OwnersRecord } from "./image/owners";

export interface BoxFlags {
  rootfs?: string;
  image?: string;
  bind?: string[];
  roBind?: string[];
  tmpfs?: string[];
  env?: string[];
  envFile?: string;
  hostname?: string;
  cwd?: string;
  user?: string;
  net?: string;
  publish?: string[];
  memory?: string;
  pids?: string;
  cpus?: string;
  ephemeral?: boolean;
  readonly?: boolean;
  init?: boolean;
}

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
export function defaultBoxRaw(cwd: string, env: Record<string, string | undefined>): Raw {
  const hide = new Set(["/run"]);
  for (const dir of ["/var/run", env.XDG_RUNTIME_DIR]) {
    if (!dir?.startsWith("/")) continue;
    try {
      const real = realpathSync(dir);
      if (real !== "/run" && !real.startsWith("/run/")) hide.add(real);
    } catch {
      // nothing there to hide
    }
  }
  return { rootfs: "/", readonly: true, process: { cwd }, mounts: [...hide].map((target) => ({ type: "tmpfs", target, options: ["mode=755"] })) };
}

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
export async function assembleConfig(o: { configFile?: string; flags: BoxFlags; command: string[]; cwd: string; env: Record<string, string | undefined> }): Promise<Assembled> {
  const f = o.flags;
  const fromFlags = f.rootfs !== undefined || f.image !== undefined;
  let raw: Raw;
  let dir = o.cwd;
  let file: string;
  if (o.configFile) {
    ({ raw, dir } = readRawConfig(o.configFile));
    file = o.configFile;
  } else if (fromFlags) {
    raw = {};
    file = "(command line)";
  } else {
    raw = defaultBoxRaw(o.cwd, o.env);
    file = "(default box)";
  }
  const abs = (p: string) => resolve(o.cwd, p);
  const fail = (flag: string, problem: string): never => {
    throw new ConfigError(file, null, `${flag}: ${problem}`);
  };
  if (f.rootfs !== undefined) raw.rootfs = abs(f.rootfs);
  if (f.image !== undefined) raw.rootfs = `image:${f.image}`;
  const mounts = Array.isArray(raw.mounts) ? (raw.mounts as Raw[]) : [];
  const bind = (spec: string, readonly: boolean) => {
    const [src, dst, ...rest] = spec.split(":");
    if (!src || rest.length) fail(readonly ? "--ro-bind" : "--bind", `expected SRC or SRC:DST, got ${JSON.stringify(spec)}`);
    mounts.push({ type: "bind", source: abs(src), target: dst ?? abs(src), ...(readonly ? { readonly: true } : {}) });
  };
  for (const spec of f.bind ?? []) bind(spec, false);
  for (const spec of f.roBind ?? []) bind(spec, true);
  for (const target of f.tmpfs ?? []) mounts.push({ type: "tmpfs", target });
  if (mounts.length) raw.mounts = mounts;
  const proc = table(raw, "process");
  const image = typeof raw.rootfs === "string" && raw.rootfs.startsWith("image:") ? raw.rootfs.slice(6) : null;
  if (f.envFile !== undefined || f.env?.length) {
    // With an image, variables of its own fill in below (applyImage): no default PATH over its PATH.
    const env = proc.env === undefined && image !== null ? {} : envTable(proc.env);
    for (const line of f.envFile !== undefined ? readEnvFile(abs(f.envFile), fail) : []) set(env, line, "--env-file", fail);
    for (const kv of f.env ?? []) set(env, kv, "--env", fail);
    proc.env = env;
  }
  if (f.cwd !== undefined) proc.cwd = f.cwd;
  if (f.user !== undefined) proc.user = f.user.includes(":") ? f.user : `${f.user}:${f.user}`;
  if (f.init !== undefined) proc.init = f.init;
  if (o.command.length) proc.args = o.command;
  if (f.hostname !== undefined) raw.hostname = f.hostname;
  if (f.ephemeral !== undefined) raw.ephemeral = f.ephemeral;
  if (f.readonly !== undefined) raw.readonly = f.readonly;
  if (f.net !== undefined || f.publish?.length) {
    const net = table(raw, "network");
    if (f.net !== undefined) net.mode = f.net;
    else if (!net.mode) net.mode = "nat"; // -p alone: a published port needs "nat"
    if (f.publish?.length) net.ports = [...(Array.isArray(net.ports) ? (net.ports as string[]) : []), ...f.publish];
  }
  if (f.memory !== undefined || f.pids !== undefined || f.cpus !== undefined) {
    const limits = table(raw, "limits");
    if (f.memory !== undefined) limits.memory = f.memory;
    if (f.pids !== undefined) limits.pids = numberFlag("--pids", f.pids, fail);
    if (f.cpus !== undefined) limits.cpu = numberFlag("--cpus", f.cpus, fail);
  }
  if (Object.keys(proc).length === 0) delete raw.process;
  const imageOwners = image !== null ? await applyImage(raw, image, file) : null;
  return { loaded: { config: parseConfig(raw, file), file, dir }, isDefault: file === "(default box)", image, imageOwners };
}

function envTable(env: unknown): Record<string, string> {
  if (Array.isArray(env)) return Object.fromEntries((env as string[]).map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)]));
  return { ...((env as Record<string, string>) ?? { PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" }) };
}

function set(env: Record<string, string>, kv: string, flag: string, fail: (flag: string, problem: string) => never): void {
  const eq = kv.indexOf("=");
  if (eq <= 0) fail(flag, `expected NAME=value, got ${JSON.stringify(kv)}`);
  env[kv.slice(0, eq)] = kv.slice(eq + 1);
}

function readEnvFile(path: string, fail: (flag: string, problem: string) => never): string[] {
  let text = "";
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    fail("--env-file", `cannot read ${JSON.stringify(path)} (${(e as NodeJS.ErrnoException).code})`);
  }
  return text.split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("#"));
}

function numberFlag(flag: string, text: string, fail: (flag: string, problem: string) => never): number {
  const n = Number(text);
  return text.trim() !== "" && Number.isFinite(n) ? n : fail(flag, `expected a number, got ${JSON.stringify(text)}`);
}

/** An image as the rootfs: its tree, and its Env, Entrypoint/Cmd, WorkingDir and User where the config has none. Returns its owners. */
async function applyImage(raw: Raw, name: string, file: string): Promise<OwnersRecord> {
  // Loaded only for a box that names an image: the image store is no part of a plain box's start.
  const { resolveImage } = await import("./image/store");
  let image: ReturnType<typeof resolveImage>;
  try {
    image = resolveImage(name);
  } catch (e) {
    throw new ConfigError(file, "rootfs", (e as Error).message);
  }
  raw.rootfs = image.rootfs;
  const proc = table(raw, "process");
  const c = image.config;
  if (proc.args === undefined && (c.entrypoint.length || c.cmd.length)) proc.args = [...c.entrypoint, ...c.cmd];
  // The image's Env is the base; the config's and the flags' variables go over it, name by name (as
  // podman's --env does), so `-e FOO=1` keeps the image's PATH.
  if (c.env.length) proc.env = proc.env === undefined ? c.env : { ...envTable(c.env), ...envTable(proc.env) };
  if (proc.cwd === undefined && c.workingDir) proc.cwd = c.workingDir;
  if (proc.user === undefined && c.user) proc.user = numericUser(c.user, image.rootfs);
  return image.owners;
}

/** An image's User ("1000", "1000:100", "app", "app:staff") as "uid:gid", looked up in its own passwd and group. */
function numericUser(user: string, rootfs: string): string {
  const [u, g] = user.split(":");
  const lookup = (file: string, name: string, field: number) =>
    /^\d+$/.test(name) ? name : (readInRootfs(rootfs, file) ?? "").split("\n").find((l) => l.split(":")[0] === name)?.split(":")[field];
  const uid = lookup("/etc/passwd", u, 2) ?? "0";
  const gid = g !== undefined ? (lookup("/etc/group", g, 2) ?? "0") : ((readInRootfs(rootfs, "/etc/passwd") ?? "").split("\n").find((l) => l.split(":")[2] === uid)?.split(":")[3] ?? uid);
  return `${uid}:${gid}`;
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
