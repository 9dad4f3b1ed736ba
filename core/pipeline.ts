// The algorithm's stages, in the order a box goes through them, and the process that runs each.
// --trace prints a marker line as each begins, and docs/algorithm.md has one section per stage,
// with these titles, in this order; test/docs.test.ts holds the two to each other.
import { writeStderr } from "./errors";
export const STAGES = [
  ["load config", "host"],
  ["plan", "host"],
  ["cgroup", "host"],
  ["compile", "host"],
  ["namespaces", "executor"],
  ["user namespace", "executor"],
  ["mount namespace and private root", "executor"],
  ["rootfs", "executor"],
  ["mounts", "executor"],
  ["hostname", "executor"],
  ["network", "executor"],
  ["pivot_root", "executor"],
  ["process", "executor"],
  ["capabilities and user", "executor"],
  ["seccomp and execve", "executor"],
  ["supervise", "supervisor"],
] as const;

export type StageTitle = (typeof STAGES)[number][0];
export type StageProcess = (typeof STAGES)[number][1];

// A loop, not STAGES.map: each of JavaScriptCore's built-in array methods (map, forEach, find, reduce,
// ...) is compiled from its source on its first call, about 0.1 ms of a box's start each
// (docs/algorithm.md, "Start-up, phase by phase"); the start path calls none of them.
export const STAGE_TITLES: StageTitle[] = [];
for (let i = 0; i < STAGES.length; i++) STAGE_TITLES.push(STAGES[i][0]);

/** Where --trace lines go, or null when not tracing. */
export type Tracer = ((line: string) => void) | null;

/** Trace lines go straight to fd 2: the process may execve right after, and buffered output would be lost. */
export function tracerFor(process: string, enabled: boolean): Tracer {
  return enabled ? (line: string) => writeStderr(`nsrun[${process}] ${line}\n`) : null;
}

/** The trace line that opens a stage: `== 8. rootfs`. */
export function stageLine(title: StageTitle): string {
  return `== ${STAGE_TITLES.indexOf(title) + 1}. ${title}`;
}
