// The launcher: every process nsrun starts goes through launch(). It takes a compiled tape and the
// handlers for the sync points the tape stops at, clone3(2)s the tape's first process through the
// executor, answers each sync point, checks every record on the report pipe against what the tape
// can send (anything else is an error: the process is killed), and returns the outcome in one
// shape, with a failure named by its step and hint.
//
// Two ways to run the tape (docs/security.md, "Nothing a box can see is ever nsrun"):
//   in place   the executor's child runs it on nsrun's own memory (CLONE_VM): a box's first
//              process, alone in namespaces of its own until it execs the stub; and the helpers
//              that never enter a box (pasta, the id-map and image-owner helpers).
//   sealed     the child first execs the stub from its sealed memfd, in nsrun's namespaces, and the
//              stub runs the tape from a memfd of its own ("nsrun tape FD"): non-dumpable, with an
//              empty environment and nothing of nsrun's memory. For OCI create and exec, whose
//              process shares namespaces with processes of the container.
import { ERRNO, errnoName } from "../../ffi/errno";
import { loadExecutor, tapeFile, tapeMemory } from "../../ffi/executor/load";
import { badTape, decodeReport, encodeReport, EXIT, HEADER, OP_BYTES, REPORT, REPORT_BYTES, type Report, RESULT_BYTES, RESULT_FIELD, SEALED_TAPE_ADDRESS } from "../../ffi/executor/protocol";
import * as F from "../../ffi/flags";
import { hintFor } from "../../ffi/hints";
import { atEndOfFile, close, readable, readAt, readSome, waitReadable, writeAll } from "../../ffi/io";
import { strerror } from "../../ffi/libc";
import { kill } from "../../ffi/proc";
import { EXIT_CANNOT_EXECUTE, EXIT_NOT_FOUND, EXIT_NSRUN_FAILED, type ErrorReport } from "../errors";
import { stageLine } from "../pipeline";
import type { RunnableTape } from "../tape/frozen";
import { type SyncId, syncName } from "./sync";

export type Tracer = ((line: string) => void) | null;

/** What nsrun does at a sync point while the process waits; `pid` is the process that stopped there. */
export type SyncHandler = (pid: number) => Promise<void> | void;

export interface LaunchOptions {
  /** The report pipe (or FIFO): the tape writes into `write` (its reportFd); launch() closes both. */
  report: [read: number, write: number];
  /** Run the tape in the stub, exec'd from this sealed memfd first (see above). */
  sealedStub?: number;
  /** The handlers for the tape's sync points, by id; a sync point without one is answered at once. */
  sync?: Partial<Record<SyncId, SyncHandler>>;
  /** The sync pipe's write end (the tape has the read end), when the tape has sync points. */
  syncWrite?: number;
  /** Stop reading after answering this sync point (OCI create: the process waits for `start`). */
  until?: SyncId;
  /** The executor's part of --trace: every op that ran, with its result and time. */
  trace?: Tracer;
  /** Called once the first process exists, with a test of whether setup is over (a signal handler needs both). */
  onSpawn?: (pid: number, setupOver: () => boolean) => void;
  /** OCI: a HOOK record as the error it stands for (core/oci/emit.ts). */
  describeHook?: (r: Report) => string | null;
  /**
   * Wait for the reports with this thread blocked in ppoll(2), not through the event loop: for a
   * process that starts one box and has nothing else to do meanwhile (nsrun run), where Bun's
   * stream machinery costs about half a millisecond. `wake`, a non-blocking pipe, is watched too:
   * when it is readable it is drained and `handle` called (nsrun's signal watch, core/host/run.ts).
   * A long-lived process (core/api.ts, many boxes at once) leaves it unset and keeps its event loop.
   */
  block?: { wake: number; handle: () => void };
}

