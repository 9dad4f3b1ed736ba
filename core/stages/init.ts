// The init stage: PID 1 of the box's PID namespace. It owns the box's mount namespace and walks the
// algorithm's remaining stages in order, then becomes the command (or, with init = true, its parent).
import * as F from "../../ffi/flags";
import { peerGone, readAll, writeAll } from "../../ffi/io";
import { LinuxSys } from "../../ffi/sys";
import { during, EXIT_NSRUN_FAILED, toReport } from "../errors";
import { applyHostname } from "../hostname";
import { applyMounts } from "../mounts";
import { applyLoopback } from "../network";
import { applyPivot } from "../pivot";
import type { BoxPlan } from "../plan";
import { dropPrivileges, enterCwd, execCommand, sealFds } from "../process";
import { applyRootfs, NEWROOT, OLDROOT } from "../rootfs";
import { tracerFor } from "./self";
import { FD } from "./fds";

export async function initStage(): Promise<never> {
  const plan = JSON.parse(readAll(FD.plan).toString()) as BoxPlan;
  const sys = new LinuxSys(tracerFor("init", plan.trace));
  sys.close(FD.plan);
  // Our parent, the namespace stage, exits right after starting us; the host, a child subreaper,
  // adopts us. Once the alive pipe reads end of file that has happened: from then on, if the host
  // dies, so does the box (and with PID 1, its whole PID namespace). The error pipe's read end is
  // the host's, so it tells whether the host died before the death signal was armed.
  readAll(FD.alive);
  sys.close(FD.alive);
  sys.prctl(F.PR_SET_PDEATHSIG, F.SIGKILL);
  if (peerGone(FD.error)) process.exit(EXIT_NSRUN_FAILED);
  try {
    during("namespaces", "unshare the mount namespace", () => sys.unshare(F.CLONE_NEWNS));
    applyRootfs(sys, plan.rootfs);
    const rootfd = sys.openat(F.AT_FDCWD, NEWROOT, F.O_PATH | F.O_DIRECTORY);
    // Mounts go onto O_PATH fds, named through the host's /proc, which is still at /oldroot/proc.
    // /proc for the box is mounted here, before the pivot: an unprivileged proc mount is allowed
    // only while a fully visible proc is mounted in the namespace (the host's, until we detach it).
    applyMounts(sys, rootfd, plan.mounts, { hostRoot: OLDROOT, fdPath: (fd) => `${OLDROOT}/proc/self/fd/${fd}` });
    applyHostname(sys, plan.hostname);
    applyLoopback(sys, plan.loopback);
    applyPivot(sys);
    sys.close(rootfd);
    enterCwd(sys, plan.process);
    dropPrivileges(sys, plan.process);
    // Changing credentials cleared the parent-death signal; set it again, then make sure the host
    // did not die in between.
    sys.prctl(F.PR_SET_PDEATHSIG, F.SIGKILL);
    if (peerGone(FD.error)) process.exit(EXIT_NSRUN_FAILED);
    sealFds(sys);
    if (plan.process.init) {
      const { runAsInit } = await import("./pid1");
      return await runAsInit(plan.process, FD.error);
    }
    return execCommand(sys, plan.process);
  } catch (e) {
    const report = toReport(e, "init");
    writeAll(FD.error, Buffer.from(JSON.stringify(report)));
    process.exit(report.exitCode);
  }
}
