// The host's part of the user namespace stage: writing the box's id maps from outside, while its
// first process waits at the sync point (core/userns.ts decides the ranges and who writes them).
import { writeFileSync } from "node:fs";
import { StageError } from "../errors";
import type { IdMapPlan, IdRange } from "../userns";

/** Write `plan`'s maps for process `pid`: directly as root, through newuidmap/newgidmap otherwise. */
export async function writeIdMaps(plan: IdMapPlan, pid: number): Promise<void> {
  if (plan.writer === "root") {
    for (const [file, ranges] of [["uid_map", plan.uidMap], ["gid_map", plan.gidMap]] as const) {
      const path = `/proc/${pid}/${file}`;
      try {
        writeFileSync(path, ranges.map((r) => `${r.inside} ${r.outside} ${r.count}`).join("\n"));
      } catch (e) {
        throw new StageError("user namespace", `write the id maps: write ${JSON.stringify(path)}: ${(e as NodeJS.ErrnoException).code ?? e}`);
      }
    }
    return;
  }
  // newuidmap PID inside outside count [inside outside count ...]: setuid root, it checks each range
  // against /etc/subuid (and newgidmap against /etc/subgid) before writing.
  // Both at once: each is a setuid program's start (about 1.5 ms), and the two maps are independent.
  const helpers = ([["newuidmap", plan.uidMap, "/etc/subuid"], ["newgidmap", plan.gidMap, "/etc/subgid"]] as const).map(async ([helper, ranges, file]) => {
    const args = [helper, String(pid), ...ranges.flatMap((r: IdRange) => [String(r.inside), String(r.outside), String(r.count)])];
    const run = Bun.spawn(args, { stdin: "ignore", stdout: "ignore", stderr: "pipe" });
    const [code, err] = await Promise.all([run.exited, new Response(run.stderr).text()]);
    if (code !== 0)
      throw new StageError(
        "user namespace",
        `write the id maps: ${args.join(" ")}: ${err.trim().split("\n").pop() || `exit status ${code}`}`,
        `${helper} (Debian/Ubuntu package uidmap) refused the ranges: check your lines in ${file}, or set [user_namespace] mode = "single"`,
      );
  });
  // The first failure, in the order uid then gid; wait for both either way (no helper outlives this).
  const results = await Promise.allSettled(helpers);
  for (const r of results) if (r.status === "rejected") throw r.reason;
}