export interface Launched {
  /** The first process: its PID in nsrun's PID namespace, -1 when clone3 failed. */
  pid: number;
  pidfd: number;
  /** The process the tape forked into a PID namespace (its PID record), else null. */
  forked: number | null;
  reports: Report[];
  /** The index of the last op the process began (protocol.h). */
  progress: number;
  /** How the process ended its setup: null if its command started (or `until` was reached). */
  failure: LaunchFailure | null;
}

/** A failed start, in one shape: what the user reads, the step it happened at, and its exit status. */
export interface LaunchFailure extends ErrorReport {
  /** clone: the first process never existed; op: a tape op failed; exec: the command could not
   * start; hook: an OCI hook failed; host: nsrun's own work at a sync point failed; protocol: the
   * report pipe carried what the tape cannot send; died: the process ended without a word. */
  kind: "clone" | "op" | "exec" | "hook" | "host" | "protocol" | "died";
  /** The op's index, or -1. */
  index: number;
  errno: number;
  /** kind "host": what the handler threw. */
  cause?: unknown;
}

export async function launch(tape: RunnableTape, opts: LaunchOptions): Promise<Launched> {
  const executor = loadExecutor();
  const traced = opts.trace !== null && opts.trace !== undefined;
  const [reportRead, reportWrite] = opts.report;
  if (tape.reportFd !== reportWrite) throw new Error("launch: the tape reports to another fd than the report pipe's write end");
  // Sealed: the tape's bytes, computed for the address the stub maps them at, in a memfd; what
  // clone3 runs is a two-op tape that execs the stub with it.
  let first: RunnableTape = tape;
  let sealedFile = -1;
  let bytes: Uint8Array;
  if (opts.sealedStub !== undefined) {
    if (tape.cloneFlags !== 0) throw new Error("launch: a sealed tape makes its namespaces itself (unshare/setns), after the stub has started");
    bytes = tape.encode((size) => ({ bytes: new Uint8Array(size), address: SEALED_TAPE_ADDRESS }), traced).bytes;
    sealedFile = tapeFile(bytes);
    // Loaded here alone: the tape's call builders are not part of a start from a cached tape.
    first = (await import("./bootstrap")).bootstrap(tape, opts.sealedStub, sealedFile);
  }
  const memory = first.encode(tapeMemory, first === tape && traced);
  if (first === tape) bytes = memory.bytes;
  const t0 = performance.now();
  const pid = executor.spawn(memory.bytes);
  const cloneText = cloneCall(first);
  close(reportWrite);
  const fail = (f: Omit<LaunchFailure, "exitCode"> & { exitCode?: number }): LaunchFailure => ({ exitCode: EXIT_NSRUN_FAILED, ...f });
  if (pid < 0) {
    close(reportRead);
    if (sealedFile >= 0) close(sealedFile);
    opts.trace?.(stageLine("namespaces"));
    opts.trace?.(`${cloneText} = -1 ${errnoName(-pid)}`);
    const errno = -pid;
    const failure = fail({
      kind: "clone",
      index: -1,
      errno,
      message: `namespaces: start the box's first process: ${cloneText}: ${errnoName(errno)} (${strerror(errno)})`,
      hint: hintFor("unshare", errno) ?? (errno === ERRNO.ENOSYS ? "clone3(2) needs Linux 5.3 or later (CLONE_INTO_CGROUP: 5.7)" : undefined),
    });
    return { pid: -1, pidfd: -1, forked: null, reports: [], progress: -1, failure };
  }
  const header = new DataView(memory.bytes.buffer, memory.bytes.byteOffset);
  const pidfd = Number(header.getBigInt64(HEADER.pidfd, true));
  const killAll = () => {
    kill(pid, F.SIGKILL);
    if (forked !== null) kill(forked, F.SIGKILL);
  };

  let reportsRead = false;
  let forked: number | null = null;
  let failure: LaunchFailure | null = null;
  let stopped = false;
  // Setup is over once the pipe is at its end (the command's exec closed it), not while records
  // wait in it: a sync point's record, read or not, means the process waits for nsrun.
  opts.onSpawn?.(pid, () => reportsRead || atEndOfFile(reportRead));
  const expected = expectedRecords(tape, opts.sealedStub !== undefined);
  // A tape that forks stops at its sync points in the forked process, whose PID its parent reports.
  // The two write the pipe independently, so a sync point may come before that PID record (the
  // parent not yet scheduled): it waits, unanswered, until the PID is known.
  const waiting: Report[] = [];
  const answer = async (r: Report) => {
    try {
      await opts.sync?.[r.value as SyncId]?.(forked ?? pid);
      // A signal that came while the handler ran (the event loop's turn, not ppoll's) is passed on
      // now, while the process still waits at its sync point: setup is not over, so it ends the box.
      if (opts.block && readable(opts.block.wake)) takeWake(opts.block);
    } catch (e) {
      // The process waits for an answer that will not come: end it (its end of the report pipe closes).
      const err = e as Error & { hint?: string };
      failure = fail({ kind: "host", index: r.index, errno: 0, message: err.message ?? String(e), hint: err.hint, cause: e });
      killAll();
      return;
    }
    if (opts.syncWrite !== undefined) writeAll(opts.syncWrite, encodeReport({ kind: REPORT.ACK, index: r.index, value: r.value }));
    if (opts.until !== undefined && r.value === opts.until) stopped = true;
  };
  const source = opts.block ? blockingChunks(reportRead, opts.block) : streamChunks(reportRead);
  const reports = await readReports(source, async (r) => {
    if (failure) return;
    const unexpected = expected(r);
    if (unexpected) {
      failure = fail({ kind: "protocol", index: r.index, errno: 0, message: `report pipe: ${unexpected}: refused, and the process killed`, hint: "only the process nsrun started writes there; anything else is a bug in nsrun or an attack on it" });
      killAll();
      return;
    }
    if (r.kind === REPORT.PID) {
      forked = r.value;
      for (const w of waiting.splice(0)) if (!failure && !stopped) await answer(w);
    }
    if (r.kind !== REPORT.SYNC) return;
    if (tape.expects.pid && forked === null) return void waiting.push(r);
    await answer(r);
  }, () => stopped, (trailing) => {
    failure ??= fail({ kind: "protocol", index: -1, errno: 0, message: `report pipe: ${trailing} bytes that are not a whole record: refused, and the process killed` });
    killAll();
  });
  reportsRead = true;
  close(reportRead);
  // End of file: the command has started, or the process has failed or died. In place, it no longer
  // runs on the stack the executor gave it (unless `until` stopped early, while it still does); a
  // sealed launch's first process left that stack when it exec'd the stub.
  if (!stopped || sealedFile >= 0) executor.release(memory.bytes);
  if (sealedFile >= 0) {
    readAt(sealedFile, bytes!, 0); // the stub's progress and results
    close(sealedFile);
  }
  const view = new DataView(bytes!.buffer, bytes!.byteOffset);
  const progress = Number(view.getBigInt64(HEADER.progress, true));
  if (opts.trace) printTrace(opts.trace, tape, bytes!, `${cloneText} = ${pid}  ${(performance.now() - t0).toFixed(3)}ms`);
  if (!failure) {
    // A loop, not find: the start path calls no built-in array method (core/pipeline.ts says why).
    for (let i = 0; i < reports.length && !failure; i++) {
      const r = reports[i];
      if (r.kind === REPORT.FAILED || r.kind === REPORT.EXEC_FAILED || r.kind === REPORT.HOOK) failure = describeRecord(r, tape, opts.describeHook);
    }
  }
  return { pid, pidfd, forked, reports, progress, failure };
}

