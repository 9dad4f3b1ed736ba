// `nsrun run [--config box.toml] [-- CMD ARG...]` (and the root form `nsrun --config box.toml`).
import { defineCommand } from "citty";
import { runBox } from "../core/stages/host";
import { commandAfterDashes, runArgs } from "./args";
import { createLogger } from "./log";

export default defineCommand({
  meta: { name: "run", description: "Run a command in a box: nsrun run [--config box.toml] [-- CMD ARG...] (the default box when there is no --config)" },
  args: runArgs,
  async run({ args, rawArgs }) {
    const log = createLogger(args["log-level"], args.verbose === true);
    await runBox({ configFile: args.config, args: commandAfterDashes(rawArgs), trace: args.trace === true, log });
  },
});
