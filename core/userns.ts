// Stage: give the new user namespace its id maps (user_namespaces(7), "User and group ID mappings").
//
// The process that created the namespace writes its own /proc/self files. An unprivileged writer may
// map exactly one id, its own: "0 <uid> 1". And it must write "deny" to setgroups before gid_map,
// or the kernel refuses gid_map with EPERM (since Linux 3.19, so that an unprivileged user cannot
// drop a group that a file's permissions deny them).

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
