// `nsrun run [OPTIONS] [CMD ARG...]` (and the root form `nsrun --config box.toml`).
import type { CommandDef } from "citty";
import { ConfigError, fail, StageError } from "../core/errors";
import { ArgsError, parseArgs, runArgs } from "./args";
import type { AssemblyRead, BoxFlags, MountFlag } from "../core/stages/boxconfig";
import { tracerFor } from "../core/pipeline";
import { createLogger } from "./log";

const MOUNT_FLAGS: MountFlag[] = ["bind", "ro-bind", "volume", "tmpfs"];

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
  let report: import("../core/host/report").ReportTarget | null = null;
  try {
    const { values, command, ordered } = parseArgs(raw, runArgs, { command: true });
    if (typeof values.report === "string") {
      // First, so that every later failure (a bad config too) is in the report.
      const { openReport } = await import("../core/host/report");
      report = openReport(values.report, process.cwd(), (process.getuid?.() ?? 0) === 0);
    }
    const log = createLogger(String(values["log-level"]), values.verbose === true);
    const str = (k: string) => values[k] as string | undefined;
    const list = (k: string) => values[k] as string[] | undefined;
    const bool = (k: string) => values[k] as boolean | undefined;
    const flags: BoxFlags = {
      rootfs: str("rootfs"),
      image: str("image"),
      mounts: ordered.filter(([name]) => MOUNT_FLAGS.includes(name as MountFlag)) as Array<[MountFlag, string]>,
      env: list("env"),
      envFile: str("env-file"),
      hostname: str("hostname"),
      cwd: str("cwd"),
      user: str("user"),
      net: str("net"),
      publish: list("publish"),
      netHostLoopback: bool("net-host-loopback"),
      memory: str("memory"),
      pids: str("pids"),
      cpus: str("cpus"),
      cpuTime: str("cpu-time"),
      wallTime: str("wall-time"),
      ephemeral: bool("ephemeral"),
      readonly: bool("readonly"),
      layer: str("layer"),
      init: bool("init"),
      terminal: bool("tty"),
    };
    const useCache = values["no-cache"] !== true && values["print-config"] !== true;
    const traced = values.trace === true;
    // A box whose start prints nothing of nsrun's own may start from a start record next time
    // (core/host/startrecord.ts, tried by cmd/main.ts): one is kept for it once it is planned.
    const recordable = useCache && report === null && values.verbose !== true && values["log-level"] !== "debug";
    // A command line run before skips assembly and the schema: core/host/configcache.ts.
    const configcache = useCache ? await import("../core/host/configcache") : null;
    const cache = configcache?.configCache(raw, process.cwd(), tracerFor("host", traced)) ?? null;
    const cached = cache?.get() ?? null;
    let assembled = cached?.assembled ?? null;
    let assemblyReads = cached?.reads ?? null;
    if (assembled === null) {
      const { assembleConfig } = await import("../core/stages/boxconfig");
      const reads: AssemblyRead[] = [];
      const record = (r: AssemblyRead) => void reads.push(r);
      const env = configcache ? configcache.recordingEnv(record) : process.env;
      assembled = await assembleConfig({ configFile: str("config"), flags, command, cwd: process.cwd(), env, record });
      assemblyReads = cache?.put(reads, assembled) ?? null;
    }
    if (values["print-config"]) {
      const { toToml } = await import("../core/stages/boxconfig");
      // The image by its name, not its folder in the store: the printed box runs on the same image.
      const config = assembled.loaded.config;
      process.stdout.write(toToml(assembled.image !== null ? { ...config, rootfs: `image:${assembled.image}` } : config));
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
    const startRecord = recordable && assemblyReads ? { args: raw, cwd: process.cwd(), assembly: assemblyReads } : null;
    return await runBoxCommand({ assembled, trace: traced, cache: values["no-cache"] !== true, terminal, log, report, startRecord });
  } catch (e) {
    if (e instanceof ArgsError) return fail(`${e.message}; see nsrun run --help`);
    const { ReportPathError, reportSetupFailure } = await import("../core/host/report");
    if (e instanceof ReportPathError) return fail(e.message);
    if (e instanceof ConfigError || e instanceof StageError) {
      reportSetupFailure(report, e.message, e.exitCode, null);
      return fail(e.message, (e as StageError).hint, e.exitCode);
    }
    reportSetupFailure(report, `internal error: ${(e as Error).message ?? e}`, 125, null);
    throw e;
  }
}
