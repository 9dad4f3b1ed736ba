// The command line: citty commands, with nsrun's own handling of --help, --version and errors
// (help after `--` belongs to the box's command; errors exit 125 like podman's).
import { type ArgsDef, type CommandDef, defineCommand, renderUsage, runCommand } from "citty";
import pkg from "../package.json" with { type: "json" };
import { ConfigError, EXIT_NSRUN_FAILED, StageError } from "../core/errors";
import { abandonNamespaceStage } from "../core/stages/launch";
import { runArgs, unknownFlag } from "./args";
import run from "./run";

/** Subcommands load only when used: a box's start-up should not pay for `doctor`. */
const SUBCOMMANDS: Record<string, () => Promise<CommandDef>> = {
  run: async () => run as unknown as CommandDef,
  ns: () => import("./ns").then((m) => m.default as unknown as CommandDef),
  doctor: () => import("./doctor").then((m) => m.default as unknown as CommandDef),
};

const root = defineCommand({
  meta: { name: "nsrun", version: pkg.version, description: "Run a program in its own Linux namespaces, as root or as an ordinary user" },
  args: runArgs,
  subCommands: SUBCOMMANDS,
  run(ctx) {
    if (ownArgs(ctx.rawArgs)[0] in SUBCOMMANDS) return; // citty calls the parent's run after a subcommand's
    if (!ctx.args.config) {
      process.stdout.write(`${USAGE_HINT}\n`);
      process.exit(0);
    }
    return run.run?.(ctx as never);
  },
});

const USAGE_HINT = "nsrun --config box.toml | nsrun run [--config box.toml] [-- CMD ARG...]; see nsrun --help";

/** nsrun's own arguments: everything before `--`. */
function ownArgs(rawArgs: string[]): string[] {
  const dashes = rawArgs.indexOf("--");
  return dashes === -1 ? rawArgs : rawArgs.slice(0, dashes);
}

export async function main(rawArgs: string[]): Promise<void> {
  const own = ownArgs(rawArgs);
  const sub = own[0] in SUBCOMMANDS ? own[0] : null;
  const misplaced = !sub && own.find((a) => a in SUBCOMMANDS);
  if (misplaced) await fail(`options go after the command: nsrun ${misplaced} [OPTIONS]`);
  const cmd = sub ? await SUBCOMMANDS[sub]() : (root as unknown as CommandDef);
  if (own.includes("--help") || own.includes("-h")) {
    // Plain text (citty colours it), and the root's usage line says where options go.
    let usage = (await renderUsage(cmd, sub ? (root as unknown as CommandDef) : undefined)).replace(/\x1b\[[0-9;]*m/g, "");
    if (!sub) usage = usage.replace(/^USAGE .*$/m, "USAGE nsrun --config box.toml [OPTIONS]\n      nsrun run|ns|doctor [OPTIONS] ...");
    process.stdout.write(`${usage}\n`);
    process.exit(0);
  }
  if (own.length === 1 && own[0] === "--version") {
    process.stdout.write(`${pkg.version}\n`);
    process.exit(0);
  }
  const bad = unknownFlag(sub ? own.slice(1) : own, (cmd.args ?? {}) as ArgsDef);
  if (bad) await fail(`unknown option ${bad}; see nsrun ${sub ? `${sub} ` : ""}--help`);
  try {
    await runCommand(root, { rawArgs });
  } catch (e) {
    if (e instanceof ConfigError || e instanceof StageError) await fail(e.message, (e as StageError).hint, e.exitCode);
    const debug = own.includes("-v") || own.includes("--verbose") || own.join(" ").match(/--log-level[= ]debug/);
    if (debug) console.error(e);
    await fail((e as Error).message);
  }
}

/** Report and exit; a namespace stage started speculatively (cmd/main.ts) goes first, so nothing is left. */
async function fail(message: string, hint?: string, code = EXIT_NSRUN_FAILED): Promise<never> {
  await abandonNamespaceStage();
  process.stderr.write(`nsrun: ${message}${hint ? `\n  hint: ${hint}` : ""}\n`);
  process.exit(code);
}