function cloneCall(t: RunnableTape): string {
  const cgroup = t.cgroupFd >= 0 ? `|CLONE_INTO_CGROUP, cgroup=${t.cgroupFd}` : "";
  return `clone3({flags=${F.flagNames(t.cloneFlags, F.CLONE_FLAGS)}|CLONE_VM|CLONE_PIDFD${cgroup}, exit_signal=SIGCHLD})`;
}

/** A test of each record against what this tape can send: null when it may, else what is wrong with it. */
function expectedRecords(tape: RunnableTape, sealed: boolean): (r: Report) => string | null {
  const { pid, hooks, execFailed } = tape.expects;
  // Looked up where it is, not copied into a new Set (a Set made from a list costs a start ~0.07 ms).
  const syncs = tape.expects.syncs;
  const stopsAt = (id: number) => ("has" in syncs ? syncs.has(id) : syncs.indexOf(id) >= 0);
  let pids = 0;
  const show = (r: Report) => `{kind ${r.kind}, index ${r.index}, value ${r.value}}`;
  const opIndex = (i: number) => i >= (sealed ? -1 : 0) && i <= tape.opCount;
  return (r) => {
    switch (r.kind) {
      case REPORT.FAILED:
        return opIndex(r.index) ? null : `a failure at op ${r.index}, which the tape does not have`;
      case REPORT.SYNC:
        return stopsAt(r.value) && opIndex(r.index) ? null : `sync point ${syncName(r.value)}, which the tape does not stop at`;
      case REPORT.EXEC_FAILED:
        return execFailed ? null : `an exec failure ${show(r)} from a tape that execs no command`;
      case REPORT.PID:
        return pid && ++pids === 1 && r.value > 0 ? null : `a PID record ${show(r)} the tape did not send`;
      case REPORT.HOOK:
        return hooks ? null : `a hook record ${show(r)} from a tape that runs no hook`;
    }
    return `an unknown record ${show(r)}`;
  };
}

