// Stage: capabilities (capabilities(7)) and the switch to the box's user. The box keeps only the
// set it was given, podman's by default, in its bounding, permitted, effective and inheritable
// sets; the ambient set is empty. The bounding set is cut first, while we still hold CAP_SETPCAP;
// it is what limits everything a later execve can give, even to uid 0.
import * as F from "../../ffi/flags";
import { capset, capsetSets, prctl, setgroups, setresgid, setresuid } from "../tape/calls";
import type { Tape } from "../tape/tape";

/** <linux/capability.h>, in number order. */
export const CAPABILITIES = [
  "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
  "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
  "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
  "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
  "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF",
  "CHECKPOINT_RESTORE",
] as const;

/** podman's default set. */
export const DEFAULT_CAPABILITIES = [
  "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
];

/** "net_admin", "NET_ADMIN" and "CAP_NET_ADMIN" all name capability 12; anything else is null. */
export function capabilityNumber(name: string): number | null {
  const i = CAPABILITIES.indexOf(name.toUpperCase().replace(/^CAP_/, "") as (typeof CAPABILITIES)[number]);
  return i === -1 ? null : i;
}

/** The 64-bit mask /proc/PID/status shows as CapEff/CapBnd, for a list of capability numbers. */
export function capabilityMask(caps: number[]): bigint {
  return caps.reduce((m, c) => m | (1n << BigInt(c)), 0n);
}

/** Tape: cut the bounding set to `keep`. Needs CAP_SETPCAP, so it comes before the switch of user. */
export function emitBoundingSet(t: Tape, keep: number[], lastCap: number): void {
  t.doing(`keep only ${keep.map((c) => CAPABILITIES[c]).join(",") || "none"} in the bounding set`);
  for (let cap = 0; cap <= lastCap; cap++) if (!keep.includes(cap)) prctl(t, F.PR_CAPBSET_DROP, cap, `CAP_${CAPABILITIES[cap] ?? cap}`);
}

export interface UserPlan {
  uid: number;
  gid: number;
  setgroups: boolean;
}

/** Tape: become the box's user. Group first: after setresuid to a non-root uid it could no longer change. */
export function emitUser(t: Tape, u: UserPlan): void {
  t.doing(`switch to user ${u.uid}:${u.gid}`, {
    EINVAL: "the uid or gid is not mapped in the box's user namespace; a rootless box maps only 0 unless subordinate ids are set up",
  });
  if (u.setgroups) setgroups(t, []);
  setresgid(t, u.gid);
  setresuid(t, u.uid);
}

/** The four sets a process spec gives (OCI process.capabilities), as capability numbers. */
export interface CapabilitySets {
  effective: number[];
  permitted: number[];
  inheritable: number[];
  ambient: number[];
}

/**
 * Tape: after the switch, uid 0 keeps exactly the set; any other uid has lost them all already.
 * With `exact` (OCI's process.capabilities) the sets are set as given, whatever the uid, as runc
 * does: the caller kept the permitted set across the switch of user with PR_SET_KEEPCAPS (see
 * emitKeepCapabilities), capset(2) sets effective, permitted and inheritable, and the ambient
 * ones are raised one by one (the plan kept only those both permitted and inheritable, which the
 * kernel requires). execve(2) then does the rest (capabilities(7)): a process with another uid
 * keeps only its ambient set (and what a file's capabilities give, within the bounding set).
 */
export function emitCapabilitySets(t: Tape, keep: number[], uid: number, exact?: CapabilitySets): void {
  t.doing(exact ? "set the effective, permitted and inheritable capability sets" : "set the permitted, effective and inheritable sets", {
    EPERM: "a capability can be kept only if the process still has it; the box's user namespace or the bounding set lacks it",
  });
  if (!exact) {
    capset(t, uid === 0 ? capabilityMask(keep) : 0n);
    prctl(t, F.PR_CAP_AMBIENT, F.PR_CAP_AMBIENT_CLEAR_ALL, "PR_CAP_AMBIENT_CLEAR_ALL");
    return;
  }
  capsetSets(t, capabilityMask(exact.effective), capabilityMask(exact.permitted), capabilityMask(exact.inheritable));
  prctl(t, F.PR_CAP_AMBIENT, F.PR_CAP_AMBIENT_CLEAR_ALL, "PR_CAP_AMBIENT_CLEAR_ALL");
  for (const cap of exact.ambient) t.sys("prctl", [F.PR_CAP_AMBIENT, F.PR_CAP_AMBIENT_RAISE, cap, 0, 0], () => `prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_${CAPABILITIES[cap] ?? cap})`);
  if (uid !== 0) prctl(t, F.PR_SET_KEEPCAPS, 0, "0");
}

/**
 * Tape, right before emitUser when a process with a uid other than 0 is to keep capabilities:
 * setresuid(2) to such a uid empties the permitted set unless PR_SET_KEEPCAPS is on (it still
 * empties the effective set, which capset(2) then sets again).
 */
export function emitKeepCapabilities(t: Tape): void {
  t.doing("keep the permitted capabilities across the switch of user");
  prctl(t, F.PR_SET_KEEPCAPS, 1, "1");
}
