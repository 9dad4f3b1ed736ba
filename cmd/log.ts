// consola, set up to print one plain line per message: `nsrun: ...`, on stderr.
import { createConsola, type LogObject } from "consola";

const LEVELS: Record<string, number> = { error: 0, warn: 1, info: 3, debug: 4 };

export function createLogger(levelName: string, verbose: boolean) {
  const level = verbose ? LEVELS.debug : (LEVELS[levelName] ?? -1);
  if (level < 0) throw new Error(`--log-level: expected one of ${Object.keys(LEVELS).join(", ")}, got "${levelName}"`);
  return createConsola({
    level,
    reporters: [
      {
        log: (o: LogObject) => {
          const text = o.args.map((a) => (typeof a === "string" ? a : Bun.inspect(a))).join(" ");
          process.stderr.write(`nsrun: ${o.type === "debug" ? "debug: " : ""}${text}\n`);
        },
      },
    ],
  });
}
