// Rootless ownership through subordinate ids. Bun cannot enter a user namespace (it is
// multi-threaded), so an ordinary user's import extracts as the user, the extractor records what it
// could not give (owners other than 0:0, refused file capabilities), and a tape gives it here:
// clone3(CLONE_NEWUSER), wait while nsrun writes the same maps a rootless box gets ("auto": image
// uid 0 is the user, uid N the Nth subordinate id), become root of that namespace, then for each
// record chown, re-apply setuid/setgid, set the capability, by fd only, from an fd of the image root.
// The same namespace removes such a tree, which the user alone can no longer do.
import { existsSync } from "node:fs";
import { basename, dirname } from "node:path";
import { errnoName } from "../../ffi/errno";
import { sealedStub } from "../../ffi/executor/load";
import * as F from "../../ffi/flags";
import * as fs from "../../ffi/fs";
import { pipe } from "../../ffi/io";
import { q, strerror } from "../../ffi/libc";
import { type Exit, waitExit } from "../../ffi/wait";
import { compileHelper } from "../stages/compile";
import { StageError } from "../errors";
import { writeIdMaps } from "../host/idmaps";
import { launch, type Launched } from "../launch/launch";
import { SYNC } from "../launch/sync";
import { emitExec, emitSealFds } from "../stages/process";
import { close, dup3, exitGroup, fchdir, fchmodat, fchownat, openat2, setxattr } from "../tape/calls";
import { Tape } from "../tape/tape";
import { type IdMapPlan, type IdRange, idMapped, planIdMaps, readSubordinateIds } from "../stages/userns";
import { CAPABILITY_XATTR, type OwnerRecord, type Owners } from "./layers";

/** Who owns an import's files: the layers' owners (root), the user alone, or the layers' owners through the user's subordinate ids. */
export type OwnerPlan = { kind: "kept" } | { kind: "user"; uid: number } | { kind: "subordinate"; map: IdMapPlan };

/** The map a rootless box gets with [user_namespace] mode = "auto", when it has ranges; else the user alone. */
export function ownerPlan(keepOwners?: boolean): OwnerPlan {
  const uid = process.getuid?.() ?? 0;
  const gid = process.getgid?.() ?? 0;
  if (keepOwners ?? uid === 0) return { kind: "kept" };
  if (keepOwners === false || uid === 0) return { kind: "user", uid };
  const map = planIdMaps({ uid, gid }, readSubordinateIds(uid), "auto");
  return map.writer === "newuidmap" ? { kind: "subordinate", map } : { kind: "user", uid };
}

/** The record's `owners`: what the tree's host owners mean. */
export type OwnersRecord = "kept" | { uid: number } | { map: "subordinate"; uidMap: IdRange[]; gidMap: IdRange[] };

export function ownersRecord(plan: OwnerPlan): OwnersRecord {
  if (plan.kind === "kept") return "kept";
  if (plan.kind === "user") return { uid: plan.uid };
  return { map: "subordinate", uidMap: plan.map.uidMap, gidMap: plan.map.gidMap };
}

/** Records per tape: each is 3-7 ops; a chunk keeps one tape's memory at a few MB. */
const CHUNK = 4096;

/** Give `owners` (real paths inside the image at `rootfs`) inside a user namespace with `map`. */
export async function giveOwners(rootfs: string, owners: Owners, map: IdMapPlan, name: string): Promise<void> {
  const top = (ranges: IdRange[]) => Math.max(...ranges.map((r) => r.inside + r.count - 1));
  for (const [path, r] of owners) {
    if (idMapped(map.uidMap, r.uid) && idMapped(map.gidMap, r.gid)) continue;
    throw new StageError(
      "image",
      `${name}: ${q(`/${path}`)} is owned by ${r.uid}:${r.gid}, beyond the ids your user namespace maps (uids 0-${top(map.uidMap)}, gids 0-${top(map.gidMap)})`,
      "the layers' owners must fall within your first ranges in /etc/subuid and /etc/subgid (65536 ids are the usual)",
    );
  }
  const rootfd = fs.openat2(F.AT_FDCWD, rootfs, F.O_PATH | F.O_DIRECTORY, 0, rootfs);
  try {
    const entries = [...owners];
    for (let i = 0; i < entries.length; i += CHUNK) {
      const what = `${name}: give the layers' owners in a user namespace`;
      const run = await asNamespaceRoot(map, { what, prefix: name }, [rootfd], (t) => emitOwners(t, rootfd, entries.slice(i, i + CHUNK)));
      const exit = await run.exit;
      if (exit.code !== 0) throw new StageError("image", `${what}: ${exit.signal !== null ? `killed by signal ${exit.signal}` : `exit status ${exit.code}`}`);
    }
  } finally {
    fs.close(rootfd);
  }
}

/**
 * Tape, as root of the namespace: each entry reached from the image root's fd with openat2
 * (RESOLVE_IN_ROOT: a symlink on the way stays inside the image; O_NOFOLLOW: a symlink is itself
 * changed), then changed through that fd only; exit_group(0) at the end.
 */
