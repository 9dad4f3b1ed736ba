// `nsrun doctor [--json]`: checks that this host can run boxes, rootless ones included, and prints
// one line per check with the fix for what is wrong. Exits 0 when a rootless box can run, else 1.
// `bun cmd/doctor.ts` runs it from the source tree; its live probe then runs dist/nsrun (or $NSRUN_BIN),
// since nsrun run from source cannot unshare a user namespace (see SINGLE_THREAD_ENV).
import { writeSync } from "node:fs";
import { join } from "node:path";
import { defineCommand, runMain } from "citty";
import { type Check, doctorExitCode, runDoctor, type Status } from "../core/tools/doctor";

const COLOUR: Record<Status, string> = { ok: "\x1b[32m", warn: "\x1b[33m", fail: "\x1b[31m" };
const INDENT = "      ";

/** One line per check: `ok    summary`; for warn and fail also the detail and `fix: ...`, indented. */
export function formatChecks(checks: Check[], colour: boolean): string {
  const out: string[] = [];
  for (const c of checks) {
    const word = c.status.padEnd(INDENT.length);
    out.push(`${colour ? `${COLOUR[c.status]}${c.status}\x1b[0m${word.slice(c.status.length)}` : word}${c.summary}`);
    if (c.status === "ok") continue;
    for (const line of c.detail?.split("\n") ?? []) out.push(`${INDENT}${line}`);
    c.fix?.split("\n").forEach((line, i) => out.push(`${INDENT}${i === 0 ? "fix: " : "     "}${line}`.trimEnd()));
  }
  return `${out.join("\n")}\n`;
}

/** The live probe's nsrun when run from source; undefined means nsrun itself (selfCommand). */
let probe: string[] | undefined;

const doctor = defineCommand({
  meta: { name: "doctor", description: "Check that this host can run boxes, rootless ones included (exit 0: it can)" },
  args: { json: { type: "boolean", description: "Print the checks as JSON: [{id, status, summary, detail?, fix?}]" } },
  async run({ args }) {
    const checks = await runDoctor(probe ? { probe } : {});
    const colour = process.stdout.isTTY === true && !process.env.NO_COLOR;
    // writeSync: the output must be complete before process.exit, whatever stdout is.
    writeSync(1, args.json ? `${JSON.stringify(checks, null, 2)}\n` : formatChecks(checks, colour));
    process.exit(doctorExitCode(checks));
  },
});

export default doctor;

if (process.argv[1]?.endsWith("/cmd/doctor.ts")) {
  probe = [process.env.NSRUN_BIN || join(import.meta.dir, "../dist/nsrun")];
  await runMain(doctor);
}
