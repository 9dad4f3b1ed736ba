// A benchmark's folder: a copy of dist/nsrun, the busybox rootfs, and a tape cache folder for the
// ordinary test user. The rootfs and the cache are that user's own, as a user's are: a root-owned
// rootfs would make every rootless box print nsrun's warning that its files show as nobody (and
// load the logger to say so), and setpriv keeps root's HOME, where the user could keep no cache.
// Root's boxes have no user namespace: the owner changes nothing for them.
import { spawnSync } from "bun";
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync } from "node:fs";
import { join, resolve } from "node:path";
import { buildRootfs } from "../../fixtures/build-rootfs";

export const USER = "nsrun-test";
export const isRoot = process.getuid?.() === 0;

export function benchArea(prefix: string, mode: number) {
  const work = mkdtempSync(prefix);
  chmodSync(work, mode);
  const bin = join(work, "nsrun");
  copyFileSync(resolve(import.meta.dir, "../../dist/nsrun"), bin);
  chmodSync(bin, 0o755);
  const rootfs = buildRootfs(join(work, "rootfs"));
  const userCache = join(work, "cache-user");
  mkdirSync(userCache, { mode: 0o700 });
  /** The rootless runs' prefix as root (setpriv to the test user), or "" without that user. */
  const asUser = isRoot && spawnSync(["id", USER], { stdout: "pipe" }).exitCode === 0 ? `setpriv --reuid=${USER} --regid=${USER} --clear-groups ` : "";
  if (asUser) spawnSync(["chown", "-R", USER, rootfs, userCache]);
  return { work, bin, rootfs, userCache, asUser };
}
