// Stage: the box's hostname (uts_namespaces(7)). Only in a UTS namespace of the box's own;
// planning refuses a hostname without one, so the host's name is never changed.
import { sethostname } from "../tape/calls";
import type { Tape } from "../tape/tape";

export function emitHostname(t: Tape, hostname: string | null): void {
  if (hostname === null) return;
  t.doing(`set the hostname to ${JSON.stringify(hostname)}`);
  sethostname(t, hostname);
}
