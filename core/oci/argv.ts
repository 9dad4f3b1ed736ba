// Which command lines are OCI runtime calls (runc's interface) rather than nsrun's own. Kept apart
// and free of imports so cmd/main.ts can ask cheaply before loading anything (node:fs, about a
// millisecond, loads only for the one line that must look at ./config.json). The rules:
//
//  1. A global OCI flag before the command (--root, --log, --log-format, --debug, --systemd-cgroup,
//     --rootless, --criu): OCI. podman (conmon) and containerd always pass --root.
//  2. The first word is an OCI-only command: create start state kill delete list ps exec features
//     spec pause resume update (and events checkpoint restore, which are refused by name).
//  3. `run` is nsrun's box command unless it is clearly OCI's: it has --bundle/-b, --detach/-d,
//     --pid-file, --console-socket, --no-pivot, --no-new-keyring, --preserve-fds or --keep; or it
//     has no --config/-c, no `--`, exactly one other word, and ./config.json is a runtime-spec
//     config (it has "ociVersion"). `nsrun run` with no words, with a command after `--`, or with
//     two or more words stays the box command.
export const GLOBAL_VALUE_FLAGS = ["--root", "--log", "--log-format", "--criu", "--rootless"];
export const GLOBAL_BOOL_FLAGS = ["--debug", "--systemd-cgroup"];
export const OCI_COMMANDS = ["create", "start", "state", "kill", "delete", "list", "ps", "exec", "features", "spec", "pause", "resume", "update"];
export const REFUSED_COMMANDS = ["events", "checkpoint", "restore"];
const RUN_OCI_FLAGS = ["--bundle", "-b", "--detach", "-d", "--pid-file", "--console-socket", "--no-pivot", "--no-new-keyring", "--preserve-fds", "--keep"];

/** Split leading global flags from the command; `globals` has them as written. */
export function splitGlobals(argv: string[]): { globals: string[]; rest: string[] } {
  let i = 0;
  for (; i < argv.length; i++) {
    const a = argv[i];
    const name = a.includes("=") ? a.slice(0, a.indexOf("=")) : a;
    if (GLOBAL_BOOL_FLAGS.includes(name)) continue;
    // --rootless takes true|false|auto as runc's does, but only written with "=" or followed by one of those.
    if (name === "--rootless") {
      if (!a.includes("=") && ["true", "false", "auto"].includes(argv[i + 1])) i++;
      continue;
    }
    if (GLOBAL_VALUE_FLAGS.includes(name)) {
      if (!a.includes("=")) i++;
      continue;
    }
    break;
  }
  return { globals: argv.slice(0, i), rest: argv.slice(i) };
}

/**
 * `ownArgs` cuts a box's command off a `run` line (cmd/args.ts's ownArgs): OCI's run flags count
 * only among nsrun's own options, so `nsrun run --rootfs DIR ls -d /etc` stays a box.
 */
export function isOciCommandLine(argv: string[], cwd: string = process.cwd(), ownArgs: (argv: string[]) => string[] = (a) => a): boolean {
  const { globals, rest } = splitGlobals(argv);
  if (globals.length) return true;
  const cmd = rest[0];
  if (OCI_COMMANDS.includes(cmd) || REFUSED_COMMANDS.includes(cmd)) return true;
  if (cmd !== "run") return false;
  const args = rest.slice(1);
  if (args.includes("--")) return false;
  if (ownArgs(rest).slice(1).some((a) => RUN_OCI_FLAGS.includes(a.includes("=") ? a.slice(0, a.indexOf("=")) : a))) return true;
  if (args.some((a) => a === "--config" || a === "-c" || a.startsWith("--config="))) return false;
  const words = args.filter((a) => !a.startsWith("-"));
  if (words.length !== 1 || args.length !== 1) return false;
  const config = `${cwd === "/" ? "" : cwd}/config.json`;
  const { existsSync, readFileSync } = require("node:fs") as typeof import("node:fs");
  try {
    return existsSync(config) && readFileSync(config, "utf8").includes('"ociVersion"');
  } catch {
    return false;
  }
}
