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
  // OCI runtime calls (podman, containerd: `nsrun --root DIR create ...`) first: `run ID` inside a
  // bundle folder is theirs, and their global flags come before the command. The check reads no
  // file unless the line could be OCI's `run`.
  const { isOciCommandLine } = await import("../core/oci/argv");
  const { ownArgs, startsABox } = await import("./args");
  if (isOciCommandLine(argv, process.cwd(), ownArgs)) {
    const { runOci } = await import("./oci");
    await runOci(argv);
  } else if (startsABox(argv)) {
    const raw = argv[0] === "run" ? argv.slice(1) : argv;
    // A box started before from this very command line starts from its start record, when none of
    // its inputs changed (core/host/startrecord.ts): before cmd/run.ts and what it loads. A line
    // with --no-cache or --print-config never has one. Returns when there is none.
    const own = ownArgs(argv);
    if (!own.includes("--no-cache") && !own.includes("--print-config")) await (await import("../core/host/startrecord")).startFromRecord(raw, process.cwd(), own.includes("--trace"));
    const { runFromArgs } = await import("./run");
    await runFromArgs(raw);
  } else {
    const { main } = await import("./cli");
    await main(argv);
  }
} catch (e) {
  await internal(e);
}
