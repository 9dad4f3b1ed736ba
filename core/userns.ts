// Stage: give the new user namespace its id maps (user_namespaces(7), "User and group ID mappings").
//
// The process that created the namespace writes its own /proc/self files. An unprivileged writer may
// map exactly one id, its own: "0 <uid> 1". And it must write "deny" to setgroups before gid_map,
// or the kernel refuses gid_map with EPERM (since Linux 3.19, so that an unprivileged user cannot
// drop a group that a file's permissions deny them).
import * as F from "../ffi/flags";
import { close, openat, writeText } from "./tape/calls";
import type { Tape } from "./tape/tape";

export interface IdMapPlan {
  /** Written to /proc/self/setgroups first. */
  setgroups: "deny";
  uidMap: string;
  gidMap: string;
}

/** The single mapping: the caller's uid and gid become 0 inside. Ranges from /etc/subuid come later. */
export function planIdMaps(callerUid: number, callerGid: number): IdMapPlan {
  return { setgroups: "deny", uidMap: `0 ${callerUid} 1\n`, gidMap: `0 ${callerGid} 1\n` };
}

/** The writes, in the order the kernel requires. */
export function idMapWrites(plan: IdMapPlan): Array<[path: string, text: string]> {
  return [
    ["/proc/self/setgroups", `${plan.setgroups}\n`],
    ["/proc/self/uid_map", plan.uidMap],
    ["/proc/self/gid_map", plan.gidMap],
  ];
}

/** Tape: the box's first process writes its own maps, in the kernel's order. */
export function emitIdMaps(t: Tape, plan: IdMapPlan): void {
  const file = t.reg("file");
  for (const [path, text] of idMapWrites(plan)) {
    t.doing(`write ${JSON.stringify(text.trimEnd())} to ${path}`, WRITE_HINTS);
    openat(t, F.AT_FDCWD, path, F.O_WRONLY, 0, { dst: file });
    writeText(t, file, text);
    close(t, file);
  }
}

const WRITE_HINTS = {
  EPERM:
    "writing uid_map/gid_map was refused; on Ubuntu 23.10+ this is AppArmor's `kernel.apparmor_restrict_unprivileged_userns`: allow nsrun with an AppArmor profile, or set that sysctl to 0",
};
