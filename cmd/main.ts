// Entry point of the nsrun executable. Starting a box is the hot path: it loads only what that
// needs (a start record's box, only core/host/startrecord.ts and what runs a plan; otherwise
// cmd/run.ts, which parses its arguments without citty); everything else goes through cmd/cli.ts.
// Whatever goes wrong unexpectedly ends as one line and exit status 125, never as a stack trace
// (unless NSRUN_DEBUG is set).
const argv = process.argv.slice(2);
const internal = async (e: unknown) => {
  const { fail } = await import("../core/errors");
  if (process.env.NSRUN_DEBUG) console.error(e);
  fail(`internal error: ${(e as Error)?.message ?? String(e)}`, "run it again with NSRUN_DEBUG=1 for the stack trace, and report it");
};
process.on("unhandledRejection", internal);
process.on("uncaughtException", internal);
try {
  // A box started before from this very command line starts from its start record, when none of
  // its inputs changed (core/host/startrecord.ts): before anything else loads. A record is kept
  // only for a line the checks below found to be a box's, and they read nothing but the line,
  // except for `run WORD`, which ./config.json can make OCI's: that one goes through them first.
  // A line with --no-cache or --print-config never has one, and reads none. Returns when there is none.
  const raw = argv[0] === "run" ? argv.slice(1) : argv;
  const mayBeABox = argv[0] === "run" || argv.some((a) => a === "--config" || a === "-c" || a.startsWith("--config="));
  const runWord = argv.length === 2 && argv[0] === "run" && !argv[1].startsWith("-");
  if (mayBeABox && !runWord && !argv.includes("--no-cache") && !argv.includes("--print-config")) {
    await (await import("../core/host/startrecord")).startFromRecord(raw, process.cwd(), argv.includes("--trace"));
  }
  // OCI runtime calls (podman, containerd: `nsrun --root DIR create ...`) first: `run ID` inside a
  // bundle folder is theirs, and their global flags come before the command. The check reads no
  // file unless the line could be OCI's `run`.
  const { isOciCommandLine } = await import("../core/oci/argv");
  const { ownArgs, startsABox } = await import("./args");
  if (isOciCommandLine(argv, process.cwd(), ownArgs)) {
    const { runOci } = await import("./oci");
    await runOci(argv);
  } else if (startsABox(argv)) {
    if (runWord && !argv.includes("--no-cache")) await (await import("../core/host/startrecord")).startFromRecord(raw, process.cwd(), false);
    const { runFromArgs } = await import("./run");
    await runFromArgs(raw);
  } else {
    const { main } = await import("./cli");
    await main(argv);
  }
} catch (e) {
  await internal(e);
}
