// What nsrun keeps of an OCI container is its owner's alone: the state folder and the container's
// folder are 0700, config.json (with process.env) and state.json 0600. Another local user cannot
// list, read or use them; the owner can (control). A folder an older nsrun left readable (0711,
// config.json 0644) is readable by that other user (control: the probe works) until nsrun next
// uses it; a state folder someone else owns is refused.
import { afterAll, describe, expect, test } from "bun:test";
import { spawnSync } from "bun";
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { makeBundle, type Spec } from "../fixtures/oci/bundle";
import { type Actor, command, setupTestArea } from "./helpers";

const area = setupTestArea();
afterAll(() => {
  for (const a of area.actors) for (const id of ids) oci(a, join(a.area, "state"), ["delete", "--force", id]);
  area.cleanup();
});
const ids = new Set<string>();

const SECRET = "NSRUN_TEST_SECRET=s3cr3t-value";

let calls = 0;
function oci(a: Actor, root: string, args: string[]) {
  const out = join(area.actors[0].area, `..`, `state-out${++calls}`);
  const err = `${out}.err`;
  const r = spawnSync(command(area.bin, a, ["--root", root, ...args]), { cwd: a.area, stdin: "ignore", stdout: Bun.file(out), stderr: Bun.file(err), timeout: 30_000 });
  const read = (f: string) => (existsSync(f) ? readFileSync(f, "utf8") : "");
  return { code: r.exitCode ?? 128, stdout: read(out), stderr: read(err) };
}

/** Another local user than the actor: nsrun-test for root's containers, nobody for nsrun-test's. */
const otherOf = (a: Actor) => (a.name === "root" ? (area.actors.find((x) => x.name === "user") as Actor) : { uid: 65534, gid: 65534 });

/** `argv` as another user; true when it succeeded. */
function asOther(a: Actor, argv: string[]): { ok: boolean; stdout: string } {
  const o = otherOf(a);
  const r = spawnSync(["setpriv", `--reuid=${o.uid}`, `--regid=${o.gid}`, "--clear-groups", ...argv], { stdout: "pipe", stderr: "pipe" });
  return { ok: r.exitCode === 0, stdout: r.stdout.toString() };
}

const mode = (p: string) => statSync(p).mode & 0o777;
const root = area.actors.find((a) => a.name === "root");

describe.skipIf(!root)(`state is private${root ? "" : " (skipped: another user's view needs root to switch users)"}`, () => {
  describe.each(area.actors)("$name", (a) => {
    const state = join(a.area, "state");
    const id = `private-${a.name}`;
    const dir = join(state, id);

    test("folders 0700 and files 0600: another user cannot list, read or use them (control: the owner can)", () => {
      const b = makeBundle(
        join(a.area, "bundle-private"),
        (d) => expect(oci(a, state, ["spec", ...(a.name === "user" ? ["--rootless"] : []), "--bundle", d]).code).toBe(0),
        a,
        (s: Spec) => {
          s.process.args = ["sleep", "1000"];
          s.process.env.push(SECRET);
        },
      );
      ids.add(id);
      expect(oci(a, state, ["create", "--bundle", b, id]).code).toBe(0);
      expect([mode(state), mode(dir), mode(join(dir, "config.json")), mode(join(dir, "state.json"))]).toEqual([0o700, 0o700, 0o600, 0o600]);
      for (const f of readdirSync(dir)) expect(mode(join(dir, f)) & 0o077).toBe(0);
      expect(asOther(a, ["cat", join(dir, "config.json")]).ok).toBe(false);
      expect(asOther(a, ["ls", state]).ok).toBe(false);
      expect(asOther(a, [area.bin, "--root", state, "state", id]).ok).toBe(false);
      // Control: the owner reads it.
      expect(oci(a, state, ["state", id]).code).toBe(0);
      const own = spawnSync(command("/bin/cat", a, [join(dir, "config.json")]), { stdout: "pipe" });
      expect(own.stdout.toString()).toContain(SECRET);
    });

    test("a folder an older nsrun left readable (0711, 0644) is made private when next used (control: until then the other user reads it)", () => {
      expect(existsSync(dir)).toBe(true);
      chmodSync(state, 0o711);
      chmodSync(dir, 0o711);
      chmodSync(join(dir, "config.json"), 0o644);
      // The probe works: the other user reads the secret through the old modes.
      expect(asOther(a, ["cat", join(dir, "config.json")]).stdout).toContain(SECRET);
      expect(oci(a, state, ["state", id]).code).toBe(0);
      expect([mode(state), mode(dir), mode(join(dir, "config.json"))]).toEqual([0o700, 0o700, 0o600]);
      expect(asOther(a, ["cat", join(dir, "config.json")]).ok).toBe(false);
      expect(oci(a, state, ["delete", "--force", id]).code).toBe(0);
    });

    test("a state folder another user owns is refused, naming it, and nothing is made in it (control: a folder of the actor's own works)", () => {
      const foreign = join(a.area, "foreign-state");
      mkdirSync(foreign, { recursive: true });
      const o = otherOf(a);
      chownSync(foreign, o.uid, o.gid);
      chmodSync(foreign, 0o777);
      const b = join(a.area, "bundle-private");
      const r = oci(a, foreign, ["create", "--bundle", b, "foreign"]);
      expect(r.code).toBe(125);
      expect(r.stderr).toContain(JSON.stringify(foreign));
      expect(r.stderr).toContain("belongs to uid");
      expect(r.stderr.trim().split("\n").length).toBeLessThanOrEqual(2);
      expect(readdirSync(foreign)).toEqual([]);
      expect(oci(a, foreign, ["state", "foreign"]).code).not.toBe(0);
    });
  });
});
