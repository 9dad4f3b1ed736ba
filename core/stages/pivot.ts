// Stage: make the box's root mount the process's `/` and detach everything else (pivot_root(2)).
//
// pivot_root(".", ".") stacks the old root on top of the new one at "/"; unmounting "." then takes
// the old root (the host's tree) away, lazily, so no directory for the old root is needed inside
// the rootfs. runc does the same. fchdir(2) onto the root mount's fd reaches it without a path.
import * as F from "../../ffi/flags";
import { chdir, fchdir, pivotRoot, umount2 } from "../tape/calls";
import type { Reg, Tape } from "../tape/tape";

export function emitPivot(t: Tape, root: Reg): void {
  t.doing("pivot_root into the box's root");
  fchdir(t, root);
  pivotRoot(t, ".", ".");
  umount2(t, ".", F.MNT_DETACH);
  chdir(t, "/");
}
