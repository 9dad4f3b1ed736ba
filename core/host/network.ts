// The host's part of the network stage for mode "nat": start pasta on the box's network namespace
// while the box waits at its sync point. nsrun opens the namespaces (it may, as their owner or as
// root) and hands them to pasta as fds 3 and 4; pasta configures the box's interface, routes and
// DNS forwarding, then writes its PID into a pipe, which tells nsrun it is ready.
//
// pasta runs in the foreground as nsrun's child, started by the executor (as a box's first process
// is) so that its parent-death signal is armed before execve: a SIGKILLed nsrun takes pasta with
// it, and the port it held is free again. Otherwise the supervisor ends and reaps it after the box.
import { mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as F from "../../ffi/flags";
import { pipe } from "../../ffi/io";
import { check, libc } from "../../ffi/libc";
import { waitExit } from "../../ffi/wait";
import { StageError } from "../errors";
import { type NetworkPlan, pastaArgs, pastaPath, usableTun } from "../network";
import { closeRange, dup3, execvePath, prctl, unblockSignals } from "../tape/calls";
import { Tape } from "../tape/tape";
import { runTape } from "./start";

/** A process started for a box that ends with it. */
export interface Helper {
  pid: number;
  pidfd: number;
}

/** Where the fds pasta gets are parked before the tape puts them at 0-5 (above any of those). */
const PARK_AT = 64;

/** Start pasta for process `pid`'s network namespace. */
export async function startPasta(plan: NetworkPlan, pid: number, userns: boolean): Promise<Helper> {
  const dir = mkdtempSync(join(tmpdir(), "nsrun-pasta-"));
  const opened: number[] = [];
  const park = (fd: number) => {
    opened.push(fd);
    const high = check("fcntl", libc.fcntl(fd, F.F_DUPFD_CLOEXEC, PARK_AT), `fcntl(${fd}, F_DUPFD_CLOEXEC, ${PARK_AT})`);
    opened.push(high);
    return high;
  };
  try {
    const [ready, readyWrite] = pipe(true);
    opened.push(ready);
    const log = join(dir, "log");
    // pasta's fds, in pasta's numbering: 0 and 1 /dev/null, 2 a log nsrun reads if it fails, 3 the
    // network namespace, 4 the user namespace, 5 the pipe its PID (readiness) goes into.
    const fds = [
      park(openSync("/dev/null", "r+")),
      park(openSync("/dev/null", "r+")),
      park(openSync(log, "w")),
      park(openSync(`/proc/${pid}/ns/net`, "r")),
      ...(userns ? [park(openSync(`/proc/${pid}/ns/user`, "r"))] : []),
    ];
    const args = pastaArgs(plan, { userns, root: process.getuid?.() === 0, pidFile: `/proc/self/fd/${userns ? 5 : 4}` });
    const readyAt = userns ? 5 : 4;

    const t = new Tape();
    const [reportRead, reportWrite] = pipe(true);
    t.reportFd = reportWrite;
    t.stage("network", "start pasta for the box");
    prctl(t, F.PR_SET_PDEATHSIG, F.SIGKILL, "SIGKILL");
    fds.forEach((fd, i) => dup3(t, fd, i));
    dup3(t, park(readyWrite), readyAt);
    closeRange(t, readyAt + 1, 0xffffffff, F.CLOSE_RANGE_CLOEXEC);
    unblockSignals(t);
    execvePath(t, pastaPath(), args, ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]);
    const run = await runTape(t, { reportRead, reportWrite });
    for (const fd of opened.splice(1)) libc.close(fd); // all but `ready`: pasta has its own copies now
    if (run.pid < 0) throw new StageError("network", `start pasta for the box: ${run.cloneText}: errno ${-run.pid}`);

    // A PID in the pipe: pasta is set up. End of file without one: it has failed, and says why in its log.
    const said = await firstLine(ready);
    if (/^\d+/.test(said)) return { pid: run.pid, pidfd: run.pidfd };
    const exit = await waitExit(run.pidfd);
    libc.close(run.pidfd);
    let message = "";
    try {
      message = readFileSync(log, "utf8").split("\n").filter((l) => l && !/syslog/.test(l)).pop() ?? "";
    } catch {}
    const status = exit.signal !== null ? `killed by signal ${exit.signal}` : `exit status ${exit.code}`;
    const hint =
      /tun/.test(message) && !usableTun()
        ? "pasta needs /dev/net/tun, which this user may not open here: make it usable (Debian's default is mode 0666: chmod 0666 /dev/net/tun), or use [network] mode = \"none\""
        : 'check [network] ports (a host port already in use?), or use [network] mode = "none"';
    throw new StageError("network", `start pasta for the box: ${args.join(" ")}: ${message || status}`, hint);
  } finally {
    for (const fd of opened) libc.close(fd);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** End a helper and wait for it (its port must be free when nsrun returns). */
export async function endHelper(h: Helper): Promise<void> {
  libc.kill(h.pid, F.SIGKILL); // a child not yet reaped: its PID is still its own
  await waitExit(h.pidfd);
  libc.close(h.pidfd);
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
    // a read error is an answer too: no PID
  } finally {
    reader.releaseLock();
  }
  return text;
}
