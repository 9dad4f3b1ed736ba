// Argument definitions shared by the root command and `run`, and the parser nsrun uses for them.
// citty renders --help and dispatches subcommands; starting a box parses its arguments here, so
// the hot path loads neither citty nor consola.
import type { ArgsDef } from "citty";
import { NsrunError } from "../ffi/error";

export const runArgs = {
  config: { type: "string", alias: "c", description: "The box's TOML config; the flags below override its keys (without either: the default box)", valueHint: "box.toml" },
  rootfs: { type: "string", description: "The box's root filesystem (rootfs)", valueHint: "DIR" },
  image: { type: "string", description: "An image from the store as the rootfs, with its defaults (rootfs = \"image:NAME\")", valueHint: "NAME" },
  bind: { type: "string", description: "Bind a host path in, read-write ([[mounts]] type = \"bind\"); repeatable", valueHint: "SRC[:DST]" },
  "ro-bind": { type: "string", description: "The same, read-only", valueHint: "SRC[:DST]" },
  tmpfs: { type: "string", description: "A tmpfs at DST; repeatable", valueHint: "DST" },
  volume: { type: "string", alias: "v", description: "Bind a host path in, as podman's -v: HOST a path (/abs or ./rel), options ro or rw; repeatable", valueHint: "HOST:BOX[:ro]" },
  env: { type: "string", alias: "e", description: "Set a variable ([process] env); repeatable", valueHint: "NAME=value" },
  "env-file": { type: "string", description: "Variables from a file, one NAME=value a line", valueHint: "FILE" },
  hostname: { type: "string", description: "The box's hostname", valueHint: "NAME" },
  cwd: { type: "string", alias: "w", description: "The working directory in the box", valueHint: "DIR" },
  user: { type: "string", alias: "u", description: "The box's user ([process] user); names are the rootfs's", valueHint: "USER[:GROUP]" },
  net: { type: "string", description: "none | host | nat ([network] mode)", valueHint: "MODE" },
  publish: { type: "string", alias: "p", description: "Forward a host port into the box (implies --net nat); repeatable", valueHint: "[IP:]HOST:BOX[/udp]" },
  "net-host-loopback": { type: "boolean", description: "Let a nat box reach the host's 127.0.0.1 through the gateway address (implies --net nat)" },
  memory: { type: "string", alias: "m", description: "Memory limit, e.g. 256M ([limits] memory)", valueHint: "SIZE" },
  pids: { type: "string", description: "Process limit ([limits] pids)", valueHint: "N" },
  cpus: { type: "string", description: "CPUs' worth of time, e.g. 1.5 ([limits] cpu)", valueHint: "N" },
  "cpu-time": { type: "string", description: "CPU time of the whole box, e.g. 1.5s; then nsrun kills it ([limits] cpu_time)", valueHint: "DURATION" },
  "wall-time": { type: "string", description: "Real time from the command's start, e.g. 10s; then nsrun kills the box ([limits] wall_time)", valueHint: "DURATION" },
  report: { type: "string", description: "Write how the box ended (the verdict, JSON) to FILE, atomically", valueHint: "FILE" },
  ephemeral: { type: "boolean", description: "Throw the box's writes away at exit (overlay)" },
  readonly: { type: "boolean", description: "Mount the rootfs read-only" },
  layer: { type: "string", description: "Keep the box's writes in DIR, an overlay layer over the rootfs (layer)", valueHint: "DIR" },
  init: { type: "boolean", description: "A small init as PID 1 that reaps zombies and forwards signals" },
  tty: { type: "boolean", alias: "t", description: "A pseudo-terminal for the box (default: when stdin and stdout are terminals; --no-tty: never)" },
  "print-config": { type: "boolean", description: "Print the resulting box.toml instead of running it" },
  trace: { type: "boolean", description: "Print every setup syscall, with its result and time, to stderr" },
  "no-cache": { type: "boolean", description: "Plan and compile the box anew: neither read nor write the tape cache" },
  "log-level": { type: "string", description: "error | warn | info | debug", default: "warn", valueHint: "level" },
  verbose: { type: "boolean", description: "Same as --log-level debug (-v is --volume, as in podman)" },
} satisfies ArgsDef;

/** How `nsrun run --help` groups the options. */
const GROUPS: Array<[title: string, names: Array<keyof typeof runArgs>]> = [
  ["The box", ["config", "rootfs", "image", "hostname", "ephemeral", "readonly", "layer"]],
  ["Mounts", ["bind", "ro-bind", "volume", "tmpfs"]],
  ["The command", ["env", "env-file", "cwd", "user", "init", "tty"]],
  ["Network", ["net", "publish", "net-host-loopback"]],
  ["Limits", ["memory", "pids", "cpus", "cpu-time", "wall-time", "report"]],
  ["nsrun itself", ["print-config", "trace", "no-cache", "log-level", "verbose"]],
];

