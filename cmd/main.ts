// Entry point of the nsrun executable. Starting a box is the hot path: it loads only what that
// needs (cmd/run.ts parses its arguments without citty); everything else goes through cmd/cli.ts.
const argv = process.argv.slice(2);
const { startsABox } = await import("./args");
if (startsABox(argv)) {
  const { runFromArgs } = await import("./run");
  await runFromArgs(argv[0] === "run" ? argv.slice(1) : argv);
} else {
  const { main } = await import("./cli");
  await main(argv);
}
