// The algorithm's stages, in the order a box goes through them, across nsrun's three processes.
// --trace prints a marker line as each begins, and docs/algorithm.md has one section per stage,
// with these titles, in this order; test/docs.test.ts holds the two to each other.
export const STAGES = [
  "load config", // host
  "plan", // host
  "cgroup", // host
  "namespaces", // namespace stage
  "user namespace", // namespace stage
  "mount namespace and private root", // init stage, from here on
  "rootfs",
  "mounts",
  "hostname",
  "network",
  "pivot_root",
  "process",
  "capabilities and user",
  "seccomp and execve",
] as const;

export type StageTitle = (typeof STAGES)[number];

/** The trace line that opens a stage: `== 7. rootfs`. */
export function stageLine(title: StageTitle): string {
  return `== ${STAGES.indexOf(title) + 1}. ${title}`;
}
