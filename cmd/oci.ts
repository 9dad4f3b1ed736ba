// nsrun as an OCI runtime: runc's command line, as podman (conmon) and containerd call it.
//
//   nsrun [GLOBAL OPTIONS] create|start|state|kill|delete|list|ps|exec|run|features|spec ...
//   GLOBAL OPTIONS: --root DIR  --log FILE  --log-format text|json  --debug  --systemd-cgroup  --rootless[=true|false|auto]
//
// core/oci/argv.ts decides which command lines come here (see its rules for `run`); runOci parses
// the global options itself, so cmd/main.ts only dispatches. Errors are one line on stderr
// (`nsrun: ...`), and, with --log, also in the log file (runc's JSON lines with --log-format json,
// which is where containerd looks for the reason a call failed).
import { appendFileSync, closeSync, existsSync, writeFileSync, writeSync } from "node:fs";
import { join, resolve } from "node:path";
import { type ArgsDef, type CommandDef, defineCommand, renderUsage } from "citty";
import { ConfigError, StageError } from "../core/errors";
import { REFUSED_COMMANDS, splitGlobals } from "../core/oci/argv";
import { CreateFailed, createContainer } from "../core/oci/create";
import { execInContainer } from "../core/oci/exec";
import { parseRuncSize, pauseContainer, resumeContainer, updateContainer } from "../core/oci/freeze";
import { features, specTemplate } from "../core/oci/features";
import { containerPids, deleteContainer, killContainer, listStates, OciError, startContainer, stateOf } from "../core/oci/lifecycle";
import type { SpecResources } from "../core/oci/spec";
import { checkId, defaultRoot, isHostRoot, publicState, StateError } from "../core/oci/state";
import { exitNow, pidfdSignal } from "../ffi/proc";
import { FORWARDED_SIGNALS, SIGNAL_NUMBERS } from "../core/stages/signals";
import { waitExit, shellStatus } from "../ffi/wait";
import { NsrunError } from "../ffi/error";

type FlagType = "boolean" | "string" | "list";
interface Flag {
  name: string;
  type: FlagType;
  alias?: string;
  description: string;
}

const f = (name: string, type: FlagType, description: string, alias?: string): Flag => ({ name, type, description, alias });

const CREATE_FLAGS = [
  f("bundle", "string", "The bundle folder, with config.json (default: the current folder)", "b"),
  f("pid-file", "string", "Write the container's PID to this file"),
  f("console-socket", "string", "A Unix socket that receives the pseudo-terminal's master (process.terminal: true)"),
  f("no-pivot", "boolean", "Accepted for compatibility; nsrun always uses pivot_root"),
  f("no-new-keyring", "boolean", "Accepted; nsrun never makes a new session keyring"),
  f("preserve-fds", "string", "Pass fds 3 .. 3+N-1 into the container"),
];

