// Starting a box: compile its plan into a tape, clone3(2) its first process through the executor,
// and follow the report pipe until the box's command has started or setup has failed. The event
// loop stays free the whole time (the pipe is read asynchronously), so a signal to nsrun is handled
// at every moment, also while setup hangs.
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ERRNO, errnoName } from "../../ffi/errno";
import { loadExecutor, sealedStub, tapeMemory } from "../../ffi/executor";
import { decodeReport, encodeReport, EXIT, HEADER, OP_BYTES, REPORT, REPORT_BYTES, type Report, RESULT_BYTES } from "../../ffi/executor/protocol";
import * as F from "../../ffi/flags";
import { hintFor } from "../../ffi/hints";
import { libc, strerror } from "../../ffi/libc";
import { pipe, readable, receiveFd, socketPair, writeAll } from "../../ffi/io";
import { exited } from "../../ffi/wait";
import { CAPABILITIES } from "../capabilities";
import type { ChildFds } from "../compile";
import { EXIT_CANNOT_EXECUTE, EXIT_NOT_FOUND, EXIT_NSRUN_FAILED, type ErrorReport, toReport } from "../errors";
import { SYNC_ID_MAPS } from "../userns";
import { SYNC_NETWORK } from "../network";
import { writeIdMaps } from "./idmaps";
import { type Helper, startNetwork } from "./network";
import { stageLine } from "../pipeline";
import type { BoxPlan } from "../plan";
import { searchPath } from "../process";
import type { RunnableTape } from "../tape/frozen";
import type { Tape } from "../tape/tape";

export type Tracer = ((line: string) => void) | null;

export interface StartOptions {
  /** Where the box's cgroup is joined: a v2 directory fd, or v1 cgroup.procs fds. */
  cgroup?: { dir: number | null; procs: number[] };
  trace?: { host: Tracer; executor: Tracer };
  /**
   * Called once the first process exists, with its PID and a test of whether setup is over (the
   * command has started, or setup has failed): a signal handler needs both.
   */
  onSpawn?: (pid: number, setupOver: () => boolean) => void;
  /** Where the tape comes from: the tape cache (core/host/tapecache.ts), which compiles on a miss. */
  tape?: (fds: ChildFds, compile: () => Promise<Tape>) => Promise<RunnableTape>;
}

export interface Started {
  pid: number;
  pidfd: number;
  /** The sealed stub, kept for the supervisor hand-over (close-on-exec). */
  stub: number;
  /** The master of the box's pseudo-terminal, when it has one. */
  terminal: number | null;
  /** Helpers started for the box that end with it (pasta or slirp4netns), nsrun's children. */
  helpers: Helper[];
}

export type StartResult = ({ ok: true } & Started) | { ok: false; failure: ErrorReport; started: Started | null };

let lastCap: number | null = null;

/** The highest capability this kernel knows. */
export function lastCapability(): number {
  if (lastCap === null) {
    try {
      lastCap = Number(readFileSync("/proc/sys/kernel/cap_last_cap", "utf8"));
    } catch {
      lastCap = CAPABILITIES.length - 1;
    }
  }
  return lastCap;
}

