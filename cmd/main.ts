// Entry point of the nsrun executable. A stage process (`nsrun __stage ns|init ...`) must load as
// little as possible before its first syscall, so every branch imports its code lazily.
import { STAGE_ARG } from "../core/stages/self";

const argv = process.argv.slice(2);
if (argv[0] === STAGE_ARG && argv[1] === "ns") {
  const { namespaceStage } = await import("../core/stages/ns");
  await namespaceStage();
} else if (argv[0] === STAGE_ARG && argv[1] === "init") {
  const { initStage } = await import("../core/stages/init");
  await initStage();
} else {
  const own = argv.includes("--") ? argv.slice(0, argv.indexOf("--")) : argv;
  const namesConfig = own.some((a) => a === "--config" || a === "-c" || a.startsWith("--config="));
  const startsABox = (own[0] === "run" || (namesConfig && !own.some((a) => a === "ns" || a === "doctor"))) && !own.some((a) => ["--help", "-h", "--version"].includes(a));
  if (startsABox) (await import("../core/stages/launch")).launchNamespaceStage(); // boots while we plan
  const { main } = await import("./cli");
  await main(argv);
}
