// Argument definitions shared by the root command and `run`, and the parser nsrun uses for them.
// citty renders --help and dispatches subcommands; starting a box parses its arguments here, so
// the hot path loads neither citty nor consola.
import type { ArgsDef } from "citty";

export const runArgs = {
  config: { type: "string", alias: "c", description: "The box's TOML config (without it: the default box)", valueHint: "box.toml" },
  "log-level": { type: "string", description: "error | warn | info | debug", default: "warn", valueHint: "level" },
  verbose: { type: "boolean", alias: "v", description: "Same as --log-level debug" },
  trace: { type: "boolean", description: "Print every setup syscall, with its result and time, to stderr" },
  tty: { type: "boolean", alias: "t", description: "A pseudo-terminal for the box (default: when stdin and stdout are terminals; --no-tty: never)" },
} satisfies ArgsDef;

/** nsrun's subcommands; any other first word is not one. */
export const SUBCOMMAND_NAMES = ["run", "ns", "doctor", "image"];

/** nsrun's own arguments: everything before `--`. */
export function ownArgs(rawArgs: string[]): string[] {
  const dashes = rawArgs.indexOf("--");
  return dashes === -1 ? rawArgs : rawArgs.slice(0, dashes);
}

/** Whether this command line starts a box (the hot path, which loads neither citty nor consola). */
export function startsABox(rawArgs: string[]): boolean {
  const own = ownArgs(rawArgs);
  if (own.some((a) => a === "--help" || a === "-h" || a === "--version")) return false;
  if (own[0] === "run") return true;
  return !SUBCOMMAND_NAMES.includes(own[0]) && own.some((a) => a === "--config" || a === "-c" || a.startsWith("--config="));
}

/** A command line nsrun cannot take; exits 125 with this message. */
export class ArgsError extends Error {}

export interface Parsed {
  values: Record<string, string | boolean | undefined>;
  /** The box's command: what follows `--`, or (with `command: true`) the first word that is not an option. */
  command: string[];
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
  for (const [name, d] of Object.entries(def)) {
    const dflt = (d as { default?: string | boolean }).default;
    if (dflt !== undefined) values[name] = dflt;
  }
  for (let i = 0; i < raw.length; i++) {
    const arg = raw[i];
    if (arg === "--") return { values, command: raw.slice(i + 1) };
    if (!arg.startsWith("-") || arg === "-") {
      if (opts.command) return { values, command: raw.slice(i) };
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
    if (eq !== -1) values[name] = arg.slice(eq + 1);
    else if (i + 1 < raw.length) values[name] = raw[++i];
    else throw new ArgsError(`${flag} needs a value`);
  }
  return { values, command: [] };
}
