// Stage: the network. A new network namespace has only a loopback interface, and it is down
// (network_namespaces(7)); a box expects 127.0.0.1 to work, so bring `lo` up. Nothing else:
// a box has no route out unless a later stage gives it one.
import * as F from "../ffi/flags";
import { close, ioctl, socket } from "./tape/calls";
import type { Tape } from "./tape/tape";

export function emitLoopback(t: Tape, wanted: boolean): void {
  if (!wanted) return;
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
}
