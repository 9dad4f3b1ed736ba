// The command line: citty commands, with nsrun's own handling of --help, --version and errors
// (help after `--` belongs to the box's command; errors exit 125 like podman's). Starting a box
// does not come through here (cmd/main.ts goes straight to cmd/run.ts).
import { type ArgsDef, type CommandDef, defineCommand, renderUsage, runCommand } from "citty";
import pkg from "../package.json" with { type: "json" };
import { ConfigError, fail, StageError } from "../core/errors";
import { ArgsError, ownArgs, parseArgs, runArgs, runHelp } from "./args";
import run, { runFromArgs } from "./run";

/** Subcommands load only when used. */
const SUBCOMMANDS: Record<string, () => Promise<CommandDef>> = {
  run: async () => run as unknown as CommandDef,
  ns: () => import("./ns").then((m) => m.default as unknown as CommandDef),
  doctor: () => import("./doctor").then((m) => m.default as unknown as CommandDef),
  image: () => import("./image").then((m) => m.default as unknown as CommandDef),
};

const root = defineCommand({
  meta: { name: "nsrun", version: pkg.version, description: "Run a program in its own Linux namespaces, as root or as an ordinary user" },
  args: runArgs,
  subCommands: SUBCOMMANDS,
});

const USAGE_HINT = "nsrun --config box.toml | nsrun run [--config box.toml] [CMD ARG...]; see nsrun --help";

export async function main(rawArgs: string[]): Promise<void> {
  const own = ownArgs(rawArgs);
  const sub = own[0] in SUBCOMMANDS ? own[0] : null;
  const misplaced = !sub && own.find((a) => a in SUBCOMMANDS);
  if (misplaced) fail(`options go after the command: nsrun ${misplaced} [OPTIONS]`);
  const cmd = sub ? await SUBCOMMANDS[sub]() : (root as unknown as CommandDef);
  if ((own.includes("--help") || own.includes("-h")) && (sub === "run" || !sub)) {
    const commands = [
      "nsrun run [OPTIONS] [CMD ARG...]   run a command in a box (below)",
      "nsrun ns PID                       show a process's namespaces",
      "nsrun doctor                       check that this host can run boxes",
      "nsrun image import|pull|ls|...     root filesystems from images",
      "nsrun create|start|state|kill|delete|exec|ps|list|features|spec   the OCI runtime interface, for podman and containerd (docs/oci.md)",
    ];
    process.stdout.write(sub ? runHelp() : `nsrun ${pkg.version}: run a program in its own Linux namespaces, as root or as an ordinary user\n\nCOMMANDS\n${commands.map((c) => `  ${c}`).join("\n")}\n\n${runHelp()}`);
    process.exit(0);
  }
  if (own.includes("--help") || own.includes("-h")) {
    // Plain text (citty colours it), and the usage lines say where options and the command go.
    let usage = (await renderUsage(cmd, sub ? (root as unknown as CommandDef) : undefined)).replace(/\x1b\[[0-9;]*m/g, "");
    if (!sub) usage = usage.replace(/^USAGE .*$/m, "USAGE nsrun --config box.toml [OPTIONS] [-- CMD ARG...]\n      nsrun run|ns|doctor|image [OPTIONS] ...");
    process.stdout.write(`${usage}\n`);
    process.exit(0);
  }
  if (own.length === 1 && own[0] === "--version") {
    process.stdout.write(`${pkg.version}\n`);
    process.exit(0);
  }
  if (!sub && own.length === 0) {
    process.stdout.write(`${USAGE_HINT}\n`);
    process.exit(0);
  }
  if (!sub || sub === "run") return void (await runFromArgs(sub ? rawArgs.slice(1) : rawArgs));
  try {
    // A command with subcommands of its own (image) checks its flags at the next level.
    if (!cmd.subCommands) parseArgs(own.slice(1), (cmd.args ?? {}) as ArgsDef, { command: false, positionals: true });
    await runCommand(cmd, { rawArgs: rawArgs.slice(1) });
  } catch (e) {
    if (e instanceof ArgsError) fail(`${e.message}; see nsrun ${sub} --help`);
    if (e instanceof ConfigError || e instanceof StageError) fail(e.message, (e as StageError).hint, e.exitCode);
    if (own.includes("-v") || own.includes("--verbose")) console.error(e);
    // citty colours what it names ("Unknown command \x1b[36mbogus\x1b[39m"): plain text, whatever stderr is.
    fail(String((e as Error).message).replace(/\x1b\[[0-9;]*m/g, ""));
  }
}
