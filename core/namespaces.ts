// Stage: unshare the namespaces. The order is data (as in youki): one list, walked by one function.
//
// All kinds are created by ONE unshare(2) call. When CLONE_NEWUSER is among the flags the kernel
// creates the user namespace first and makes it the owner of the others, which is what later
// permits an ordinary user to mount, pivot_root and set the hostname in them (user_namespaces(7)).
// CLONE_NEWPID and CLONE_NEWTIME do not move the caller: they apply to its next child, which is
// why the init stage is a new process (pid_namespaces(7), time_namespaces(7)).
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
