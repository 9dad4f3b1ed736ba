// Stage: the namespaces. The order is data (as in youki): one list, walked by one function.
//
// All kinds are created by ONE clone3(2) call, which starts the box's first process in them. When
// CLONE_NEWUSER is among the flags the kernel creates the user namespace first and makes it the owner
// of the others, which is what later permits an ordinary user to mount, pivot_root and set the
// hostname in them (user_namespaces(7)). The new process is PID 1 of the new PID namespace, which is
// why it, not nsrun, mounts the box's /proc (pid_namespaces(7)).
import * as F from "../ffi/flags";

export const NAMESPACE_ORDER = [
  ["user", F.CLONE_NEWUSER],
  ["mount", F.CLONE_NEWNS],
  ["pid", F.CLONE_NEWPID],
  ["uts", F.CLONE_NEWUTS],
  ["ipc", F.CLONE_NEWIPC],
  ["net", F.CLONE_NEWNET],
  ["cgroup", F.CLONE_NEWCGROUP],
  ["time", F.CLONE_NEWTIME],
] as const;

export type NamespaceKind = (typeof NAMESPACE_ORDER)[number][0];

/** The kinds to create, in the canonical order. */
export function planNamespaces(wanted: Record<NamespaceKind, boolean>): NamespaceKind[] {
  return NAMESPACE_ORDER.filter(([kind]) => wanted[kind]).map(([kind]) => kind);
}

export function unshareFlags(kinds: readonly NamespaceKind[]): number {
  let flags = 0;
  for (const [kind, flag] of NAMESPACE_ORDER) if (kinds.includes(kind)) flags |= flag;
  return flags;
}

/**
 * The clone3(2) flags. A cgroup namespace takes the process's cgroup at creation as its root, so
 * when the box joins its cgroup from inside (cgroup v1: it writes cgroup.procs itself), the cgroup
 * namespace is made after that, with unshare(2), instead of here.
 */
export function cloneFlags(kinds: readonly NamespaceKind[], cgroupJoinedInside: boolean): number {
  return unshareFlags(cgroupJoinedInside ? kinds.filter((k) => k !== "cgroup") : kinds);
}