export function emitOwners(t: Tape, rootfd: number, entries: Array<[path: string, record: OwnerRecord]>): void {
  const fd = t.reg("entry");
  for (const [path, r] of entries) {
    const shown = q(`/${path}`);
    t.doing(`${shown}: set its owner to ${r.uid}:${r.gid}`, CHOWN_HINTS);
    openat2(t, rootfd, path || ".", F.O_PATH | F.O_NOFOLLOW, F.RESOLVE_IN_ROOT | F.RESOLVE_NO_MAGICLINKS, { dst: fd });
    fchownat(t, fd, "", r.uid, r.gid, F.AT_EMPTY_PATH);
    // This order matters: chown cleared setuid/setgid and any file capability, so both come after it.
    // An O_PATH fd takes neither fchmod nor fsetxattr: its /proc/self/fd path leads to the same file.
    if (r.mode !== null) {
      t.doing(`${shown}: set its mode back to 0${r.mode.toString(8)}`);
      fchmodat(t, F.AT_FDCWD, t.fdpath(fd, ""), r.mode & 0o7777);
    }
    if (r.capability) {
      // Inside the namespace the kernel writes a v3 capability whose root is this namespace's root (the user).
      t.doing(`${shown}: set its file capability`);
      setxattr(t, t.fdpath(fd, ""), CAPABILITY_XATTR, r.capability, 0);
    }
    close(t, fd);
  }
  exitGroup(t, 0);
}

const CHOWN_HINTS = {
  EPERM:
    "the user namespace has no capabilities: on Ubuntu 23.10+ AppArmor's kernel.apparmor_restrict_unprivileged_userns takes them; allow nsrun with an AppArmor profile, or set that sysctl to 0",
};

/**
 * Remove `path`, a tree that may hold files of the user's subordinate ids (an image given owners,
 * or written by a rootless box), which the user may neither list nor unlink outside the namespace:
 * rm -rf --one-file-system runs as root of the namespace, from the path's parent (fchdir to an fd).
 * GNU rm walks with openat and never follows a symlink out of the tree.
 */
export async function removeAsNamespaceRoot(path: string, map: IdMapPlan): Promise<void> {
  const what = `remove ${q(path)} as root of a user namespace with your subordinate ids`;
  const parentfd = fs.openat2(F.AT_FDCWD, dirname(path), F.O_PATH | F.O_DIRECTORY, 0, dirname(path));
  const stub = sealedStub();
  const [errRead, errWrite] = pipe(true);
  const open = new Set([parentfd, stub, errRead, errWrite]);
  const closeOnce = (fd: number) => open.delete(fd) && fs.close(fd);
  try {
    const run = await asNamespaceRoot(map, { what, prefix: what }, [parentfd, stub, errWrite], (t, report) => {
      t.stage("process", "run rm");
      t.doing(`enter ${q(dirname(path))}`);
      fchdir(t, parentfd);
      t.doing("send rm's errors to nsrun");
      dup3(t, errWrite, 2);
      emitSealFds(t, report);
      const args = ["rm", "-rf", "--one-file-system", "--", basename(path)];
      emitExec(t, { args, env: ["PATH=/usr/bin:/bin", "LC_ALL=C"], cwd: "/", cwdFallback: false, uid: 0, gid: 0, setgroups: true, init: false, terminal: null }, { stubFd: stub, reportFd: report });
    });
    // rm has started: only it holds the pipe's write end now, so end of file comes when it exits.
    closeOnce(errWrite);
    const [exit, errors] = await Promise.all([run.exit, new Response(Bun.file(errRead).stream()).text()]);
    if (exit.code !== 0 || existsSync(path)) {
      const last = errors.trim().split("\n").pop();
      throw new StageError("image", `${what}: rm -rf: ${exit.signal !== null ? `killed by signal ${exit.signal}` : `exit status ${exit.code}`}${last ? `: ${last}` : ""}`);
    }
  } finally {
    for (const fd of [...open]) closeOnce(fd);
  }
}

/**
 * Run a tape as root of a new user namespace with `map`, which nsrun writes (newuidmap) at the sync
 * point. `body` emits the rest and ends in exit_group or the stub's execve. Setup failures become
 * one-line StageErrors: `what` names the whole, `prefix` starts a failed op's message. Resolves once
 * the tape has ended or exec'd, with the process's exit to come.
 */
async function asNamespaceRoot(
  map: IdMapPlan,
  names: { what: string; prefix: string },
  keep: number[],
  body: (t: Tape, reportFd: number) => void,
): Promise<{ exit: Promise<Exit> }> {
  const { what, prefix } = names;
  const report = pipe(true);
  const [syncRead, syncWrite] = pipe(true);
  const t = compileHelper({ kind: "as-root", report: report[1], sync: syncRead, what, map, keep, body });
  let run: Launched;
  try {
    run = await launch(t, { report, syncWrite, sync: { [SYNC.ID_MAPS]: (pid: number) => writeIdMaps(map, pid) } });
  } finally {
    fs.close(syncRead);
    fs.close(syncWrite);
  }
  const failure = run.failure;
  if (run.pid < 0) throw new StageError("image", `${what}: ${failure?.message}`, failure?.hint);
  const exit = waitExit(run.pidfd).finally(() => fs.close(run.pidfd));
  if (!failure) return { exit };
  await exit;
  switch (failure.kind) {
    case "host":
      throw new StageError("image", `${what}: ${failure.message}`, "newuidmap and newgidmap (package uidmap) write the ranges of /etc/subuid and /etc/subgid: check your lines there");
    case "exec":
      throw new StageError("image", `${what}: cannot start it: ${errnoName(failure.errno)} (${strerror(failure.errno)})`);
    case "op": {
      const op = t.ops[failure.index];
      if (!op) throw new StageError("image", `${what}: the tape ran out (op ${failure.index}): a bug in nsrun`);
      const call = op.name === "fail" ? op.text : `${op.text}: ${errnoName(failure.errno)} (${strerror(failure.errno)})`;
      throw new StageError("image", `${prefix}: ${op.step.what}: ${call}`, failure.hint);
    }
    default:
      throw new StageError("image", `${what}: ${failure.message}`, failure.hint);
  }
}
