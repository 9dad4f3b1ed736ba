// Logging for nsrun's own messages: one plain line each, `nsrun: ...`, on stderr, through consola.
// consola (and the node:tty it imports) loads only when a message passes the level, so a box's
// start-up does not pay for it.
import type { ConsolaInstance, LogObject } from "consola";
import { writeStderr } from "../core/errors";
import { ArgsError } from "./args";

const LEVELS: Record<string, number> = { error: 0, warn: 1, info: 3, debug: 4 };

export interface Logger {
  error(...a: unknown[]): void;
  warn(...a: unknown[]): void;
  info(...a: unknown[]): void;
  debug(...a: unknown[]): void;
}

export function createLogger(levelName: string, verbose: boolean): Logger {
  const level = verbose ? LEVELS.debug : (LEVELS[levelName] ?? -1);
  if (level < 0) throw new ArgsError(`--log-level: expected one of ${Object.keys(LEVELS).join(", ")}, got "${levelName}"`);
  let consola: ConsolaInstance | null = null;
  const emit = (type: keyof Logger, args: unknown[]) => {
    if (LEVELS[type] > level) return;
    consola ??= (require("consola") as typeof import("consola")).createConsola({
      level,
      reporters: [
        {
          log: (o: LogObject) => {
            const text = o.args.map((a) => (typeof a === "string" ? a : Bun.inspect(a))).join(" ");
            writeStderr(`nsrun: ${o.type === "debug" ? "debug: " : ""}${text}\n`);
          },
        },
      ],
    });
    consola[type](...(args as [unknown]));
  };
  return {
    error: (...a) => emit("error", a),
    warn: (...a) => emit("warn", a),
    info: (...a) => emit("info", a),
    debug: (...a) => emit("debug", a),
  };
}