const COMMANDS: Record<string, { description: string; usage: string; flags: Flag[] }> = {
  create: { description: "Set up a container up to its command, which waits for `start`", usage: "nsrun create [OPTIONS] ID", flags: CREATE_FLAGS },
  start: { description: "Start the command of a created container", usage: "nsrun start ID", flags: [] },
  state: { description: "Print a container's state (runtime-spec JSON)", usage: "nsrun state ID", flags: [] },
  kill: { description: "Send a signal (default SIGTERM) to the container's process", usage: "nsrun kill [--all] ID [SIGNAL]", flags: [f("all", "boolean", "Send it to every process of the container", "a")] },
  delete: { description: "Remove a stopped container (with --force, kill it first)", usage: "nsrun delete [--force] ID", flags: [f("force", "boolean", "Kill a running container and remove it", "f")] },
  list: {
    description: "List containers",
    usage: "nsrun list [--format table|json] [--quiet]",
    flags: [f("format", "string", "table or json", "f"), f("quiet", "boolean", "Only the IDs", "q")],
  },
  ps: { description: "The container's processes", usage: "nsrun ps [--format table|json] ID [PS ARGS...]", flags: [f("format", "string", "table or json", "f")] },
  exec: {
    description: "Run a new process in a running container",
    usage: "nsrun exec [OPTIONS] ID CMD [ARG...]   |   nsrun exec --process FILE.json [OPTIONS] ID",
    flags: [
      f("process", "string", "runtime-spec process JSON for the new process", "p"),
      f("tty", "boolean", "A pseudo-terminal (with --console-socket, or relayed when attached)", "t"),
      f("console-socket", "string", "A Unix socket that receives the pseudo-terminal's master"),
      f("detach", "boolean", "Do not wait for the process", "d"),
      f("pid-file", "string", "Write the new process's PID to this file"),
      f("cwd", "string", "Working directory"),
      f("env", "list", "NAME=value, more than once", "e"),
      f("user", "string", "UID[:GID]", "u"),
      f("additional-gids", "list", "Additional group, more than once", "g"),
      f("cap", "list", "Add a capability, more than once", "c"),
      f("no-new-privs", "boolean", "Set no_new_privs"),
      f("preserve-fds", "string", "Pass fds 3 .. 3+N-1 into the process"),
    ],
  },
  run: {
    description: "create + start; waits for the container unless --detach, then deletes it",
    usage: "nsrun run [--bundle DIR] [--detach] [OPTIONS] ID",
    flags: [...CREATE_FLAGS, f("detach", "boolean", "Do not wait", "d"), f("keep", "boolean", "Keep the container's state after it exits")],
  },
  pause: { description: "Freeze every process of the container (its cgroup's freezer)", usage: "nsrun pause ID", flags: [] },
  resume: { description: "Thaw a paused container", usage: "nsrun resume ID", flags: [] },
  update: {
    description: "Change a container's resource limits",
    usage: "nsrun update [--resources FILE|-] [FLAGS] ID",
    flags: [
      f("resources", "string", "runtime-spec linux.resources JSON, from a file or - for stdin", "r"),
      f("memory", "string", "Memory limit (bytes, or 512m, 2g)"),
      f("memory-reservation", "string", "Memory soft limit"),
      f("memory-swap", "string", "Memory plus swap limit; -1 for unlimited"),
      f("kernel-memory", "string", "Refused: kernel memory limits are gone from the kernel"),
      f("kernel-memory-tcp", "string", "Refused: kernel memory limits are gone from the kernel"),
      f("cpu-shares", "string", "CPU shares (relative weight)"),
      f("cpu-share", "string", "Same as --cpu-shares (runc's spelling)"),
      f("cpu-period", "string", "CPU CFS period, microseconds"),
      f("cpu-quota", "string", "CPU CFS quota, microseconds per period; -1 for none"),
      f("cpu-rt-period", "string", "Refused: realtime CPU settings are not supported"),
      f("cpu-rt-runtime", "string", "Refused: realtime CPU settings are not supported"),
      f("cpuset-cpus", "string", "CPUs to run on (0-3, 0,1)"),
      f("cpuset-mems", "string", "Memory nodes to use"),
      f("blkio-weight", "string", "Block IO weight (10-1000)"),
      f("pids-limit", "string", "Maximum number of processes; 0 or -1 for unlimited"),
      f("l3-cache-schema", "string", "Refused: intelRdt is not supported"),
      f("mem-bw-schema", "string", "Refused: intelRdt is not supported"),
    ],
  },
  features: { description: "What this runtime supports (runtime-spec features JSON)", usage: "nsrun features", flags: [] },
  spec: {
    description: "Write a starter config.json",
    usage: "nsrun spec [--rootless] [--bundle DIR]",
    flags: [f("rootless", "boolean", "A config an ordinary user can run"), f("bundle", "string", "Where to write config.json", "b")],
  },
};

/** The OCI subcommands as citty definitions (for --help and for anyone listing nsrun's commands). */
export const ociSubCommands: Record<string, CommandDef> = Object.fromEntries(
  Object.entries(COMMANDS).map(([name, c]) => [
    name,
    defineCommand({
      meta: { name, description: `${c.description} (OCI runtime)` },
      args: Object.fromEntries(c.flags.map((fl) => [fl.name, { type: fl.type === "boolean" ? "boolean" : "string", alias: fl.alias, description: fl.description }])) as ArgsDef,
    }) as CommandDef,
  ]),
);

class UsageError extends NsrunError {}

interface Parsed {
  values: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
}