/** `nsrun run --help`: the options in groups, in one aligned column. */
export function runHelp(): string {
  const spell = (name: string) => {
    const d = (runArgs as Record<string, { type: string; alias?: string; valueHint?: string }>)[name];
    const value = d.type === "string" ? ` ${d.valueHint ?? "VALUE"}` : "";
    return `${d.alias ? `-${d.alias}, ` : "    "}--${name}${value}`;
  };
  const width = Math.max(...Object.keys(runArgs).map((n) => spell(n).length)) + 2;
  const out = [
    "Run a command in a box. Without --config or --rootfs: the default box (the host's / read-only).",
    "",
    "USAGE nsrun run [OPTIONS] [CMD ARG...]     (the first word that is not an option starts CMD; -- works too)",
    "      nsrun --config box.toml [OPTIONS] [-- CMD ARG...]",
  ];
  for (const [title, names] of GROUPS) {
    out.push("", `${title}:`);
    for (const n of names) out.push(`  ${spell(n).padEnd(width)}${(runArgs as Record<string, { description: string }>)[n].description}`);
  }
  out.push("", "A flag overrides the box.toml key it names; repeatable ones add to it. Mounts are made in the order given. See docs/config.md.");
  return `${out.join("\n")}\n`;
}

/** Options that may be given more than once: their values are collected in order. */
export const REPEATABLE = new Set(["bind", "ro-bind", "volume", "tmpfs", "env", "publish"]);

/** nsrun's subcommands; any other first word is not one. */
export const SUBCOMMAND_NAMES = ["run", "ns", "doctor", "image"];

/**
 * nsrun's own arguments: everything before `--`, and for a box (run, --config) everything before
 * the box's command, which starts at the first word that is not an option or an option's value.
 */
export function ownArgs(rawArgs: string[]): string[] {
  const dashes = rawArgs.indexOf("--");
  const own = dashes === -1 ? rawArgs : rawArgs.slice(0, dashes);
  const isRun = own[0] === "run" || (!SUBCOMMAND_NAMES.includes(own[0]) && own.some((a) => a === "--config" || a === "-c" || a.startsWith("--config=")));
  if (!isRun) return own;
  const takesValue = new Set<string>();
  for (const [name, d] of Object.entries(runArgs)) {
    if ((d as { type: string }).type !== "string") continue;
    takesValue.add(`--${name}`);
    const alias = (d as { alias?: string }).alias;
    if (alias) takesValue.add(`-${alias}`);
  }
  for (let i = own[0] === "run" ? 1 : 0; i < own.length; i++) {
    const a = own[i];
    if (!a.startsWith("-") || a === "-") return own.slice(0, i);
    if (takesValue.has(a)) i++;
  }
  return own;
}

/** Whether this command line starts a box (the hot path, which loads neither citty nor consola). */
export function startsABox(rawArgs: string[]): boolean {
  const own = ownArgs(rawArgs);
  if (own.some((a) => a === "--help" || a === "-h" || a === "--version")) return false;
  if (own[0] === "run") return true;
  return !SUBCOMMAND_NAMES.includes(own[0]) && own.some((a) => a === "--config" || a === "-c" || a.startsWith("--config="));
}

/** A command line nsrun cannot take; exits 125 with this message. */
export class ArgsError extends NsrunError {}

export interface Parsed {
  values: Record<string, string | boolean | string[] | undefined>;
  /** The box's command: what follows `--`, or (with `command: true`) the first word that is not an option. */
  command: string[];
  /** Every repeatable option's values, in the order typed across options (mounts are made in this order). */
  ordered: Array<[name: string, value: string]>;
}

/**
 * Parse `raw` against `def`. Flags may come as --name value, --name=value, -a value, --flag and
 * --no-flag. With `command`, the first word that is not an option starts the box's command, as in
 * `podman run IMAGE CMD...`; `--` always does.
 */
export function parseArgs(raw: string[], def: ArgsDef, opts: { command: boolean; positionals?: boolean }): Parsed {
  const byName = new Map<string, [name: string, type: string]>();
  for (const [name, d] of Object.entries(def)) {
    const spec = d as { type?: string; alias?: string | string[] };
    const type = spec.type ?? "string";
    if (type === "positional") continue;
    byName.set(`--${name}`, [name, type]);
    if (type === "boolean") byName.set(`--no-${name}`, [name, "negated"]);
    for (const a of Array.isArray(spec.alias) ? spec.alias : spec.alias ? [spec.alias] : []) byName.set(a.length === 1 ? `-${a}` : `--${a}`, [name, type]);
  }
  const values: Parsed["values"] = {};
  const ordered: Parsed["ordered"] = [];
  for (const [name, d] of Object.entries(def)) {
    const dflt = (d as { default?: string | boolean }).default;
    if (dflt !== undefined) values[name] = dflt;
  }
  for (let i = 0; i < raw.length; i++) {
    const arg = raw[i];
    if (arg === "--") return { values, command: raw.slice(i + 1), ordered };
    if (!arg.startsWith("-") || arg === "-") {
      if (opts.command) return { values, command: raw.slice(i), ordered };
      if (opts.positionals) continue;
      throw new ArgsError(`unexpected argument ${JSON.stringify(arg)}; a box's command goes after --`);
    }
    const eq = arg.indexOf("=");
    const flag = eq === -1 ? arg : arg.slice(0, eq);
    const known = byName.get(flag);
    if (!known) throw new ArgsError(`unknown option ${flag}`);
    const [name, type] = known;
    if (type === "boolean" || type === "negated") {
      if (eq !== -1) throw new ArgsError(`${flag} takes no value`);
      values[name] = type === "boolean";
      continue;
    }
    let value: string;
    if (eq !== -1) value = arg.slice(eq + 1);
    else if (i + 1 < raw.length) value = raw[++i];
    else throw new ArgsError(`${flag} needs a value`);
    if (REPEATABLE.has(name)) {
      values[name] = [...((values[name] as string[] | undefined) ?? []), value];
      ordered.push([name, value]);
    } else values[name] = value;
  }
  return { values, command: [], ordered };
}
