// `nsrun run [OPTIONS] [CMD ARG...]` (and the root form `nsrun --config box.toml`).
import type { CommandDef } from "citty";
import { ConfigError, fail, StageError } from "../core/errors";
import { ArgsError, parseArgs, runArgs } from "./args";
import type { BoxFlags } from "../core/boxconfig";
import { createLogger } from "./log";

const run: CommandDef<typeof runArgs> = {
  meta: {
    name: "run",
    description: "Run a command in a box: nsrun run [OPTIONS] [CMD ARG...] (the default box: the host's / read-only, when there is neither --config nor --rootfs)",
  },
  args: runArgs,
};

export default run;

/** Start a box from the command line (`nsrun run ...`, or `nsrun --config ...` with `root` true). Never returns. */
export async function runFromArgs(raw: string[]): Promise<never> {
  try {
    const { values, command } = parseArgs(raw, runArgs, { command: true });
    const log = createLogger(String(values["log-level"]), values.verbose === true);
    const str = (k: string) => values[k] as string | undefined;
    const list = (k: string) => values[k] as string[] | undefined;
    const bool = (k: string) => values[k] as boolean | undefined;
    const flags: BoxFlags = {
      rootfs: str("rootfs"),
      image: str("image"),
      bind: list("bind"),
      roBind: list("ro-bind"),
      tmpfs: list("tmpfs"),
      env: list("env"),
      envFile: str("env-file"),
      hostname: str("hostname"),
      cwd: str("cwd"),
      user: str("user"),
      net: str("net"),
      publish: list("publish"),
      memory: str("memory"),
      pids: str("pids"),
      cpus: str("cpus"),
      ephemeral: bool("ephemeral"),
      readonly: bool("readonly"),
      init: bool("init"),
    };
    const { assembleConfig, toToml } = await import("../core/boxconfig");
    const assembled = assembleConfig({ configFile: str("config"), flags, command, cwd: process.cwd(), env: process.env });
    if (values["print-config"]) {
      process.stdout.write(toToml(assembled.loaded.config));
      process.exit(0);
    }
    if (assembled.image !== null) {
      // `image rm` is refused while a box holds this shared lock: nsrun's supervisor keeps it to the end.
      const { acquireImageUse } = await import("../core/image/store");
      const { keepAcrossExec } = await import("../ffi/io");
      keepAcrossExec(acquireImageUse(assembled.image).fd);
    }
    const { runBoxCommand } = await import("../core/host/run");
    const terminal = values.tty === undefined ? undefined : values.tty === true;
    return await runBoxCommand({ assembled, trace: values.trace === true, cache: values["no-cache"] !== true, terminal, log });
  } catch (e) {
    if (e instanceof ArgsError) return fail(`${e.message}; see nsrun run --help`);
    if (e instanceof ConfigError || e instanceof StageError) return fail(e.message, (e as StageError).hint, e.exitCode);
    throw e;
  }
}
