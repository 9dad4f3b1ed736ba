// init = true: nsrun's init stays PID 1 and runs the command as its child, like tini or
// `podman run --init`. As PID 1 it adopts orphans, so it reaps zombies; it has a handler for each
// forwarded signal, so signals from outside reach it, and it passes them to the command.
import { constants } from "node:os";
import { libc } from "../../ffi/libc";
import { resolveCommand, type ProcessPlan } from "../process";
import { FORWARDED_SIGNALS } from "../signals";

const P_ALL = 0;
const WEXITED = 4;
const WNOHANG = 1;
const WNOWAIT = 0x01000000;
/** How often orphans are reaped; they hold only a process-table slot meanwhile. */
const REAP_INTERVAL_MS = 200;

export async function runAsInit(plan: ProcessPlan, errorFd: number): Promise<never> {
  const path = resolveCommand(plan);
  const env = Object.fromEntries(plan.env.map((e) => [e.slice(0, e.indexOf("=")), e.slice(e.indexOf("=") + 1)]));
  const child = Bun.spawn([path, ...plan.args.slice(1)], { argv0: plan.args[0], env, stdio: ["inherit", "inherit", "inherit"] });
  libc.close(errorFd); // the command started: tell the supervisor setup is over
  for (const sig of FORWARDED_SIGNALS) process.on(sig, () => child.kill(sig));
  const reaper = setInterval(() => reapOrphans(child.pid), REAP_INTERVAL_MS);
  const code = await child.exited;
  clearInterval(reaper);
  // Our exit ends the PID namespace: the kernel kills whatever the command left behind.
  if (child.signalCode) process.exit(128 + (constants.signals[child.signalCode as keyof typeof constants.signals] ?? 0));
  process.exit(code);
}

/** Reap exited orphans, but never the command itself: Bun waits for that one. */
function reapOrphans(commandPid: number): void {
  const info = new Int32Array(32); // siginfo_t is 128 bytes; si_pid is at offset 16
  for (;;) {
    info.fill(0);
    if (libc.waitid(P_ALL, 0, info, WEXITED | WNOHANG | WNOWAIT) < 0) return;
    const pid = info[4];
    if (pid === 0 || pid === commandPid) return;
    libc.waitpid(pid, null, WNOHANG);
  }
}
