// `nsrun ns PID [--json]`: the namespaces of a process, drawn as a tree (core/tools/nsinfo.ts does the work).
import { defineCommand } from "citty";
import { StageError } from "../core/errors";

export default defineCommand({
  meta: { name: "ns", description: "Show the namespaces of a process (a box's PID 1, say), compared with nsrun's own" },
  args: {
    pid: { type: "positional", description: "The process, as the host numbers it", valueHint: "PID" },
    json: { type: "boolean", description: "Print the data as JSON instead of a tree" },
  },
  async run({ args }) {
    const { inspectNamespaces, renderTree } = await import("../core/tools/nsinfo");
    const text = String(args.pid);
    try {
      if (!/^[1-9][0-9]*$/.test(text)) throw new StageError("ns", `not a PID: ${JSON.stringify(text)}`);
      const info = inspectNamespaces(Number(text));
      process.stdout.write(args.json ? `${JSON.stringify(info, null, 2)}\n` : renderTree(info));
    } catch (e) {
      if (e instanceof StageError) throw new StageError(e.stage, `ns: ${e.message}`, e.hint, e.exitCode);
      throw e;
    }
  },
});
