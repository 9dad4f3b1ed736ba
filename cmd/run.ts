// `nsrun run [OPTIONS] [CMD ARG...]` (and the root form `nsrun --config box.toml`).
import type { CommandDef } from "citty";
import { ConfigError, fail, StageError } from "../core/errors";
import { ArgsError, parseArgs, runArgs } from "./args";
import { createLogger } from "./log";

const run: CommandDef<typeof runArgs> = {
  meta: {
    name: "run",
    description: "Run a command in a box: nsrun run [--config box.toml] [CMD ARG...] (the default box when there is no --config)",
  },
  args: runArgs,
};

export default run;

/** Start a box from the command line (`nsrun run ...`, or `nsrun --config ...` with `root` true). Never returns. */
export async function runFromArgs(raw: string[]): Promise<never> {
  try {
    const { values, command } = parseArgs(raw, runArgs, { command: true });
    const log = createLogger(String(values["log-level"]), values.verbose === true);
    const { runBoxCommand } = await import("../core/host/run");
    const terminal = values.tty === undefined ? undefined : values.tty === true;
    return await runBoxCommand({ configFile: values.config as string | undefined, args: command, trace: values.trace === true, terminal, log });
  } catch (e) {
    if (e instanceof ArgsError) return fail(`${e.message}; see nsrun run --help`);
    if (e instanceof ConfigError || e instanceof StageError) return fail(e.message, (e as StageError).hint, e.exitCode);
    throw e;
  }
}
