// Argument definitions shared by the root command and `run`.
import type { ArgsDef } from "citty";

export const runArgs = {
  config: { type: "string", alias: "c", description: "The box's TOML config (without it: the default box)", valueHint: "box.toml" },
  "log-level": { type: "string", description: "error | warn | info | debug", default: "warn", valueHint: "level" },
  verbose: { type: "boolean", alias: "v", description: "Same as --log-level debug" },
  trace: { type: "boolean", description: "Print each setup syscall of every stage, with its result and time, to stderr" },
} satisfies ArgsDef;

/** Flags a command knows, in every spelling, to refuse a typo such as --confg. */
export function knownFlags(def: ArgsDef): Set<string> {
  const known = new Set(["--help", "-h"]);
  for (const [name, d] of Object.entries(def)) {
    known.add(`--${name}`);
    known.add(`--no-${name}`);
    const alias = (d as { alias?: string | string[] }).alias;
    for (const a of Array.isArray(alias) ? alias : alias ? [alias] : []) known.add(a.length === 1 ? `-${a}` : `--${a}`);
  }
  return known;
}

/** The first argument before `--` that looks like a flag and is not one, or null. */
export function unknownFlag(rawArgs: string[], def: ArgsDef): string | null {
  const known = knownFlags(def);
  for (const arg of rawArgs) {
    if (arg === "--") return null;
    if (arg.startsWith("-") && !known.has(arg.split("=")[0])) return arg;
  }
  return null;
}

/** What follows `--`: the command that replaces [process].args. */
export function commandAfterDashes(rawArgs: string[]): string[] {
  const i = rawArgs.indexOf("--");
  return i === -1 ? [] : rawArgs.slice(i + 1);
}
