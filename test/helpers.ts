// Runs the real compiled binary, as root and as an ordinary user, in a throw-away test area:
//   /tmp/nsrun-test-XXXX/nsrun                        a copy of dist/nsrun
//   /tmp/nsrun-test-XXXX/{root,user}/rootfs|configs|data   one per actor, owned by that actor
// The copy keeps the tests independent of where the clone lives (an ordinary user may not be able
// to reach it) and of later rebuilds.
import { spawnSync } from "bun";
import { chmodSync, copyFileSync, cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { buildRootfs } from "../fixtures/build-rootfs";

export const REPO = resolve(import.meta.dir, "..");
export const DIST = join(REPO, "dist/nsrun");
export const TEST_USER = "nsrun-test";
export const PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

export interface Actor {
  name: "root" | "user";
  uid: number;
  gid: number;
  /** The actor's own folder: rootfs/, configs/, data/. */
  area: string;
}

export interface Result {
  code: number;
  stdout: string;
  stderr: string;
  /** nsrun's PID (setpriv execs it, keeping its own): names the box's cgroup, nsrun-PID. */
  pid: number;
}

export interface TestArea {
  bin: string;
  actors: Actor[];
  /** Why an actor is missing, printed instead of passing silently. */
  skipped: string[];
  cleanup(): void;
}

function ensureBinary(): void {
  if (existsSync(DIST)) return;
  const r = spawnSync(["bun", "run", "build"], { cwd: REPO, stdout: "inherit", stderr: "inherit" });
  if (r.exitCode !== 0) throw new Error("bun run build failed");
}

function ensureTestUser(): { uid: number; gid: number } {
  const id = () => spawnSync(["id", "-u", TEST_USER], { stdout: "pipe", stderr: "pipe" });
  if (id().exitCode !== 0) {
    const r = spawnSync(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", TEST_USER], { stderr: "pipe" });
    if (r.exitCode !== 0) throw new Error(`useradd ${TEST_USER}: ${r.stderr}`);
  }
  const uid = Number(id().stdout.toString().trim());
  const gid = Number(spawnSync(["id", "-g", TEST_USER], { stdout: "pipe" }).stdout.toString().trim());
  ensureSubordinateIds();
  return { uid, gid };
}

/** The test user's subordinate ids, as useradd gives an ordinary user on Debian and Ubuntu. */
export const TEST_SUBORDINATE = { start: 420000000, count: 65536 };

function ensureSubordinateIds(): void {
  for (const file of ["/etc/subuid", "/etc/subgid"]) {
    const text = existsSync(file) ? readFileSync(file, "utf8") : "";
    if (text.split("\n").some((l) => l.startsWith(`${TEST_USER}:`))) continue;
    writeFileSync(file, `${text}${text && !text.endsWith("\n") ? "\n" : ""}${TEST_USER}:${TEST_SUBORDINATE.start}:${TEST_SUBORDINATE.count}\n`);
  }
}

function prepareActor(top: string, name: Actor["name"], uid: number, gid: number): Actor {
  const area = join(top, name);
  buildRootfs(join(area, "rootfs"));
  cpSync(join(REPO, "fixtures/configs"), join(area, "configs"), { recursive: true });
  cpSync(join(REPO, "fixtures/data"), join(area, "data"), { recursive: true });
  if (name === "user") spawnSync(["chown", "-R", `${uid}:${gid}`, area]);
  return { name, uid, gid, area };
}

export function setupTestArea(): TestArea {
  ensureBinary();
  const top = mkdtempSync("/tmp/nsrun-test-");
  chmodSync(top, 0o755);
  const bin = join(top, "nsrun");
  copyFileSync(DIST, bin);
  chmodSync(bin, 0o755);
  const actors: Actor[] = [];
  const skipped: string[] = [];
  const me = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
  if (me.uid === 0) {
    actors.push(prepareActor(top, "root", 0, 0));
    const u = ensureTestUser();
    actors.push(prepareActor(top, "user", u.uid, u.gid));
  } else {
    skipped.push("root boxes: the tests run as an ordinary user (run them as root to cover both)");
    actors.push(prepareActor(top, "user", me.uid, me.gid));
  }
  for (const s of skipped) console.warn(`skipped: ${s}`);
  return { bin, actors, skipped, cleanup: () => removeArea(top) };
}

/**
 * The test area, removed. Run as an ordinary user, an image test may leave files of the user's
 * subordinate ids there (its owners kept through them), which the user cannot unlink outside a
 * user namespace: nsrun's own image rm would. Those are named on stderr, not a failure of the tests.
 */
function removeArea(top: string): void {
  try {
    rmSync(top, { recursive: true, force: true });
  } catch (e) {
    if ((process.getuid?.() ?? 0) === 0 || (e as NodeJS.ErrnoException).code !== "EACCES") throw e;
    console.warn(`left: ${top} holds files of your subordinate ids (an image's owners); remove it as root`);
  }
}

/** The argv that runs nsrun as the actor (setpriv drops to the ordinary user, with no groups). */
export function command(bin: string, actor: Actor, args: string[]): string[] {
  const self = process.getuid?.() ?? 0;
  if (actor.uid === self) return [bin, ...args];
  return ["setpriv", `--reuid=${actor.uid}`, `--regid=${actor.gid}`, "--clear-groups", bin, ...args];
}

export function run(bin: string, actor: Actor, args: string[], opts: { env?: Record<string, string>; cwd?: string; timeoutMs?: number } = {}): Result {
  const r = spawnSync(command(bin, actor, args), {
    env: { PATH, ...opts.env },
    cwd: opts.cwd ?? actor.area,
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    timeout: opts.timeoutMs ?? 30_000,
  });
  return { code: r.exitCode ?? 128 + (r.signalCode ? 9 : 0), stdout: r.stdout.toString(), stderr: r.stderr.toString(), pid: r.pid };
}

export function start(bin: string, actor: Actor, args: string[]) {
  return Bun.spawn(command(bin, actor, args), { env: { PATH }, cwd: actor.area, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
}

/** A config file in the actor's configs/ folder (so `../rootfs` and `../data` resolve to its own). */
export function writeConfig(actor: Actor, name: string, toml: string): string {
  const path = join(actor.area, "configs", name);
  writeFileSync(path, toml);
  if (actor.name === "user") spawnSync(["chown", `${actor.uid}:${actor.gid}`, path]);
  return path;
}

/** PIDs of host processes whose command line contains `marker`. */
export function processesWith(marker: string): number[] {
  const pids: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${name}/cmdline`, "utf8").replaceAll("\0", " ").includes(marker)) pids.push(Number(name));
    } catch {
      // exited while we looked
    }
  }
  return pids;
}

/**
 * Where other container engines keep mounts of their own: podman's storage and network namespaces,
 * containerd's. The podman and containerd tests start them, and their cleanup (conmon's exit
 * command, the storage driver letting its home go) runs on after those tests end, so these come
 * and go while later tests run. nsrun mounts nothing there.
 */
const OTHER_ENGINES = /^\S+ \S+ \S+ \S+ (\/var\/lib\/containers|\/run\/containers|\/run\/netns|\/var\/lib\/containerd|\/run\/containerd|\/run\/user\/\d+\/(containers|netns))(\/|\s)/;

/** The host's mount table, as this (host) process sees it, without other engines' mounts (OTHER_ENGINES). */
export function hostMounts(): string {
  return readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .filter((line) => !OTHER_ENGINES.test(line))
    .join("\n");
}

export async function waitFor(check: () => boolean, ms = 5000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (check()) return true;
    await Bun.sleep(20);
  }
  return check();
}

/** A stable digest of a directory tree: paths, types, modes, link targets, file contents. */
export function treeDigest(dir: string): string {
  const r = spawnSync(["sh", "-c", 'find . -printf "%p %y %m %l %s\\n" | sort; find . -type f -print0 | sort -z | xargs -0 sha256sum'], { cwd: dir, stdout: "pipe" });
  return new Bun.CryptoHasher("sha256").update(r.stdout).digest("hex");
}
