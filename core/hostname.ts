// Stage: the box's hostname (uts_namespaces(7)). Only in a UTS namespace of the box's own;
// planning refuses a hostname without one, so the host's name is never changed.
import type { Sys } from "../ffi/sys";
import { during } from "./errors";

export function applyHostname(sys: Sys, hostname: string | null): void {
  if (hostname === null) return;
  during("hostname", `set the hostname to ${JSON.stringify(hostname)}`, () => sys.sethostname(hostname));
}
