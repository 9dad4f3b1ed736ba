// Entry point of the nsrun executable. Starting a box is the hot path: it loads only what that
// needs (cmd/run.ts parses its arguments without citty); everything else goes through cmd/cli.ts.
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
    const { runFromArgs } = await import("./run");
    await runFromArgs(argv[0] === "run" ? argv.slice(1) : argv);
  } else {
    const { main } = await import("./cli");
    await main(argv);
  }
} catch (e) {
  await internal(e);
}
