// runBox's verdicts for the cases test/verdict.test.ts also runs through `nsrun run --report`: one
// JSON line per case, {"name": ..., "verdict": ...}. Run as a script (by the ordinary user, through
// setpriv) or imported (by root, in the test's own process).
//   bun test/verdict-boxes.ts ROOTFS
import { runBox } from "../core/api";
import type { Verdict } from "../core/verdict";

export interface VerdictCase {
  name: string;
  limits?: Record<string, unknown>;
  args: string[];
}

/** The same cases, the same order, for both writers. */
export const CASES: VerdictCase[] = [
  { name: "exit 3", args: ["/bin/sh", "-c", "exit 3"] },
  { name: "SIGSEGV", args: ["/bin/segv"] },
  { name: "wall-time", limits: { wall_time: "1s" }, args: ["/bin/sleep", "60"] },
  { name: "cpu-time", limits: { cpu_time: "1s" }, args: ["/bin/sh", "-c", "while :; do :; done"] },
  { name: "setup-failed", args: ["/no-such-command"] },
];

export async function runCases(rootfs: string): Promise<Array<{ name: string; verdict: Verdict }>> {
  const out: Array<{ name: string; verdict: Verdict }> = [];
  for (const c of CASES) {
    try {
      out.push({ name: c.name, verdict: (await runBox({ rootfs, limits: c.limits ?? {} }, { args: c.args })).verdict });
    } catch (e) {
      const verdict = (e as { verdict?: Verdict }).verdict;
      if (!verdict) throw e;
      out.push({ name: c.name, verdict });
    }
  }
  return out;
}

if (import.meta.main) {
  for (const r of await runCases(process.argv[2])) process.stdout.write(`${JSON.stringify(r)}\n`);
}
