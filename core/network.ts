// Stage: the network. A new network namespace has only a loopback interface, and it is down
// (network_namespaces(7)); a box expects 127.0.0.1 to work, so `lo` comes up in every mode:
//   "none" (the default)  loopback only: no route out
//   "host"                the host's network namespace, shared (no namespace of its own)
//   "nat"                 outbound connections and forwarded ports through pasta (Debian/Ubuntu
//                         package passt), which nsrun starts at a sync point while the box waits;
//                         it runs as the calling user and ends with the box
import { accessSync, constants } from "node:fs";
import * as F from "../ffi/flags";
import { close, ioctl, socket, syncWithHost } from "./tape/calls";
import type { Tape } from "./tape/tape";

export type NetworkMode = "none" | "host" | "nat";

export interface PortForward {
  proto: "tcp" | "udp";
  /** The host address to listen on; null: every address. */
  hostAddress: string | null;
  hostPort: number;
  boxPort: number;
}

export interface NetworkPlan {
  mode: NetworkMode;
  ports: PortForward[];
}

/** What the box's resolv.conf names: pasta forwards DNS queries sent there to the host's resolver. */
export const DNS_FORWARD = "169.254.1.1";

/** "8080:80", "127.0.0.1:5353:53/udp", "8080" (the same port inside) -> a PortForward, or a problem. */
export function parsePort(spec: string): PortForward | string {
  const m = spec.match(/^(?:(\d{1,3}(?:\.\d{1,3}){3}):)?(\d{1,5})(?::(\d{1,5}))?(?:\/(tcp|udp))?$/);
  if (!m) return `expected "[HOST_ADDRESS:]HOST_PORT[:BOX_PORT][/tcp|/udp]", e.g. "8080:80" or "127.0.0.1:5353:53/udp", got ${JSON.stringify(spec)}`;
  const hostPort = Number(m[2]);
  const boxPort = Number(m[3] ?? m[2]);
  if (!hostPort || hostPort > 65535 || !boxPort || boxPort > 65535) return `ports are 1 to 65535, got ${JSON.stringify(spec)}`;
  return { proto: (m[4] as "tcp" | "udp") ?? "tcp", hostAddress: m[1] ?? null, hostPort, boxPort };
}

/** pasta's command line for a box whose network namespace is fd 3 (and user namespace fd 4). */
export function pastaArgs(plan: NetworkPlan, opts: { userns: boolean; root: boolean; pidFile: string }): string[] {
  const spec = (p: PortForward) => `${p.hostAddress ? `${p.hostAddress}/` : ""}${p.hostPort}:${p.boxPort}`;
  const tcp = plan.ports.filter((p) => p.proto === "tcp").map(spec);
  const udp = plan.ports.filter((p) => p.proto === "udp").map(spec);
  return [
    "pasta",
    // In the foreground, as nsrun's child: its parent-death signal ends it with nsrun (core/host/network.ts).
    "--foreground",
    "--config-net",
    "--quiet",
    "--dns-forward",
    DNS_FORWARD,
    // Only the ports asked for, in either direction: pasta would otherwise forward what it finds bound.
    ...(tcp.length ? tcp.flatMap((s) => ["-t", s]) : ["-t", "none"]),
    ...(udp.length ? udp.flatMap((s) => ["-u", s]) : ["-u", "none"]),
    "-T",
    "none",
    "-U",
    "none",
    "--pid",
    opts.pidFile,
    // pasta drops root to "nobody" by default, which may not enter a root box's namespaces.
    ...(opts.root ? ["--runas", "0"] : []),
    "--netns",
    "/proc/self/fd/3",
    ...(opts.userns ? ["--userns", "/proc/self/fd/4"] : []),
  ];
}

const PROGRAM_DIRS = ["/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin"];

function usable(path: string, mode: number): boolean {
  try {
    accessSync(path, mode);
    return true;
  } catch {
    return false;
  }
}

/** Whether a program is on the standard PATH. */
export function installed(name: string): boolean {
  return PROGRAM_DIRS.some((dir) => usable(`${dir}/${name}`, constants.X_OK));
}

/** pasta's path on the standard PATH (planning has checked that it is installed). */
export function pastaPath(): string {
  return `${PROGRAM_DIRS.find((dir) => usable(`${dir}/pasta`, constants.X_OK)) ?? "/usr/bin"}/pasta`;
}

/** Whether this user may open /dev/net/tun, which pasta needs. */
export function usableTun(): boolean {
  return usable("/dev/net/tun", constants.R_OK | constants.W_OK);
}

/** The sync point at which nsrun starts pasta for the box. */
export const SYNC_NETWORK = 2;

export function emitNetwork(t: Tape, plan: NetworkPlan, ownNamespace: boolean, fds: { report: number; sync: number | null }): void {
  if (!ownNamespace) return;
  t.doing('bring "lo" up');
  const sock = t.reg("sock");
  // struct ifreq { char ifr_name[IFNAMSIZ]; short ifr_flags; ... }: the flags are set, not added,
  // and IFF_LOOPBACK is the only other flag lo has.
  const ifr = new Uint8Array(40);
  ifr.set(new TextEncoder().encode("lo"), 0);
  new DataView(ifr.buffer).setUint16(F.IFNAMSIZ, F.IFF_UP | F.IFF_LOOPBACK, true);
  socket(t, F.AF_INET, F.SOCK_DGRAM, sock);
  ioctl(t, sock, F.SIOCSIFFLAGS, t.bytes(ifr, '{"lo", IFF_UP|IFF_LOOPBACK}'), 'SIOCSIFFLAGS, {"lo", IFF_UP|IFF_LOOPBACK}');
  close(t, sock);
  if (plan.mode === "nat") {
    if (fds.sync === null) throw new Error("compile: network mode nat needs the sync pipe");
    syncWithHost(t, fds.report, fds.sync, SYNC_NETWORK, "wait while nsrun starts pasta for the box's network");
  }
}
