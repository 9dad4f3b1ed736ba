// The host's part of the network stage for mode "nat": start the box's helper, pasta or slirp4netns
// (plan.network.helper), on its network namespace while the box waits at its sync point. nsrun
// opens the namespaces (it may, as their owner or as root) and hands them to the helper as fds 3
// and 4; the helper configures the box's interface, routes and DNS, then says it is ready through a
// pipe: pasta writes its PID there (its --pid file), slirp4netns writes "1" (its --ready-fd).
// slirp4netns then takes the forwarded ports, one request each on its API socket.
//
// The helper runs as nsrun's child, started by the executor (as a box's first process is) so that
// its parent-death signal is armed before execve: a SIGKILLed nsrun takes it along, and the ports
// it held are free again. slirp4netns also watches a pipe whose write end only nsrun (then the
// supervisor) holds, its --exit-fd. Otherwise the supervisor ends and reaps it after the box.
import { mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as F from "../../ffi/flags";
import { close, dupAtLeast, pipe } from "../../ffi/io";
import { kill } from "../../ffi/proc";
import { waitExit } from "../../ffi/wait";
import { StageError } from "../errors";
import { addHostfwd, type NetworkHelper, type NetworkPlan, pastaArgs, pastaPortSpec, type PortForward, portText, programPath, slirp4netnsArgs, usableTun } from "../stages/network";
import { compileHelper } from "../stages/compile";
import { launch, type Tracer } from "../launch/launch";

/** A process started for a box that ends with it. */
export interface Helper {
  name: NetworkHelper;
  pid: number;
  pidfd: number;
  /**
   * An fd nsrun holds while the box runs, whose closing ends the helper (slirp4netns's --exit-fd
   * pipe), or null. Kept across the supervisor hand-over; closed by endHelper.
   */
  hold: number | null;
}

/** Where the fds a helper gets are parked before its tape puts them at 0-6 (above any of those). */
const PARK_AT = 64;
const HELPER_ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"];

/** Start the box's network helper for process `pid`'s network (and user) namespace. */
export async function startNetwork(plan: NetworkPlan, pid: number, userns: boolean, trace: Tracer = null): Promise<Helper> {
  const name = plan.helper?.name ?? "pasta";
  const t0 = performance.now();
  const helper = name === "slirp4netns" ? await startSlirp4netns(plan, pid, userns, trace) : await startPasta(plan, pid, userns, trace);
  trace?.(`network: ${name} is ready (pid ${helper.pid})  ${(performance.now() - t0).toFixed(1)}ms`);
  return helper;
}

/** fds opened for a helper: those it gets (closed once it has its own copies), and nsrun's own. */
class Fds {
  private given: number[] = [];
  private own: number[] = [];
  /** A close-on-exec copy of `fd` at PARK_AT or above, for the tape to dup3 into place. */
  give(fd: number): number {
    this.given.push(fd);
    const high = dupAtLeast(fd, PARK_AT);
    this.given.push(high);
    return high;
  }
  keep(fd: number): number {
    this.own.push(fd);
    return fd;
  }
  closeGiven(): void {
    for (const fd of this.given.splice(0)) close(fd);
  }
  closeAll(): void {
    this.closeGiven();
    for (const fd of this.own.splice(0)) close(fd);
  }
}

/** fds 0-4 of either helper: /dev/null twice, its log, the box's network and user namespaces. */
function standardFds(fds: Fds, log: string, pid: number, userns: boolean): number[] {
  return [
    fds.give(openSync("/dev/null", "r+")),
    fds.give(openSync("/dev/null", "r+")),
    fds.give(openSync(log, "w")),
    fds.give(openSync(`/proc/${pid}/ns/net`, "r")),
    ...(userns ? [fds.give(openSync(`/proc/${pid}/ns/user`, "r"))] : []),
  ];
}

/**
 * Start a helper as nsrun's child: a tape that arms its parent-death signal, puts `childFds` at 0,
 * 1, 2, ... (every other fd closes on exec), clears the signal mask and execs it.
 */
async function start(name: NetworkHelper, args: string[], childFds: number[], trace: Tracer): Promise<{ pid: number; pidfd: number }> {
  trace?.(`network: ${args.join(" ")}`);
  // The report pipe's write end parked high too, so that no dup3 onto 0, 1, 2, ... replaces it.
  const [reportRead, reportLow] = pipe(true);
  const report: [number, number] = [reportRead, dupAtLeast(reportLow, PARK_AT)];
  close(reportLow);
  const t = compileHelper({ kind: "program", report: report[1], what: `start ${name} for the box`, fds: childFds, path: programPath(name), args, env: HELPER_ENV });
  const run = await launch(t, { report });
  if (run.failure) {
    if (run.pid >= 0) {
      await waitExit(run.pidfd);
      close(run.pidfd);
    }
    throw new StageError("network", run.failure.message.replace(/^network: /, ""), run.failure.hint);
  }
  return { pid: run.pid, pidfd: run.pidfd };
}

async function startPasta(plan: NetworkPlan, pid: number, userns: boolean, trace: Tracer): Promise<Helper> {
  const dir = mkdtempSync(join(tmpdir(), "nsrun-pasta-"));
  const fds = new Fds();
  try {
    const [ready, readyWrite] = pipe(true);
    fds.keep(ready);
    const log = join(dir, "log");
    // pasta's fds: 0-4 as standardFds says, then the pipe its PID (readiness) goes into.
    const readyAt = userns ? 5 : 4;
    const args = pastaArgs(plan, { userns, root: process.getuid?.() === 0, pidFile: `/proc/self/fd/${readyAt}` });
    const run = await start("pasta", args, [...standardFds(fds, log, pid, userns), fds.give(readyWrite)], trace);
    fds.closeGiven(); // pasta has its own copies now

    // A PID in the pipe: pasta is set up. End of file without one: it has failed, and says why in its log.
    if (/^\d+/.test(await firstLine(ready))) return { name: "pasta", pid: run.pid, pidfd: run.pidfd, hold: null };
    throw await failed("pasta", run, log, args, plan);
  } finally {
    fds.closeAll();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function startSlirp4netns(plan: NetworkPlan, pid: number, userns: boolean, trace: Tracer): Promise<Helper> {
  // A private folder (mode 0700) for its log and API socket, whose path must fit sockaddr_un.
  const dir = mkdtempSync(join(tmpdir().length <= 64 ? tmpdir() : "/tmp", "nsrun-slirp4netns-"));
  const fds = new Fds();
  let run: { pid: number; pidfd: number } | null = null;
  let hold: number | null = null;
  try {
    const [ready, readyWrite] = pipe(true);
    fds.keep(ready);
    // The exit pipe: slirp4netns polls its read end, and exits once every write end has closed.
    // nsrun keeps the write end (close-on-exec) and hands it on to the supervisor.
    const [exitRead, exitWrite] = pipe(true);
    hold = exitWrite;
    const log = join(dir, "log");
    const apiSocket = plan.ports.length ? join(dir, "api.sock") : null;
    // slirp4netns's fds: 0-4 as standardFds says, then its --ready-fd and its --exit-fd.
    const readyFd = userns ? 5 : 4;
    const args = slirp4netnsArgs({ userns, readyFd, exitFd: readyFd + 1, apiSocket, hostLoopback: plan.hostLoopback });
    run = await start("slirp4netns", args, [...standardFds(fds, log, pid, userns), fds.give(readyWrite), fds.give(exitRead)], trace);
    fds.closeGiven();

    // "1", then end of file: tap0 is configured and the API socket listens. End of file alone: it has failed.
    if ((await firstLine(ready)) !== "1") {
      const error = await failed("slirp4netns", run, log, args, plan);
      run = null; // reaped
      throw error;
    }
    for (const [i, p] of plan.ports.entries()) {
      const request = addHostfwd(p);
      const answer = await apiRequest(apiSocket as string, request).catch((e: Error) => `no answer (${e.message})`);
      trace?.(`network: ${request} -> ${answer.trim()}`);
      let reply: { return?: unknown; error?: { desc?: string } } | null = null;
      try {
        reply = JSON.parse(answer);
      } catch {}
      if (!reply?.return) throw portRefused(i, p, "slirp4netns", reply?.error?.desc ?? (answer.trim() || "no answer"));
    }
    const helper: Helper = { name: "slirp4netns", pid: run.pid, pidfd: run.pidfd, hold };
    run = null;
    hold = null;
    return helper;
  } finally {
    // Failed after it started: end it here (it is no helper of the box's yet, so nothing else would).
    if (run) await endHelper({ name: "slirp4netns", ...run, hold: null });
    if (hold !== null) close(hold);
    fds.closeAll();
    // Its API socket goes with the folder: slirp4netns keeps listening, but nobody can reach it now.
    rmSync(dir, { recursive: true, force: true });
  }
}

/** One request on slirp4netns's API socket, and its answer: the write side shuts after the request. */
function apiRequest(path: string, body: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = "";
    const decoder = new TextDecoder();
    Bun.connect({
      unix: path,
      socket: {
        open(s) {
          // The request must arrive in one read (slirp4netns reads once): it is far below a pipe's size.
          if (s.write(body) !== Buffer.byteLength(body)) reject(new Error("the request was not written whole"));
          s.shutdown();
        },
        data(_s, chunk) {
          text += decoder.decode(chunk, { stream: true });
        },
        end(s) {
          resolve(text);
          s.end();
        },
        close() {
          resolve(text);
        },
        error(_s, e) {
          reject(e);
        },
        connectError(_s, e) {
          reject(e);
        },
      },
    }).catch(reject);
  });
}

/** A forwarded port the helper could not take, named by its config key. */
function portRefused(i: number, p: PortForward, name: NetworkHelper, detail: string): StageError {
  return new StageError(
    "network",
    `network.ports[${i}] "${portText(p)}": ${name} could not forward host port ${p.hostAddress ?? "0.0.0.0"}:${p.hostPort}/${p.proto}: ${detail}`,
    "the host port is in use, or below net.ipv4.ip_unprivileged_port_start (1024 by default) for an ordinary user: choose another host port",
  );
}

/** Lines slirp4netns logs on every start or end, which never say why it failed. */
const SLIRP_ROUTINE = /^(sent tapfd|received tapfd|child failed|parent failed|do_slirp (is exiting|failed)|WARNING|Starting slirp|\* )/;

/** A helper that ended before it was ready: wait for it (reaping it), and say why from its log. */
async function failed(name: NetworkHelper, run: { pid: number; pidfd: number }, log: string, args: string[], plan: NetworkPlan): Promise<StageError> {
  const exit = await waitExit(run.pidfd);
  close(run.pidfd);
  let lines: string[] = [];
  try {
    lines = readFileSync(log, "utf8").split("\n").filter(Boolean);
  } catch {}
  const message = name === "pasta" ? (lines.filter((l) => !/syslog/.test(l)).pop() ?? "") : (lines.find((l) => !SLIRP_ROUTINE.test(l)) ?? lines.pop() ?? "");
  const status = exit.signal !== null ? `killed by signal ${exit.signal}` : `exit status ${exit.code}`;
  // pasta names the option of a port it could not bind: "Failed to bind any port for '-t 127.0.0.1/8080:80'".
  const port = name === "pasta" ? plan.ports.findIndex((p) => message.includes(`'-${p.proto[0]} ${pastaPortSpec(p)}'`)) : -1;
  if (port >= 0) return portRefused(port, plan.ports[port], name, message);
  const hint =
    /tun/.test(message) && !usableTun()
      ? `${name} needs /dev/net/tun, which this user may not open here: make it usable (Debian's default is mode 0666: chmod 0666 /dev/net/tun), or use [network] mode = "none"`
      : 'check [network] ports (a host port already in use?), or use [network] mode = "none"';
  return new StageError("network", `start ${name} for the box: ${args.join(" ")}: ${message || status}`, hint);
}

/** End a helper and wait for it (its port must be free when nsrun returns). */
export async function endHelper(h: Helper): Promise<void> {
  kill(h.pid, F.SIGKILL); // a child not yet reaped: its PID is still its own
  await waitExit(h.pidfd);
  close(h.pidfd);
  if (h.hold !== null) close(h.hold);
}

/** What comes through `fd` up to its first newline, or until end of file (pasta keeps the pipe open). */
async function firstLine(fd: number): Promise<string> {
  const reader = Bun.file(fd).stream().getReader();
  let text = "";
  try {
    while (!text.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
  } catch {
    // a read error is an answer too: nothing ready
  } finally {
    reader.releaseLock();
  }
  return text;
}