/** runc-style flags: --name value, --name=value, -x value, -abc booleans; after `stopAt` positionals, the rest is verbatim. */
function parseFlags(raw: string[], flags: Flag[], stopAt = Infinity): Parsed {
  const values: Parsed["values"] = {};
  const positionals: string[] = [];
  const byName = new Map<string, Flag>();
  for (const fl of flags) {
    byName.set(`--${fl.name}`, fl);
    if (fl.alias) byName.set(`-${fl.alias}`, fl);
  }
  const set = (fl: Flag, v: string | boolean) => {
    if (fl.type === "list") values[fl.name] = [...((values[fl.name] as string[]) ?? []), String(v)];
    else values[fl.name] = v;
  };
  for (let i = 0; i < raw.length; i++) {
    const a = raw[i];
    if (positionals.length >= stopAt) return { values, positionals: [...positionals, ...raw.slice(i)] };
    if (a === "--") {
      positionals.push(...raw.slice(i + 1));
      break;
    }
    if (!a.startsWith("-") || a === "-") {
      positionals.push(a);
      continue;
    }
    const eq = a.indexOf("=");
    const name = eq === -1 ? a : a.slice(0, eq);
    let fl = byName.get(name);
    // -ad: two short booleans
    if (!fl && /^-[a-zA-Z]{2,}$/.test(a) && [...a.slice(1)].every((ch) => byName.get(`-${ch}`)?.type === "boolean")) {
      for (const ch of a.slice(1)) set(byName.get(`-${ch}`) as Flag, true);
      continue;
    }
    if (!fl && name.startsWith("--") && name.endsWith("") && byName.get(name.replace(/^--no-/, "--"))?.type === "boolean" && name.startsWith("--no-")) {
      fl = byName.get(name.replace(/^--no-/, "--")) as Flag;
      values[fl.name] = false;
      continue;
    }
    if (!fl) throw new UsageError(`unknown option ${name}`);
    if (fl.type === "boolean") {
      set(fl, eq === -1 ? true : !["false", "0"].includes(a.slice(eq + 1)));
      continue;
    }
    if (eq !== -1) set(fl, a.slice(eq + 1));
    else if (i + 1 < raw.length) set(fl, raw[++i]);
    else throw new UsageError(`${name} needs a value`);
  }
  return { values, positionals };
}

interface Globals {
  readonly root: string;
  log?: string;
  logFormat: "text" | "json";
  debug: boolean;
}

function parseGlobals(globals: string[]): Globals {
  const { values } = parseFlags(globals, [
    f("root", "string", ""),
    f("log", "string", ""),
    f("log-format", "string", ""),
    f("criu", "string", ""),
    f("rootless", "string", ""),
    f("debug", "boolean", ""),
    f("systemd-cgroup", "boolean", ""),
  ]);
  const logFormat = (values["log-format"] as string | undefined) ?? "text";
  if (logFormat !== "text" && logFormat !== "json") throw new UsageError(`--log-format: expected text or json, got ${JSON.stringify(logFormat)}`);
  // The state folder only when a command needs it: `spec` and `features` run anywhere.
  const given = values.root as string | undefined;
  let root: string | null = null;
  const g: Globals = {
    get root() {
      root ??= resolve(given ?? defaultRoot(isHostRoot()));
      return root;
    },
    log: values.log as string | undefined,
    logFormat,
    debug: values.debug === true,
  };
  if (values["systemd-cgroup"]) {
    logTo = g;
    throw new UsageError("--systemd-cgroup: nsrun has no systemd cgroup driver; use cgroupfs (podman: --cgroup-manager=cgroupfs; containerd: SystemdCgroup = false)");
  }
  return g;
}

let logTo: Globals | null = null;

function log(level: "error" | "warning" | "debug", msg: string): void {
  const g = logTo;
  if (level === "debug" && !g?.debug) return;
  if (level !== "debug" || !g?.log) {
    try {
      writeSync(2, `nsrun: ${msg}\n`);
    } catch {
      // nobody reads stderr
    }
  }
  if (!g?.log) return;
  const line = g.logFormat === "json" ? JSON.stringify({ level: level === "warning" ? "warning" : level, msg, time: new Date().toISOString() }) : `${new Date().toISOString()} ${level}: ${msg}`;
  try {
    appendFileSync(g.log, `${line}\n`);
  } catch {
    // a log that cannot be written must not hide the error itself
  }
}