export async function startBox(plan: BoxPlan, opts: StartOptions = {}): Promise<StartResult> {
  const trace = opts.trace ?? { host: null, executor: null };
  const [reportRead, reportWrite] = pipe(true);
  // A sync pipe only when nsrun has work to do while the process waits: id maps written from
  // outside, pasta or slirp4netns for its network.
  const sync = (plan.idMap && plan.idMap.writer !== "self") || plan.network.mode === "nat" ? pipe(true) : null;
  const files = writeFiles(plan.files);
  const stub = sealedStub();
  // The box's pseudo-terminal master comes back over this socket pair.
  const terminal = plan.process.terminal ? socketPair() : null;
  const fds: ChildFds = {
    report: reportWrite,
    sync: sync?.[0] ?? null,
    stub,
    cgroupDir: opts.cgroup?.dir ?? null,
    cgroupProcs: opts.cgroup?.procs ?? [],
    terminal: terminal?.[1],
    files: files?.paths,
  };

  trace.host?.(stageLine("compile"));
  // compile.ts and the assembler are loaded only when a tape is compiled (not for a cached one).
  const compile = async () => (await import("../compile")).compileBox(plan, { fds, lastCap: lastCapability() });
  const tape = opts.tape ? await opts.tape(fds, compile) : await compile();
  trace.host?.(`compile: ${tape.ops.length} ops  +${performance.now().toFixed(1)}ms`);

  const idMap = plan.idMap;
  const helpers: Helper[] = [];
  const run = await runTape(tape, {
    reportRead,
    reportWrite,
    syncWrite: sync?.[1],
    trace: trace.executor,
    onSpawn: opts.onSpawn,
    onSync: async (id, pid) => {
      if (id === SYNC_ID_MAPS && idMap) await writeIdMaps(idMap, pid);
      if (id === SYNC_NETWORK) helpers.push(await startNetwork(plan.network, pid, plan.idMap !== null, trace.host));
    },
  });
  files?.remove(); // the box has them bound (or has failed)
  if (sync) for (const fd of sync) libc.close(fd);
  const master = terminal ? receiveFd(terminal[0]) : null;
  if (terminal) for (const fd of terminal) libc.close(fd);
  if (run.pid < 0) {
    libc.close(stub);
    return { ok: false, started: null, failure: cloneFailure(-run.pid, run.cloneText) };
  }
  const started: Started = { pid: run.pid, pidfd: run.pidfd, stub, terminal: master, helpers };
  if (run.hostError) return { ok: false, started, failure: toReport(run.hostError, "setup") };
  const failed = run.reports.find((r) => r.kind === REPORT.FAILED || r.kind === REPORT.EXEC_FAILED);
  if (failed) return { ok: false, started, failure: describeFailure(failed, tape, plan) };
  const died = exited(started.pidfd, true);
  if (died && died.signal !== null && run.progress < tape.ops.length - 1) {
    const step = tape.ops[Math.max(run.progress, 0)].step;
    const hint = plan.cgroup?.memoryText ? `the box's memory limit (${plan.cgroup.memoryText}) may be too small for nsrun to set the box up: raise limits.memory` : undefined;
    return { ok: false, started, failure: { message: `${step.stage}: ${step.what}: killed by signal ${died.signal} during setup`, hint, exitCode: EXIT_NSRUN_FAILED } };
  }
  return { ok: true, ...started };
}

export interface TapeRunOptions {
  /** The report pipe: the tape reports into its write end, which this closes once the child has it. */
  reportRead: number;
  reportWrite: number;
  /** The sync pipe's write end, where sync points are answered. */
  syncWrite?: number;
  /** Called at each sync point the tape reaches, with its id; the tape waits until it resolves. */
  onSync?: (id: number, pid: number) => Promise<void> | void;
  /** Called with every record as it comes, before a sync point's onSync (OCI: a forked process's PID). */
  onReport?: (r: Report) => void;
  trace?: Tracer;
  onSpawn?: StartOptions["onSpawn"];
  /**
   * OCI `create` (core/oci/): stop reading at the record this says yes to, after answering it. The
   * process goes on (waiting for `start`) on the executor's stack, so that stack is not released.
   */
  until?: (r: Report) => boolean;
}

export interface TapeRun {
  /** The first process's PID, or -errno when clone3 failed. */
  pid: number;
  /** The host's own work at a sync point failed: the process was killed, and this says why. */
  hostError?: unknown;
  pidfd: number;
  reports: Report[];
  /** The index of the last op the process began (see protocol.h). */
  progress: number;
  cloneText: string;
}

/**
 * Run a tape: clone3(2) its first process through the executor, answer its sync points, and read
 * its reports until end of file, when it has exec'd its command or failed. The tape's memory stays
 * referenced until then: the process reads it, sharing ours.
 */
