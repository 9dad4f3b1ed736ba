// Stage: the network. A new network namespace has only a loopback interface, and it is down
// (network_namespaces(7)); a box expects 127.0.0.1 to work, so `lo` comes up in every mode:
//   "none" (the default)  loopback only: no route out
//   "host"                the host's network namespace, shared (no namespace of its own)
//   "nat"                 outbound connections and forwarded ports through a helper nsrun starts at
//                         a sync point while the box waits: pasta (Debian/Ubuntu package passt) when
//                         installed, else slirp4netns (package slirp4netns), or the one [network]
//                         helper names; it runs as the calling user and ends with the box
import { accessSync, constants } from "node:fs";
import { ERRNO } from "../../ffi/errno";
import * as F from "../../ffi/flags";
import { close, ioctl, openat, socket, syncWithHost, writeText } from "../tape/calls";
import type { Tape } from "../tape/tape";
import { SYNC } from "../launch/sync";

export type NetworkMode = "none" | "host" | "nat";

export interface PortForward {
  proto: "tcp" | "udp";
  /** The host address to listen on; null: every address. */
  hostAddress: string | null;
  hostPort: number;
  boxPort: number;
}

export type NetworkHelper = "pasta" | "slirp4netns";

export interface NetworkPlan {
  mode: NetworkMode;
  ports: PortForward[];
  /** With "nat": the program that connects the box, and why it was chosen (for --trace and --log-level info). */
  helper?: { name: NetworkHelper; why: string };
  /**
   * net.ipv4.ping_group_range of the box's own network namespace, "first last": the groups that may
   * open ICMP echo sockets (ping without CAP_NET_RAW, icmp(7)). nsrun's boxes get podman's "0 0";
   * the kernel's default, "1 0", allows no group. Unset: left as the kernel makes it (OCI boxes).
   */
  pingGroupRange?: string;
  /**
   * With "nat": the gateway address leads to the host's loopback ([network] host_loopback). Off by
   * default, as podman has it: a database or an admin port on the host's 127.0.0.1 is not the box's.
   */
  hostLoopback?: boolean;
}

/** podman's default sysctl (containers.conf default_sysctls): the box's root group may ping. */
export const PING_GROUP_RANGE = "0 0";

/** What each helper is, for planning, error messages and the box's resolv.conf. */
export const HELPERS: Record<NetworkHelper, { package: string; nameserver: string }> = {
  // pasta forwards DNS queries sent to this address (its --dns-forward) to the host's resolver.
  pasta: { package: "passt", nameserver: "169.254.1.1" },
  // slirp4netns answers DNS at its network's address + 3 (10.0.2.3), forwarding to the host's resolver.
  slirp4netns: { package: "slirp4netns", nameserver: "10.0.2.3" },
};

/** pasta's DNS forwarding address (its --dns-forward). */
export const DNS_FORWARD = HELPERS.pasta.nameserver;

/**
 * The helper for a "nat" box: the one asked for, or with "auto" pasta when installed, else
 * slirp4netns; or the problem, with the config key it belongs to.
 */
export function chooseHelper(asked: "auto" | NetworkHelper, isInstalled: (program: string) => boolean): { name: NetworkHelper; why: string } | { key: string; problem: string } {
  const pkg = (h: NetworkHelper) => `the Debian/Ubuntu package ${HELPERS[h].package}`;
  if (asked !== "auto")
    return isInstalled(asked)
      ? { name: asked, why: `[network] helper = "${asked}"` }
      : { key: "network.helper", problem: `"${asked}" is not installed: install ${pkg(asked)}, or use helper = "auto"` };
  if (isInstalled("pasta")) return { name: "pasta", why: "pasta is installed (preferred over slirp4netns)" };
  if (isInstalled("slirp4netns")) return { name: "slirp4netns", why: "pasta is not installed" };
  return {
    key: "network.mode",
    problem: '"nat" needs pasta or slirp4netns, and neither is installed: install the Debian/Ubuntu package passt (pasta, preferred) or slirp4netns',
  };
}

/** "8080:80", "127.0.0.1:5353:53/udp", "8080" (the same port inside) -> a PortForward, or a problem. */
export function parsePort(spec: string): PortForward | string {
  const m = spec.match(/^(?:(\d{1,3}(?:\.\d{1,3}){3}):)?(\d{1,5})(?::(\d{1,5}))?(?:\/(tcp|udp))?$/);
  if (!m) return `expected "[HOST_ADDRESS:]HOST_PORT[:BOX_PORT][/tcp|/udp]", e.g. "8080:80" or "127.0.0.1:5353:53/udp", got ${JSON.stringify(spec)}`;
  const hostPort = Number(m[2]);
  const boxPort = Number(m[3] ?? m[2]);
  if (!hostPort || hostPort > 65535 || !boxPort || boxPort > 65535) return `ports are 1 to 65535, got ${JSON.stringify(spec)}`;
  return { proto: (m[4] as "tcp" | "udp") ?? "tcp", hostAddress: m[1] ?? null, hostPort, boxPort };
}