function die(msg: string, code: number): never {
  log("error", msg);
  process.exit(code);
}

function out(text: string): void {
  writeSync(1, text);
}

const SIGNALS: Record<string, number> = {
  HUP: 1, INT: 2, QUIT: 3, ILL: 4, TRAP: 5, ABRT: 6, IOT: 6, BUS: 7, FPE: 8, KILL: 9, USR1: 10, SEGV: 11, USR2: 12, PIPE: 13, ALRM: 14, TERM: 15,
  STKFLT: 16, CHLD: 17, CONT: 18, STOP: 19, TSTP: 20, TTIN: 21, TTOU: 22, URG: 23, XCPU: 24, XFSZ: 25, VTALRM: 26, PROF: 27, WINCH: 28, IO: 29, POLL: 29, PWR: 30, SYS: 31,
};

export function signalNumber(s: string): number {
  if (/^\d+$/.test(s) && Number(s) >= 1 && Number(s) <= 64) return Number(s);
  const name = s.toUpperCase().replace(/^SIG/, "");
  const rt = name.match(/^RTMIN(?:\+(\d+))?$/);
  if (rt && 34 + Number(rt[1] ?? 0) <= 64) return 34 + Number(rt[1] ?? 0);
  const n = SIGNALS[name];
  if (!n) throw new UsageError(`unknown signal ${JSON.stringify(s)}`);
  return n;
}

function one(p: Parsed, usage: string): string {
  if (p.positionals.length !== 1) throw new UsageError(`expected one container ID: ${usage}`);
  return checkId(p.positionals[0]);
}

function preserveFds(v: unknown): number {
  if (v === undefined) return 0;
  if (!/^\d+$/.test(String(v))) throw new UsageError(`--preserve-fds: expected a number, got ${JSON.stringify(v)}`);
  return Number(v);
}