export async function runTape(tape: RunnableTape, opts: TapeRunOptions): Promise<TapeRun> {
  const executor = loadExecutor();
  const memory = tape.encode(tapeMemory, opts.trace !== null && opts.trace !== undefined);
  const t0 = performance.now();
  const pid = executor.spawn(memory.bytes);
  const cgroup = tape.cgroupFd >= 0 ? `|CLONE_INTO_CGROUP, cgroup=${tape.cgroupFd}` : "";
  const cloneText = `clone3({flags=${F.flagNames(tape.cloneFlags, F.CLONE_FLAGS)}|CLONE_VM|CLONE_PIDFD${cgroup}, exit_signal=SIGCHLD})`;
  libc.close(opts.reportWrite);
  if (pid < 0) {
    libc.close(opts.reportRead);
    opts.trace?.(stageLine("namespaces"));
    opts.trace?.(`${cloneText} = -1 ${errnoName(-pid)}`);
    return { pid, pidfd: -1, reports: [], progress: -1, cloneText };
  }
  const header = new DataView(memory.bytes.buffer, memory.bytes.byteOffset);
  const pidfd = Number(header.getBigInt64(HEADER.pidfd, true));
  let reportsRead = false;
  let hostError: unknown;
  opts.onSpawn?.(pid, () => reportsRead || readable(opts.reportRead));
  let stopped = false;
  const reports = await readReports(opts.reportRead, async (r) => {
    opts.onReport?.(r);
    if (r.kind !== REPORT.SYNC || hostError !== undefined) return;
    try {
      await opts.onSync?.(r.value, pid);
    } catch (e) {
      // The process waits for an answer that will not come: end it (its end of the report pipe closes).
      hostError = e;
      libc.kill(pid, F.SIGKILL);
      return;
    }
    if (opts.syncWrite !== undefined) writeAll(opts.syncWrite, encodeReport({ kind: REPORT.ACK, index: r.index, value: r.value }));
    if (opts.until?.(r)) stopped = true;
  }, () => stopped);
  reportsRead = true;
  // End of file: the command has started, or the process has failed or died. Either way it no
  // longer runs on the stack the executor gave it (unless `until` stopped the reading early).
  if (!stopped) executor.release(memory.bytes);
  libc.close(opts.reportRead);
  if (opts.trace) printTrace(opts.trace, tape, memory.bytes, `${cloneText} = ${pid}  ${(performance.now() - t0).toFixed(3)}ms`);
  return { pid, pidfd, reports, progress: Number(header.getBigInt64(HEADER.progress, true)), cloneText, hostError };
}