/** A port as pasta's -t and -u options spell it: "127.0.0.1/5353:53". */
export function pastaPortSpec(p: PortForward): string {
  return `${p.hostAddress ? `${p.hostAddress}/` : ""}${p.hostPort}:${p.boxPort}`;
}

/** pasta's command line for a box whose network namespace is fd 3 (and user namespace fd 4). */
export function pastaArgs(plan: NetworkPlan, opts: { userns: boolean; root: boolean; pidFile: string }): string[] {
  const tcp = plan.ports.filter((p) => p.proto === "tcp").map(pastaPortSpec);
  const udp = plan.ports.filter((p) => p.proto === "udp").map(pastaPortSpec);
  return [
    "pasta",
    // In the foreground, as nsrun's child: its parent-death signal ends it with nsrun (core/host/nat.ts).
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
    // The gateway address is the host's loopback only when asked ([network] host_loopback).
    ...(plan.hostLoopback ? [] : ["--no-map-gw"]),
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

/** A helper's path on the standard PATH (planning has checked that it is installed). */
export function programPath(name: string): string {
  return `${PROGRAM_DIRS.find((dir) => usable(`${dir}/${name}`, constants.X_OK)) ?? "/usr/bin"}/${name}`;
}

/** slirp4netns's address for the box (its network 10.0.2.0/24 + 100, which --configure gives tap0). */
export const SLIRP_BOX_ADDRESS = "10.0.2.100";

/**
 * slirp4netns's command line for a box whose network namespace is fd 3 (and user namespace fd 4).
 * It writes "1" to `readyFd` once tap0 is configured and its API socket listens, and exits when
 * `exitFd` (the read end of a pipe only nsrun holds) reports end of file. Ports are forwarded
 * afterwards, one request each on the API socket (core/host/nat.ts).
 */
export function slirp4netnsArgs(opts: { userns: boolean; readyFd: number; exitFd: number; apiSocket: string | null; hostLoopback?: boolean }): string[] {
  return [
    "slirp4netns",
    // Configure tap0 (10.0.2.100/24, default route via 10.0.2.2) and bring lo up.
    "--configure",
    // 10.0.2.2 reaches the host's 127.0.0.1 only when asked ([network] host_loopback).
    ...(opts.hostLoopback ? [] : ["--disable-host-loopback"]),
    "--mtu=65520",
    `--ready-fd=${opts.readyFd}`,
    `--exit-fd=${opts.exitFd}`,
    ...(opts.apiSocket ? [`--api-socket=${opts.apiSocket}`] : []),
    "--netns-type=path",
    ...(opts.userns ? ["--userns-path=/proc/self/fd/4"] : []),
    "/proc/self/fd/3",
    "tap0",
  ];
}

/** slirp4netns's API request that forwards one port (add_hostfwd, slirp4netns(1)). */
export function addHostfwd(p: PortForward): string {
  return JSON.stringify({ execute: "add_hostfwd", arguments: { proto: p.proto, host_addr: p.hostAddress ?? "0.0.0.0", host_port: p.hostPort, guest_addr: SLIRP_BOX_ADDRESS, guest_port: p.boxPort } });
}

/** A port as the config spells it: "127.0.0.1:5353:53/udp". */
export function portText(p: PortForward): string {
  return `${p.hostAddress ? `${p.hostAddress}:` : ""}${p.hostPort}:${p.boxPort}/${p.proto}`;
}

/** Whether this user may open /dev/net/tun, which both helpers need. */
export function usableTun(): boolean {
  return usable("/dev/net/tun", constants.R_OK | constants.W_OK);
}

/** The sync point at which nsrun starts the box's network helper. */
export const SYNC_NETWORK = SYNC.NETWORK;

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
  if (plan.pingGroupRange !== undefined) {
    // Before pivot_root the host's /proc is still at /proc, and /proc/sys/net is the net namespace
    // of the process that opens it: the box's. Its owner (root of the box's user namespace) may write
    // it. A convenience, not a protection: where /proc/sys cannot be written (read-only in some
    // containers), the box starts without it and ping is refused there, as before.
    t.doing(`set net.ipv4.ping_group_range to "${plan.pingGroupRange}" (ping without CAP_NET_RAW)`);
    const file = t.reg("sysctl");
    const skip = t.label("no_ping_group_range");
    openat(t, F.AT_FDCWD, "/proc/sys/net/ipv4/ping_group_range", F.O_WRONLY, 0, { dst: file, ok: [ERRNO.EROFS, ERRNO.EACCES, ERRNO.EPERM, ERRNO.ENOENT] });
    t.jumpIf(file, "LT", 0, skip);
    writeText(t, file, plan.pingGroupRange);
    close(t, file);
    t.place(skip);
  }
  if (plan.mode === "nat") {
    if (fds.sync === null) throw new Error("compile: network mode nat needs the sync pipe");
    syncWithHost(t, fds.report, fds.sync, SYNC_NETWORK, `wait while nsrun starts ${plan.helper?.name ?? "pasta"} for the box's network`);
  }
}
