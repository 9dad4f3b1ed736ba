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
import { readFileSync } from "node:fs";
import { applyBoundingSet, applyCapabilitySets, lastCapability } from "../capabilities";
import { dropPrivileges, enterCwd, execCommand, newSession, sealFds } from "../process";
import { applyRlimits } from "../rlimits";
import { applySeccomp } from "../seccomp";
import { type StageTitle, stageLine } from "../pipeline";
import { applyPrivateRoot, applyRootfs, NEWROOT, OLDROOT } from "../rootfs";
import { tracerFor } from "./self";
import { FD } from "./fds";

export async function initStage(): Promise<never> {
  const plan = JSON.parse(readAll(FD.plan).toString()) as BoxPlan;
  const trace = tracerFor("init", plan.trace);
  trace?.(`start  +${performance.now().toFixed(1)}ms since exec`);
  const stage = (title: StageTitle) => trace?.(stageLine(title));
  const sys = new LinuxSys(trace);
  sys.close(FD.plan);
  // Our parent, the namespace stage, exits right after starting us, and the host, a child subreaper,
  // adopts us. A parent-death signal armed before that hand-over would fire at it (the kernel sends
  // it when the parent exits, whoever adopts us), so wait: the host closes the go pipe once it has
  // reaped the namespace stage. From then on, if the host dies, so does the box (and with PID 1,
  // its whole PID namespace). The error pipe's read end is the host's, so it tells whether the
  // host died before the signal was armed (its death also closes the go pipe).
  readAll(FD.go);
  sys.close(FD.go);
  sys.prctl(F.PR_SET_PDEATHSIG, F.SIGKILL);
  if (peerGone(FD.error)) process.exit(EXIT_NSRUN_FAILED);
  try {
    const lastCap = lastCapability((path) => readFileSync(path, "utf8")); // the host's /proc, while we see it

    stage("mount namespace and private root");
    during("namespaces", "unshare the mount namespace", () => sys.unshare(F.CLONE_NEWNS));
    applyPrivateRoot(sys);

    stage("rootfs");
    applyRootfs(sys, plan.rootfs);
    const rootfd = sys.openat(F.AT_FDCWD, NEWROOT, F.O_PATH | F.O_DIRECTORY);

    stage("mounts");
    // Mounts go onto O_PATH fds, named through the host's /proc, which is still at /oldroot/proc.
    // /proc for the box is mounted here, before the pivot: an unprivileged proc mount is allowed
    // only while a fully visible proc is mounted in the namespace (the host's, until we detach it).
    applyMounts(sys, rootfd, plan.mounts, { hostRoot: OLDROOT, fdPath: (fd) => `${OLDROOT}/proc/self/fd/${fd}` });

    stage("hostname");
    applyHostname(sys, plan.hostname);

    stage("network");
    applyLoopback(sys, plan.loopback);

    stage("pivot_root");
    applyPivot(sys);
    sys.close(rootfd);

    stage("process");
    enterCwd(sys, plan.process);
    applyRlimits(sys, plan.rlimits); // raising a hard limit needs CAP_SYS_RESOURCE: before the drop
    newSession(sys);

    stage("capabilities and user");
    const sec = plan.security;
    // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load it while we have it (as runc does).
    if (sec.seccomp && !sec.noNewPrivileges) applySeccomp(sys, sec.seccomp);
    applyBoundingSet(sys, sec.capabilities, lastCap); // needs CAP_SETPCAP: before the switch of user
    dropPrivileges(sys, plan.process);
    applyCapabilitySets(sys, sec.capabilities, plan.process.uid);
    // Changing credentials cleared the parent-death signal; set it again, then make sure the host
    // did not die in between.
    sys.prctl(F.PR_SET_PDEATHSIG, F.SIGKILL);
    if (peerGone(FD.error)) process.exit(EXIT_NSRUN_FAILED);
    if (sec.noNewPrivileges) during("process", "set no_new_privs", () => sys.prctl(F.PR_SET_NO_NEW_PRIVS, 1));
    // An init that stays as PID 1 is nsrun itself: non-dumpable, so the box cannot open /proc/1/exe.
    if (plan.process.init) sys.prctl(F.PR_SET_DUMPABLE, 0);

    stage("seccomp and execve");
    sealFds(sys);
    // Last: the filter refuses mount() and friends, which the stages above needed.
    if (sec.seccomp && sec.noNewPrivileges) applySeccomp(sys, sec.seccomp);
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