/** plan.files into a private folder of nsrun's (a box binds them read-only), or null when there are none. */
function writeFiles(list: BoxPlan["files"]): { paths: Map<string, string>; remove(): void } | null {
  if (!list.length) return null;
  const dir = mkdtempSync(join(tmpdir(), "nsrun-files-"));
  // A root box with a user namespace binds these as its own root, a host uid with no rights on
  // root's files: it may search the folder (whose random name it is told) and read the files.
  chmodSync(dir, 0o711);
  const paths = new Map<string, string>();
  list.forEach((f, i) => {
    const path = join(dir, `${i}-${f.target.split("/").pop()}`);
    writeFileSync(path, f.content, { mode: 0o644 });
    paths.set(f.target, path);
  });
  return { paths, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Every record until end of file, each passed to `each` as it comes (a sync point waits for it). */
async function readReports(fd: number, each: (r: Report) => Promise<void>, stop: () => boolean = () => false): Promise<Report[]> {
  const reports: Report[] = [];
  let pending = new Uint8Array(0);
  const reader = Bun.file(fd).stream().getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    const all = new Uint8Array(pending.length + value.length);
    all.set(pending);
    all.set(value, pending.length);
    let off = 0;
    for (; off + REPORT_BYTES <= all.length; off += REPORT_BYTES) {
      const r = decodeReport(all, off);
      reports.push(r);
      await each(r);
      if (stop()) {
        reader.releaseLock();
        return reports;
      }
    }
    pending = all.slice(off);
  }
  return reports;
}

function cloneFailure(errno: number, call: string): ErrorReport {
  return {
    message: `namespaces: start the box's first process: ${call}: ${errnoName(errno)} (${strerror(errno)})`,
    hint: hintFor("unshare", errno) ?? (errno === ERRNO.ENOSYS ? "clone3(2) needs Linux 5.3 or later (CLONE_INTO_CGROUP: 5.7)" : undefined),
    exitCode: EXIT_NSRUN_FAILED,
  };
}

/** A FAILED record names an op of the tape; an EXEC_FAILED one, a path the stub tried. */
export function describeFailure(r: Report, tape: RunnableTape, plan: BoxPlan): ErrorReport {
  const errno = r.value;
  const name = errnoName(errno);
  const cmd = JSON.stringify(plan.process.args[0]);
  if (r.kind === REPORT.EXEC_FAILED) {
    if (r.index < 0) return { message: `exec: ${cmd}: fork: ${name} (${strerror(errno)})`, exitCode: EXIT_NSRUN_FAILED };
    if (errno === ERRNO.ENOENT) return { message: `exec: ${cmd}: command not found in the box`, exitCode: EXIT_NOT_FOUND };
    if (errno === ERRNO.EACCES) return { message: `exec: ${cmd}: permission denied`, exitCode: EXIT_CANNOT_EXECUTE };
    const path = searchPath(plan.process)[r.index] ?? plan.process.args[0];
    const hint =
      errno === ERRNO.EPERM
        ? "the file has file capabilities (ping, say) the box may not gain: they must be in the bounding set ([security] capabilities), and no_new_privileges = true (the default) refuses to grant any on execve"
        : hintFor("execve", errno);
    return { message: `exec: ${cmd}: execve(${JSON.stringify(path)}): ${name} (${strerror(errno)})`, hint, exitCode: EXIT_CANNOT_EXECUTE };
  }
  const op = tape.ops[r.index];
  if (!op) return { message: `the tape ended without starting the command (op ${r.index}): a bug in nsrun`, exitCode: EXIT_NSRUN_FAILED };
  const { stage, what, hints } = op.step;
  if (op.name === "fail") return { message: `${stage}: ${op.text}`, exitCode: EXIT_NSRUN_FAILED };
  return {
    message: `${stage}: ${what}: ${op.text}: ${name} (${strerror(errno)})`,
    hint: hints?.[name] ?? hintFor(op.name, errno),
    exitCode: op.name === "execveat" ? EXIT.CANNOT_EXECUTE : EXIT_NSRUN_FAILED,
  };
}

/** The executor's part of --trace: every op that ran, with its result and time, under its stage's marker. */
function printTrace(out: (line: string) => void, tape: RunnableTape, bytes: Uint8Array, cloneLine: string): void {
  const view = new DataView(bytes.buffer, bytes.byteOffset);
  const resultsAt = HEADER.size + tape.ops.length * OP_BYTES;
  // A stage's marker comes before the first op that ran at or after its start, so stages with nothing
  // to do still show, and none after a failure does.
  const markers = tape.stages;
  let next = 0;
  const markUpTo = (i: number) => {
    for (; next < markers.length && markers[next][0] <= i; next++) {
      out(stageLine(markers[next][1]));
      if (markers[next][1] === "namespaces") out(cloneLine);
    }
  };
  tape.ops.forEach((op, i) => {
    const at = resultsAt + i * RESULT_BYTES;
    const ret = Number(view.getBigInt64(at, true));
    const start = view.getBigUint64(at + 8, true);
    const end = view.getBigUint64(at + 16, true);
    if (end === 0n || op.code < 0) return; // not reached, or a control op
    markUpTo(i);
    const shown = ret < 0 && ret > -4096 ? `-1 ${errnoName(-ret)}` : String(ret);
    out(`${op.text} = ${shown}  ${(Number(end - start) / 1e6).toFixed(3)}ms`);
  });
}
