// What nsrun keeps of a container is its owner's alone: the state folder (--root) and each
// container's folder are 0700, the files in them 0600. config.json holds process.env (passwords,
// tokens), and a container's ID is no secret (it shows in `ps` as conmon's or containerd-shim's
// argument). A folder an older nsrun made (0711, config.json 0644) is made private when next used.
// A folder someone else owns is refused: its owner could read what nsrun writes there, or plant a
// state.json whose PID nsrun would then signal.
import { chmodSync, lstatSync, mkdirSync } from "node:fs";

const PRIVATE_DIR = 0o700;
const PRIVATE_FILE = 0o600;

/** Why `path` cannot hold a container's state, or null once it is a private folder of this user (made when `create`). */
export function privateFolder(path: string, create: boolean, uid = process.geteuid?.() ?? 0): string | null {
  if (create) {
    try {
      mkdirSync(path, { recursive: true, mode: PRIVATE_DIR });
    } catch (e) {
      return `cannot make the state folder ${JSON.stringify(path)}: ${(e as NodeJS.ErrnoException).code}`;
    }
  }
  let st: ReturnType<typeof lstatSync>;
  try {
    st = lstatSync(path);
  } catch (e) {
    return `cannot use the state folder ${JSON.stringify(path)}: ${(e as NodeJS.ErrnoException).code}`;
  }
  if (!st.isDirectory()) return `the state folder ${JSON.stringify(path)} is not a directory (a symbolic link is refused too)`;
  if (st.uid !== uid) return `the state folder ${JSON.stringify(path)} belongs to uid ${st.uid}, not to you (uid ${uid}): nsrun keeps a container's state only in a folder of your own (--root DIR)`;
  if (st.mode & 0o077) chmodSync(path, PRIVATE_DIR);
  return null;
}

/** Files in a container's folder that others could read (an older nsrun's config.json 0644): made 0600. */
export function privateFiles(dir: string, names: string[]): void {
  for (const name of names) {
    try {
      const st = lstatSync(`${dir}/${name}`);
      if (st.isFile() && st.mode & 0o077) chmodSync(`${dir}/${name}`, PRIVATE_FILE);
    } catch {
      // not there: nothing to hide
    }
  }
}
