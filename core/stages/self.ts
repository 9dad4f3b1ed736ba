// How nsrun starts its own stages: as new processes of the same executable (fork(2) through
// bun:ffi crashes the child, so JavaScript never runs in a forked copy).

/** The first argument of a stage process: `nsrun __stage ns`. Not a user command; --help does not list it. */
export const STAGE_ARG = "__stage";

/** The command that runs this program again: the compiled binary, or bun with the entry script. */
export function selfCommand(): string[] {
  const script = process.argv[1] ?? "";
  // In a compiled executable argv[1] is the embedded entry ("/$bunfs/root/nsrun"), not a file on disk.
  return script.startsWith("/$bunfs/") || script === "" ? [process.execPath] : [process.execPath, script];
}

/**
 * Env vars that make a Bun process start, and stay for a while, with one thread, so it may
 * unshare(CLONE_NEWUSER). Without the first, JSC starts a JIT worker at once. Without the second,
 * loading nsrun's whole bundle is enough allocation to start JSCWarmUp and mi-scavenger
 * before the first line of the stage runs. The third keeps the garbage collector from adding
 * HeapHelper threads should it run before the unshare. Measured with Bun 1.4.5.
 */
export const SINGLE_THREAD_ENV = ["BUN_JSC_useConcurrentJIT=0", "BUN_JSC_useWarmUpMarkedBlocks=0", "BUN_JSC_useConcurrentGC=0"];

/** Trace lines go straight to fd 2: a stage may execve right after, and buffered output would be lost. */
export function tracerFor(stage: string, enabled: boolean): ((line: string) => void) | null {
  if (!enabled) return null;
  const { writeSync } = require("node:fs") as typeof import("node:fs");
  return (line: string) => writeSync(2, `nsrun[${stage}] ${line}\n`);
}
