// The host process, after planning: it starts the namespace stage, adopts the init stage (as a
// child subreaper), relays a setup error if there is one, passes signals on to the box, and exits
// with the box's status. It is the one nsrun process that stays while the box runs.
import { readFileSync } from "node:fs";
import * as F from "../../ffi/flags";
import { readAll, writeAll } from "../../ffi/io";
import { libc } from "../../ffi/libc";
import { applyCgroup, oomKilled, removeCgroup } from "../cgroup";
import { EXIT_NSRUN_FAILED, type ErrorReport, formatReport } from "../errors";
import type { BoxPlan } from "../plan";
import { deliveryFor, FORWARDED_SIGNALS, type ForwardedSignal, SIGNAL_NUMBERS } from "../signals";
import { stageLine } from "../pipeline";
import { abandonNamespaceStage, claimNamespaceStage } from "./launch";
import { tracerFor } from "./self";

const WNOHANG = 1;

export async function supervise(plan: BoxPlan): Promise<never> {
  let init = 0;
  let killedBy: number | null = null;
  let exitStatus: number | null = null;
  const early: ForwardedSignal[] = [];
  const deliver = (sig: ForwardedSignal) => {
    if (!init || exitStatus !== null) return void early.push(sig);
    let status: string | null = null;
    if (!plan.process.init) {
      try {
        status = readFileSync(`/proc/${init}/status`, "utf8");
      } catch {
        return; // already gone
      }
    }
    if (deliveryFor(sig, status) === "kill") {
      killedBy ??= SIGNAL_NUMBERS[sig];
      libc.kill(init, F.SIGKILL);
    } else {
      libc.kill(init, SIGNAL_NUMBERS[sig]);
    }
  };
  for (const sig of FORWARDED_SIGNALS) process.on(sig, () => deliver(sig));

  const trace = tracerFor("host", plan.trace);
  /** Every way out goes through here, so the box's cgroup never outlives it. */
  const finish = async (code: number, report?: ErrorReport): Promise<never> => {
    await abandonNamespaceStage(); // when we fail before handing it the plan
    if (plan.cgroup) {
      if (code === 137 && !report && oomKilled(plan.cgroup))
        process.stderr.write(`nsrun: the box ran out of memory: the kernel's OOM killer ended it at its limit of ${plan.cgroup.memoryText}\n`);
      await removeCgroup(plan.cgroup, trace);
    }
    if (report) process.stderr.write(formatReport(report));
    process.exit(code);
  };

  trace?.(stageLine("cgroup"));
  if (plan.cgroup) {
    try {
      applyCgroup(plan.cgroup, trace);
    } catch (e) {
      return finish(EXIT_NSRUN_FAILED, { message: `cgroup: ${(e as Error).message}`, hint: cgroupHint(plan.cgroup.version), exitCode: EXIT_NSRUN_FAILED });
    }
  }

  // Usually started already, while the host was planning (launch.ts).
  const { ns, planWrite, errRead, pidRead, goWrite } = claimNamespaceStage();
  writeAll(planWrite, Buffer.from(JSON.stringify(plan)));
  libc.close(planWrite);

  // The reads block only for the few milliseconds of setup: the pid arrives as the namespace stage
  // exits; once it is reaped (and so the init stage is ours) the go pipe tells init to carry on; the
  // error pipe closes unwritten when the init stage execs the command.
  init = Number(readAll(pidRead).toString().trim()) || 0;
  libc.close(pidRead);
  const nsCode = await ns.exited;
  libc.close(goWrite);
  const reportBytes = readAll(errRead);
  libc.close(errRead);
  if (reportBytes.length) {
    if (init) await waitFor(init);
    const report = JSON.parse(reportBytes.toString()) as ErrorReport;
    return finish(report.exitCode ?? EXIT_NSRUN_FAILED, report);
  }
  if (!init) return finish(EXIT_NSRUN_FAILED, { message: `namespace stage: exited with ${ns.signalCode ?? nsCode} before starting the box`, exitCode: EXIT_NSRUN_FAILED });

  for (const sig of early.splice(0)) deliver(sig);
  const status = await waitFor(init);
  return finish(killedBy !== null ? 128 + killedBy : status);

  /**
   * The init stage is not Bun's own child, so wait for it ourselves, on each SIGCHLD. Bun's only
   * child, the namespace stage, is reaped by now, so everything else that exits is ours: orphans the
   * box left behind (with pid = false they are adopted by us) are reaped too, and ignored.
   */
  function waitFor(pid: number): Promise<number> {
    return new Promise((resolve) => {
      const st = new Int32Array(1);
      const check = () => {
        while (exitStatus === null) {
          const reaped = libc.waitpid(-1, st, WNOHANG);
          if (reaped <= 0) return;
          if (reaped !== pid) continue;
          const raw = st[0];
          const signal = raw & 0x7f;
          exitStatus = signal === 0 ? (raw >> 8) & 0xff : 128 + signal;
          process.off("SIGCHLD", check);
          clearInterval(backstop);
          resolve(exitStatus);
        }
      };
      process.on("SIGCHLD", check);
      // A SIGCHLD that came before the listener is not repeated; look now and now and then.
      const backstop = setInterval(check, 250);
      check();
    });
  }
}

function cgroupHint(version: 1 | 2): string {
  return version === 2
    ? "nsrun needs a cgroup v2 delegated to you in which it is alone (it moves itself to a leaf so its cgroup can hand controllers down): run it as `systemd-run --user --scope -p Delegate=yes nsrun ...`, or delegate with a user@.service drop-in `Delegate=cpu cpuset io memory pids`"
    : "cgroup v1 needs root";
}
