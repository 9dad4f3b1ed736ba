// The host's part of the user namespace stage: writing the box's id maps from outside, while its
// first process waits at the sync point (core/stages/userns.ts decides the ranges and who writes them).
import { StageError } from "../errors";
import { close, outputFile, readOutput, readText, writeText } from "../../ffi/io";
import type { SyscallError } from "../../ffi/libc";
import type { IdMapPlan, IdRange } from "../stages/userns";

/** --trace's host lines (nsrun[host]); null when not tracing. */
export type IdMapTrace = ((line: string) => void) | null;

/** One line per map line, as /proc/PID/uid_map has them: "0 1000 1; 1 420000000 65536". */
const oneLine = (text: string) => text.trim().split("\n").map((l) => l.trim().split(/\s+/).join(" ")).join("; ");

/**
 * Write `plan`'s maps for process `pid`: directly as root, through newuidmap/newgidmap otherwise.
 * With `trace`, every write or helper's command line, its result and time, then the maps as the
 * kernel reads them back: the host's half of the sync point, which the executor's trace shows only
 * as a write(SYNC) and a read(answer).
 */
export async function writeIdMaps(plan: IdMapPlan, pid: number, trace: IdMapTrace = null): Promise<void> {
  const at = "user namespace (sync point 1, the box waits)";
  if (plan.writer === "root") {
    for (const [file, ranges] of [["uid_map", plan.uidMap], ["gid_map", plan.gidMap]] as const) {
      const path = `/proc/${pid}/${file}`;
      const text = ranges.map((r) => `${r.inside} ${r.outside} ${r.count}`).join("\n");
      const t0 = performance.now();
      try {
        writeText(path, text);
      } catch (e) {
        const code = (e as SyscallError).errnoName ?? e;
        trace?.(`${at}: write ${JSON.stringify(path)} ${JSON.stringify(oneLine(text))} = ${code}`);
        throw new StageError("user namespace", `write the id maps: write ${JSON.stringify(path)}: ${code}`);
      }
      trace?.(`${at}: write ${JSON.stringify(path)} ${JSON.stringify(oneLine(text))} = 0  ${(performance.now() - t0).toFixed(3)}ms`);
    }
  } else {
    // newuidmap PID inside outside count [inside outside count ...]: setuid root, it checks each range
    // against /etc/subuid (and newgidmap against /etc/subgid) before writing.
    // Both at once: each is a setuid program's start (about 1.5 ms), and the two maps are independent.
    // Bun.spawn, not a helper tape as pasta gets (core/host/nat.ts): measured, a tape's first encoding
    // in a process and the wait for each exec cost more (1.7 ms more on a rootless start).
    const uid = runHelper("newuidmap", plan.uidMap, "/etc/subuid", pid, at, trace);
    const gid = runHelper("newgidmap", plan.gidMap, "/etc/subgid", pid, at, trace);
    // The first failure, in the order uid then gid; wait for both either way (no helper outlives this).
    const uidFailure = await uid;
    const gidFailure = await gid;
    const failure = uidFailure ?? gidFailure;
    if (failure) throw failure;
  }
  if (!trace) return;
  for (const file of ["uid_map", "gid_map"]) {
    try {
      trace(`${at}: /proc/${pid}/${file} now reads ${JSON.stringify(oneLine(readText(`/proc/${pid}/${file}`)))}`);
    } catch (e) {
      trace(`${at}: /proc/${pid}/${file}: ${(e as SyscallError).errnoName ?? e}`);
    }
  }
}

/**
 * One id-map helper (newuidmap or newgidmap) for process `pid`: its refusal, or null once it wrote
 * the map. Returned, not thrown, so that the caller can wait for both helpers without a rejection
 * that nothing handles yet.
 */
async function runHelper(helper: string, ranges: IdRange[], file: string, pid: number, at: string, trace: IdMapTrace): Promise<StageError | null> {
  // A loop, not flatMap: a rootless start calls no built-in array method (each is compiled on its
  // first call, about 0.1 ms: core/pipeline.ts).
  const args = [helper, String(pid)];
  for (let i = 0; i < ranges.length; i++) args.push(String(ranges[i].inside), String(ranges[i].outside), String(ranges[i].count));
  const t0 = performance.now();
  // stderr into a memory file, read only when the helper fails: a pipe read as a stream would
  // cost Bun's stream machinery on every rootless start.
  let code: number;
  let err = "";
  try {
    const errFile = outputFile(helper);
    try {
      code = await Bun.spawn(args, { stdin: "ignore", stdout: "ignore", stderr: errFile }).exited;
      if (code !== 0) err = readOutput(errFile);
    } finally {
      close(errFile);
    }
  } catch (e) {
    return new StageError("user namespace", `write the id maps: ${args.join(" ")}: ${(e as Error).message ?? e}`);
  }
  trace?.(`${at}: ${args.join(" ")} = exit ${code}  ${(performance.now() - t0).toFixed(3)}ms`);
  if (code === 0) return null;
  return new StageError(
    "user namespace",
    `write the id maps: ${args.join(" ")}: ${err.trim().split("\n").pop() || `exit status ${code}`}`,
    `${helper} (Debian/Ubuntu package uidmap) refused the ranges: check your lines in ${file}, or set [user_namespace] mode = "single"`,
  );
}
