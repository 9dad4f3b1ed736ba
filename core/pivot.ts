// Stage: make /newroot the box's `/` and detach everything else (pivot_root(2), "pivot_root(".", ".")").
//
// pivot_root(".", ".") stacks the old root on top of the new one at "/"; unmounting "." then takes
// the old root (the scratch tmpfs, with the host below it at /oldroot) away, lazily, so no directory
// for the old root is needed inside the rootfs. runc does the same.
import * as F from "../ffi/flags";
import type { Sys } from "../ffi/sys";
import { during } from "./errors";
import { NEWROOT } from "./rootfs";

export function applyPivot(sys: Sys): void {
  during("pivot_root", `pivot_root into ${JSON.stringify(NEWROOT)}`, () => {
    sys.chdir(NEWROOT);
    sys.pivotRoot(".", ".");
    sys.umount2(".", F.MNT_DETACH);
    sys.chdir("/");
  });
}