/** Where the report pipe's bytes come from: the next chunk, or null at end of file; `release` when reading stops early. */
interface ChunkSource {
  next(): Promise<Uint8Array | null> | Uint8Array | null;
  release(): void;
}

/** Through Bun's stream of the pipe: the event loop turns while the process works. */
function streamChunks(fd: number): ChunkSource {
  const reader = Bun.file(fd).stream().getReader();
  return {
    next: async () => {
      const { value, done } = await reader.read();
      return done ? null : value;
    },
    release: () => reader.releaseLock(),
  };
}

/** Drain the wake pipe, then call `handle`. */
function takeWake(wake: { wake: number; handle: () => void }): void {
  const drain = new Uint8Array(64);
  while (readSome(wake.wake, drain) > 0);
  wake.handle();
}

/** With the thread blocked in ppoll(2) on the pipe and `wake`'s (drained, then `handle` called). */
function blockingChunks(fd: number, wake: { wake: number; handle: () => void }): ChunkSource {
  const buf = new Uint8Array(REPORT_BYTES * 64);
  return {
    next: () => {
      for (;;) {
        const [data, woken] = waitReadable([fd, wake.wake]);
        if (woken) takeWake(wake);
        if (!data) continue;
        const n = readSome(fd, buf);
        if (n === 0) return null;
        if (n > 0) return buf.subarray(0, n);
      }
    },
    release: () => {},
  };
}

/** Every record until end of file, each passed to `each` as it comes (a sync point waits for it). */
async function readReports(source: ChunkSource, each: (r: Report) => Promise<void>, stop: () => boolean, torn: (bytes: number) => void): Promise<Report[]> {
  const reports: Report[] = [];
  let pending = new Uint8Array(0);
  for (;;) {
    const value = await source.next();
    if (value === null) break;
    const all = new Uint8Array(pending.length + value.length);
    all.set(pending);
    all.set(value, pending.length);
    let off = 0;
    for (; off + REPORT_BYTES <= all.length; off += REPORT_BYTES) {
      const r = decodeReport(all, off);
      reports.push(r);
      await each(r);
      if (stop()) {
        source.release();
        return reports;
      }
    }
    pending = all.slice(off);
  }
  if (pending.length) torn(pending.length);
  return reports;
}