/** Run an OCI command line (global options first). Never returns. */
export async function runOci(argv: string[]): Promise<never> {
  const { globals, rest } = splitGlobals(argv);
  const [cmd, ...args] = rest;
  try {
    const g = parseGlobals(globals);
    logTo = g;
    if (REFUSED_COMMANDS.includes(cmd)) throw new UsageError(`${cmd}: not supported by nsrun`);
    const def = COMMANDS[cmd];
    if (!def) throw new UsageError(`unknown command ${JSON.stringify(cmd ?? "")}; OCI commands: ${Object.keys(COMMANDS).join(", ")}`);
    if (args.includes("--help") || args.includes("-h")) {
      const usage = (await renderUsage(ociSubCommands[cmd])).replace(/\x1b\[[0-9;]*m/g, "").replace(/^USAGE .*$/m, `USAGE ${def.usage}`);
      out(`${usage}\n`);
      process.exit(0);
    }
    const stopAt = cmd === "exec" || cmd === "ps" ? 1 : cmd === "kill" ? 2 : Infinity;
    const p = parseFlags(args, def.flags, stopAt);
    log("debug", `${cmd} ${args.join(" ")}`);
    await COMMAND_HANDLERS[cmd](g, p, def.usage);
    process.exit(0);
  } catch (e) {
    if (e instanceof UsageError) die(e.message, 125);
    if (e instanceof CreateFailed) die(`${e.report.message}${e.report.hint ? `\n  hint: ${e.report.hint}` : ""}`, e.report.exitCode);
    if (e instanceof ConfigError) die(e.message, 125);
    if (e instanceof StageError) die(`${e.message}${e.hint ? `\n  hint: ${e.hint}` : ""}`, e.exitCode);
    if (e instanceof OciError) die(e.message, e.exitCode);
    if (e instanceof StateError) die(e.message, e.exitCode);
    if (process.env.NSRUN_DEBUG) console.error(e);
    die(`${cmd}: ${(e as Error).message}`, 125);
  }
}

/** `update`'s resources: --resources JSON (validated as linux.resources), then the flags on top, as runc does. */
async function updateResources(v: Parsed["values"]): Promise<SpecResources> {
  let res: SpecResources = {};
  if (v.resources !== undefined) {
    const from = v.resources as string;
    let text: string;
    try {
      text = from === "-" ? await Bun.stdin.text() : await Bun.file(resolve(from)).text();
    } catch (e) {
      throw new UsageError(`--resources ${from}: ${(e as Error).message}`);
    }
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch (e) {
      throw new UsageError(`--resources ${from}: not valid JSON: ${(e as Error).message}`);
    }
    const { parseSpec } = await import("../core/oci/spec");
    res = parseSpec({ ociVersion: "1.0.2", linux: { resources: raw } }, from === "-" ? "--resources -" : resolve(from)).linux?.resources ?? {};
  }
  const int = (flag: string): number | undefined => {
    const t = v[flag] as string | undefined;
    if (t === undefined) return undefined;
    if (!/^-?\d+$/.test(t)) throw new UsageError(`--${flag}: expected a whole number, got ${JSON.stringify(t)}`);
    return Number(t);
  };
  const size = (flag: string) => (v[flag] === undefined ? undefined : parseRuncSize(flag, v[flag] as string));
  for (const flag of ["kernel-memory", "kernel-memory-tcp", "cpu-rt-period", "cpu-rt-runtime", "l3-cache-schema", "mem-bw-schema"])
    if (v[flag] !== undefined) throw new UsageError(`--${flag}: not supported by nsrun`);
  const memory = { limit: size("memory"), reservation: size("memory-reservation"), swap: size("memory-swap") };
  const cpu = { shares: int("cpu-shares") ?? int("cpu-share"), period: int("cpu-period"), quota: int("cpu-quota"), cpus: v["cpuset-cpus"] as string | undefined, mems: v["cpuset-mems"] as string | undefined };
  const defined = <T extends object>(o: T) => Object.fromEntries(Object.entries(o).filter(([, x]) => x !== undefined)) as T;
  if (Object.keys(defined(memory)).length) res.memory = { ...res.memory, ...defined(memory) };
  if (Object.keys(defined(cpu)).length) res.cpu = { ...res.cpu, ...defined(cpu) };
  if (v["blkio-weight"] !== undefined) res.blockIO = { ...res.blockIO, weight: int("blkio-weight") };
  if (v["pids-limit"] !== undefined) res.pids = { limit: int("pids-limit") as number };
  return res;
}

type Handler = (g: Globals, p: Parsed, usage: string) => Promise<void> | void;

const COMMAND_HANDLERS: Record<string, Handler> = {
  async create(g, p, usage) {
    const id = one(p, usage);
    const v = p.values;
    await createContainer({ root: g.root, id, bundle: (v.bundle as string) ?? ".", pidFile: v["pid-file"] as string, consoleSocket: v["console-socket"] as string, preserveFds: preserveFds(v["preserve-fds"]), attached: false });
    // The container's process runs on memory it shares with this one: leave without any clean-up.
    exitNow(0);
  },
  async start(g, p, usage) {
    await startContainer(g.root, one(p, usage), (l) => log("warning", l));
  },
  state(g, p, usage) {
    const { saved, status } = stateOf(g.root, one(p, usage));
    out(`${JSON.stringify(publicState(saved, status), null, 2)}\n`);
  },
  kill(g, p, usage) {
    if (p.positionals.length < 1 || p.positionals.length > 2) throw new UsageError(`expected an ID and at most one signal: ${usage}`);
    killContainer(g.root, checkId(p.positionals[0]), signalNumber(p.positionals[1] ?? "TERM"), p.values.all === true);
  },
  async delete(g, p, usage) {
    await deleteContainer(g.root, one(p, usage), p.values.force === true, (l) => log("warning", l));
  },
  list(g, p) {
    const states = listStates(g.root);
    const format = (p.values.format as string) ?? "table";
    if (format === "json") return out(`${JSON.stringify(states)}\n`);
    if (format !== "table") throw new UsageError(`--format: expected table or json, got ${JSON.stringify(format)}`);
    if (p.values.quiet) return out(states.map((s) => `${s.id}\n`).join(""));
    const rows = [["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"], ...states.map((s) => [s.id, String(s.pid), s.status, s.bundle, s.created, s.owner])];
    const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
    out(rows.map((r) => `${r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] + 3))).join("")}\n`).join(""));
  },
  ps(g, p, usage) {
    if (!p.positionals.length) throw new UsageError(`expected a container ID: ${usage}`);
    const { saved, status } = stateOf(g.root, checkId(p.positionals[0]));
    if (status === "stopped") throw new OciError(`container ${JSON.stringify(saved.id)} is not running`);
    const pids = containerPids(saved);
    const format = (p.values.format as string) ?? "table";
    if (format === "json") return out(`${JSON.stringify(pids)}\n`);
    if (format !== "table") throw new UsageError(`--format: expected table or json, got ${JSON.stringify(format)}`);
    const r = Bun.spawnSync(["ps", ...(p.positionals.length > 1 ? p.positionals.slice(1) : ["-ef"])], { stdout: "pipe", stderr: "pipe" });
    if (r.exitCode !== 0) throw new OciError(`ps: ${r.stderr.toString().trim() || "cannot run ps (procps)"}`);
    const lines = r.stdout.toString().split("\n").filter(Boolean);
    const col = lines[0].trim().split(/\s+/).indexOf("PID");
    if (col === -1) throw new OciError("ps: its output has no PID column");
    out(`${[lines[0], ...lines.slice(1).filter((l) => pids.includes(Number(l.trim().split(/\s+/)[col])))].join("\n")}\n`);
  },
  async exec(g, p, usage) {
    if (!p.positionals.length) throw new UsageError(`expected a container ID: ${usage}`);
    const v = p.values;
    let process_ = null;
    if (v.process) {
      const { parseSpec } = await import("../core/oci/spec");
      const file = resolve(v.process as string);
      let raw: unknown;
      try {
        raw = JSON.parse(await Bun.file(file).text());
      } catch (e) {
        throw new UsageError(`--process ${file}: ${(e as Error).message}`);
      }
      process_ = parseSpec({ ociVersion: "1.0.2", process: raw }, file).process ?? null;
      if (p.positionals.length > 1) throw new UsageError("--process gives the command; give none after the ID");
    }
    const code = await execInContainer({
      root: g.root,
      id: checkId(p.positionals[0]),
      process: process_,
      args: p.positionals.slice(1),
      env: (v.env as string[]) ?? [],
      cwd: v.cwd as string,
      user: v.user as string,
      tty: v.tty === true,
      detach: v.detach === true,
      consoleSocket: v["console-socket"] as string,
      pidFile: v["pid-file"] as string,
      preserveFds: preserveFds(v["preserve-fds"]),
      noNewPrivs: v["no-new-privs"] === true,
      caps: (v.cap as string[]) ?? [],
      additionalGids: ((v["additional-gids"] as string[]) ?? []).map(Number),
    });
    process.exit(code);
  },
  async pause(g, p, usage) {
    await pauseContainer(g.root, one(p, usage));
  },
  resume(g, p, usage) {
    resumeContainer(g.root, one(p, usage));
  },
  async update(g, p, usage) {
    updateContainer(g.root, one(p, usage), await updateResources(p.values));
  },
  features() {
    out(`${JSON.stringify(features(), null, 2)}\n`);
  },
  spec(_g, p) {
    const dir = resolve((p.values.bundle as string) ?? ".");
    const file = join(dir, "config.json");
    if (existsSync(file)) throw new UsageError(`${file} exists already; remove it first`);
    writeFileSync(file, `${JSON.stringify(specTemplate(p.values.rootless === true, { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 }), null, 2)}\n`);
  },
  async run(g, p, usage) {
    const id = one(p, usage);
    const v = p.values;
    const detach = v.detach === true;
    const created = await createContainer({ root: g.root, id, bundle: (v.bundle as string) ?? ".", pidFile: v["pid-file"] as string, consoleSocket: v["console-socket"] as string, preserveFds: preserveFds(v["preserve-fds"]), attached: !detach });
    closeSync(created.lock);
    try {
      await startContainer(g.root, id, (l) => log("warning", l));
    } catch (e) {
      await deleteContainer(g.root, id, true, () => {});
      throw e;
    }
    if (detach) exitNow(0);
    // Attached: signals to nsrun go to the container's process; its status is ours; then it is deleted.
    for (const sig of FORWARDED_SIGNALS) process.on(sig, () => pidfdSignal(created.pidfd, SIGNAL_NUMBERS[sig]));
    const status = shellStatus(await waitExit(created.pidfd));
    if (!v.keep) await deleteContainer(g.root, id, true, (l) => log("warning", l));
    process.exit(status);
  },
};
