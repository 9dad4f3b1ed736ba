// Stage: capabilities (capabilities(7)). The box keeps only the set it was given, podman's by
// default, in its bounding, permitted, effective and inheritable sets; the ambient set is empty.
// The bounding set is cut first, while we still hold CAP_SETPCAP; it is what limits everything a
// later execve can give, even to uid 0.
import * as F from "../ffi/flags";
import type { Sys } from "../ffi/sys";
import { during } from "./errors";

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

/** Cut the bounding set to `keep`. Needs CAP_SETPCAP, so it comes before the switch of user. */
export function applyBoundingSet(sys: Sys, keep: number[], lastCap: number): void {
  during("capabilities", `keep only ${keep.map((c) => CAPABILITIES[c]).join(",") || "none"} in the bounding set`, () => {
    for (let cap = 0; cap <= lastCap; cap++) if (!keep.includes(cap)) sys.prctl(F.PR_CAPBSET_DROP, cap);
  });
}

/** After the switch to the box's user: uid 0 keeps exactly the set; any other uid has lost them all. */
export function applyCapabilitySets(sys: Sys, keep: number[], uid: number): void {
  during("capabilities", "set the permitted, effective and inheritable sets", () => {
    const mask = uid === 0 ? capabilityMask(keep) : 0n;
    sys.capset(mask, mask, mask);
    sys.prctl(F.PR_CAP_AMBIENT, F.PR_CAP_AMBIENT_CLEAR_ALL);
  });
}

/** The highest capability this kernel knows (/proc/sys/kernel/cap_last_cap); read before the pivot. */
export function lastCapability(read: (path: string) => string): number {
  try {
    return Number(read("/proc/sys/kernel/cap_last_cap"));
  } catch {
    return CAPABILITIES.length - 1;
  }
}