/** A FAILED record names an op of the tape; an EXEC_FAILED one, a path the stub tried; a HOOK one, a hook. */
export function describeRecord(r: Report, tape: RunnableTape, describeHook?: (r: Report) => string | null): LaunchFailure {
  const errno = r.value;
  const name = errnoName(errno);
  if (r.kind === REPORT.HOOK) {
    return { kind: "hook", index: r.index, errno: 0, message: describeHook?.(r) ?? `a hook failed (${r.index})`, exitCode: EXIT_NSRUN_FAILED };
  }
  if (r.kind === REPORT.EXEC_FAILED) {
    const command = tape.command;
    const cmd = JSON.stringify(command?.args[0] ?? "?");
    const base = { kind: "exec" as const, index: r.index, errno };
    if (r.index < 0) return { ...base, message: `exec: ${cmd}: fork: ${name} (${strerror(errno)})`, exitCode: EXIT_NSRUN_FAILED };
    if (errno === ERRNO.ENOENT) return { ...base, message: `exec: ${cmd}: command not found in the box`, exitCode: EXIT_NOT_FOUND };
    if (errno === ERRNO.EACCES) return { ...base, message: `exec: ${cmd}: permission denied`, exitCode: EXIT_CANNOT_EXECUTE };
    const path = command?.paths[r.index] ?? command?.args[0];
    const hint =
      errno === ERRNO.EPERM
        ? "the file has file capabilities (Debian's ping has cap_net_raw) that the box's bounding set lacks ([security] capabilities): add the capability there, or run a copy without them; ping works without them through ICMP echo sockets, open to the box's group 0 (net.ipv4.ping_group_range = \"0 0\")"
        : hintFor("execve", errno);
    return { ...base, message: `exec: ${cmd}: execve(${JSON.stringify(path)}): ${name} (${strerror(errno)})`, hint, exitCode: EXIT_CANNOT_EXECUTE };
  }
  if (badTape(errno)) return { kind: "op", index: r.index, errno: 0, message: `the executor refused the tape at op ${r.index}: ${badTape(errno)}: a bug in nsrun`, exitCode: EXIT_NSRUN_FAILED };
  if (r.index < 0) return { kind: "op", index: -1, errno, message: `namespaces: map the sealed tape: ${name} (${strerror(errno)})`, exitCode: EXIT_NSRUN_FAILED };
  const op = tape.ops[r.index];
  if (!op) return { kind: "op", index: r.index, errno, message: `the tape ended without starting the command (op ${r.index}): a bug in nsrun`, exitCode: EXIT_NSRUN_FAILED };
  const { stage, what, hints } = op.step;
  if (op.name === "fail") return { kind: "op", index: r.index, errno, message: `${stage}: ${op.text}`, exitCode: EXIT_NSRUN_FAILED };
  return {
    kind: "op",
    index: r.index,
    errno,
    message: `${stage}: ${what}: ${op.text}: ${name} (${strerror(errno)})`,
    hint: hints?.[name] ?? hintFor(op.name, errno),
    exitCode: op.name === "execveat" || op.name === "exec" ? EXIT.CANNOT_EXECUTE : EXIT_NSRUN_FAILED,
  };
}

/** The executor's part of --trace: every op that ran, with its result and time, under its stage's marker. */
function printTrace(out: (line: string) => void, tape: RunnableTape, bytes: Uint8Array, cloneLine: string): void {
  const view = new DataView(bytes.buffer, bytes.byteOffset);
  const resultsAt = HEADER.size + tape.ops.length * OP_BYTES;
  if (Number(view.getBigUint64(HEADER.results, true)) === 0) return;
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
    const ret = Number(view.getBigInt64(at + RESULT_FIELD.ret, true));
    const start = view.getBigUint64(at + RESULT_FIELD.startNs, true);
    const end = view.getBigUint64(at + RESULT_FIELD.endNs, true);
    if (end === 0n || op.code < 0) return; // not reached, or a control op
    markUpTo(i);
    const shown = ret < 0 && ret > -4096 ? `-1 ${errnoName(-ret)}` : String(ret);
    out(`${op.text} = ${shown}  ${(Number(end - start) / 1e6).toFixed(3)}ms`);
  });
}
