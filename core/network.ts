// Stage: the network. A new network namespace has only a loopback interface, and it is down
// (network_namespaces(7)); a box expects 127.0.0.1 to work, so bring `lo` up. Nothing else:
// a box has no route out unless a later stage gives it one.
import type { Sys } from "../ffi/sys";
import { during } from "./errors";

export function applyLoopback(sys: Sys, wanted: boolean): void {
  if (!wanted) return;
  during("network", 'bring "lo" up', () => sys.loopbackUp());
}
