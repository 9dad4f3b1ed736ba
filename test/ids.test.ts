// Ids are checked: uid_t and gid_t are 32 bits and (uid_t)-1, 4294967295, is no id (setresuid(2)
// reads it as "unchanged": a box asked to run as it would stay uid 0). An id outside 0..4294967294
// is refused with exit 125 naming the flag or key, from -u, box.toml (process.user, the id maps)
// and config.json (process.user, the id mappings), and from `nsrun exec -u`. Controls: the highest
// id, 4294967294, runs (root; an ordinary user's box maps no such id, so it runs 65534).
import { afterAll, describe, expect, test } from "bun:test";
import { spawnSync } from "bun";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parseConfig } from "../core/stages/config";
import { ConfigError } from "../core/errors";
import { idProblem, MAX_ID, rangeProblem, userTextProblem } from "../core/stages/ids";
import { parseSpec } from "../core/oci/spec";
import { makeBundle, type Spec } from "../fixtures/oci/bundle";
import { type Actor, command, run, setupTestArea, waitFor, writeConfig } from "./helpers";

const area = setupTestArea();
afterAll(() => area.cleanup());

const keyOf = (f: () => unknown): string | null => {
  try {
    f();
  } catch (e) {
    if (e instanceof ConfigError) return e.key;
    throw e;
  }
  return "(accepted)";
};

describe("the id rules (units)", () => {
  test("0 to 4294967294 are ids; 4294967295, negatives, fractions and non-numbers are not", () => {
    for (const ok of [0, 1, 65534, MAX_ID]) expect(idProblem(ok)).toBeNull();
    for (const bad of [4294967295, 4294967296, -1, 1.5, Number.NaN, "0"]) expect(idProblem(bad)).not.toBeNull();
    expect(idProblem(4294967295)).toContain("(uid_t)-1");
  });

  test("UID[:GID] text: decimal digits, each an id", () => {
    for (const ok of ["0", "0:0", "1000:100", "4294967294:4294967294"]) expect(userTextProblem(ok)).toBeNull();
    for (const bad of ["4294967295", "0:4294967295", "-1", "-1:-1", "1.5", "", "a", "1:2:3", "99999999999999999999", "0x10"]) expect(userTextProblem(bad)).not.toBeNull();
  });

  test("an id map's range stays within the ids", () => {
    expect(rangeProblem(0, 100000, 65536)).toBeNull();
    expect(rangeProblem(0, 0, 4294967295)).toBeNull();
    expect(rangeProblem(0, 4294967295, 1)).not.toBeNull();
    expect(rangeProblem(4294967290, 100000, 10)).not.toBeNull();
    expect(rangeProblem(0, 100000, 0)).not.toBeNull();
  });

  test("box.toml: process.user and the id maps name the key", () => {
    const key = (raw: Record<string, unknown>) => keyOf(() => parseConfig({ rootfs: "/", ...raw }, "box.toml"));
    expect(key({ process: { user: "4294967295:4294967295" } })).toBe("process.user");
    expect(key({ process: { user: "0:4294967295" } })).toBe("process.user");
    expect(key({ process: { user: "-1:-1" } })).toBe("process.user");
    expect(key({ process: { user: "4294967294:4294967294" } })).toBe("(accepted)");
    expect(key({ user_namespace: { uid_map: ["0 4294967295 1"], gid_map: ["0 100000 1"] } })).toBe("user_namespace.uid_map[0]");
    expect(key({ user_namespace: { uid_map: ["0 100000 1"], gid_map: ["0 100000 1", "4294967290 200000 10"] } })).toBe("user_namespace.gid_map[1]");
    expect(key({ user_namespace: { uid_map: ["0 100000 0"], gid_map: ["0 100000 1"] } })).toBe("user_namespace.uid_map[0]");
  });

  test("config.json: process.user's uid, gid, additionalGids and the id mappings name the field", () => {
    const key = (edit: (s: Spec) => void) => {
      const s: Spec = { ociVersion: "1.0.2", process: { user: { uid: 0, gid: 0 }, args: ["sh"], cwd: "/" }, linux: {} };
      edit(s);
      return keyOf(() => parseSpec(s, "config.json"));
    };
    expect(key((s) => (s.process.user.uid = 4294967295))).toBe("process.user.uid");
    expect(key((s) => (s.process.user.gid = -1))).toBe("process.user.gid");
    expect(key((s) => (s.process.user.uid = 1.5))).toBe("process.user.uid");
    expect(key((s) => (s.process.user.additionalGids = [1, 4294967295]))).toBe("process.user.additionalGids[1]");
    expect(key((s) => (s.linux.uidMappings = [{ containerID: 0, hostID: 4294967295, size: 1 }]))).toBe("linux.uidMappings[0].hostID");
    expect(key((s) => (s.linux.gidMappings = [{ containerID: 4294967290, hostID: 100000, size: 10 }]))).toBe("linux.gidMappings[0]");
    expect(key((s) => (s.process.user = { uid: 4294967294, gid: 4294967294, additionalGids: [4294967294] }))).toBe("(accepted)");
  });
});

/** 125, at most two lines, naming `what`; no box ran. */
function refused(r: { code: number; stdout: string; stderr: string }, what: string): void {
  expect(r.code).toBe(125);
  expect(r.stdout).toBe("");
  expect(r.stderr).toContain(what);
  expect(r.stderr.trim().split("\n").length).toBeLessThanOrEqual(2);
}

describe.each(area.actors)("ids from flags and box.toml ($name)", (a) => {
  const rootfs = join(a.area, "rootfs");
  // The highest id a box of this actor can run as: root's box shares the host's ids; an ordinary
  // user's maps 65536 ids (subordinate ids, test/helpers.ts).
  const highest = a.name === "root" ? "4294967294" : "65534";

  test.each(["4294967295", "4294967295:4294967295", "0:4294967295", "-1", "-1:-1", "1.5", "99999999999999999999"])("-u %s is refused naming --user (control: -u the highest id runs)", (u) => {
    refused(run(area.bin, a, ["run", "--rootfs", rootfs, "-u", u, "--", "id", "-u"]), "--user");
    const ok = run(area.bin, a, ["run", "--rootfs", rootfs, "-u", `${highest}:${highest}`, "--", "sh", "-c", "id -u; id -g"]);
    expect(ok.stdout).toBe(`${highest}\n${highest}\n`);
  });

  test('box.toml user = "4294967295:4294967295" and an id map past the ids are refused naming the key (control: the highest id runs)', () => {
    refused(run(area.bin, a, ["run", "--config", writeConfig(a, "ids-user.toml", `rootfs = "../rootfs"\n[process]\nuser = "4294967295:4294967295"\nargs = ["id", "-u"]\n`)]), "process.user");
    const maps = `rootfs = "../rootfs"\n[namespaces]\nuser = true\n[user_namespace]\nuid_map = ["0 4294967295 1"]\ngid_map = ["0 4294967295 1"]\n`;
    refused(run(area.bin, a, ["run", "--config", writeConfig(a, "ids-map.toml", maps)]), "user_namespace.uid_map[0]");
    const ok = run(area.bin, a, ["run", "--config", writeConfig(a, "ids-ok.toml", `rootfs = "../rootfs"\n[process]\nuser = "${highest}:${highest}"\nargs = ["id", "-u"]\n`)]);
    expect(ok.stdout).toBe(`${highest}\n`);
  });
});

/** nsrun's OCI commands as the actor, state in its own --root; output in files (a created container keeps nsrun's stdio). */
let calls = 0;
function oci(a: Actor, args: string[]) {
  const out = join(a.area, `oci-out${++calls}`);
  const err = join(a.area, `oci-err${calls}`);
  const r = spawnSync(command(area.bin, a, ["--root", join(a.area, "oci-state"), ...args]), { cwd: a.area, stdin: "ignore", stdout: Bun.file(out), stderr: Bun.file(err), timeout: 30_000 });
  const read = (f: string) => (existsSync(f) ? readFileSync(f, "utf8") : "");
  return { code: r.exitCode ?? 128, stdout: read(out), stderr: read(err) };
}

let bundles = 0;
function bundle(a: Actor, edit: (s: Spec) => void): string {
  return makeBundle(
    join(a.area, `ids-bundle${++bundles}`),
    (d) => {
      const r = oci(a, ["spec", ...(a.name === "user" ? ["--rootless"] : []), "--bundle", d]);
      if (r.code !== 0) throw new Error(r.stderr);
    },
    a,
    edit,
  );
}

describe.each(area.actors)("ids from config.json and nsrun exec ($name)", (a) => {
  const highest = a.name === "root" ? 4294967294 : 0;

  test.each([
    ["process.user.uid", (s: Spec) => (s.process.user.uid = 4294967295)],
    ["process.user.gid", (s: Spec) => (s.process.user.gid = -1)],
    ["process.user.additionalGids[0]", (s: Spec) => (s.process.user.additionalGids = [4294967295])],
  ])("%s out of range is refused (control: the highest id runs)", (key, edit) => {
    const bad = bundle(a, (s) => {
      s.process.args = ["id", "-u"];
      edit(s);
    });
    refused(oci(a, ["run", "--bundle", bad, `ids-bad-${a.name}-${bundles}`]), key);
    const good = bundle(a, (s) => {
      s.process.args = ["id", "-u"];
      s.process.user = { uid: highest, gid: highest };
      delete s.process.capabilities; // only uid 0 keeps capabilities in nsrun
    });
    const r = oci(a, ["run", "--bundle", good, `ids-good-${a.name}-${bundles}`]);
    expect(r.stdout).toBe(`${highest}\n`);
  });

  test("exec -u 4294967295 and --additional-gids -1 are refused (control: exec -u the highest id runs)", async () => {
    const b = bundle(a, (s) => {
      s.process.args = ["sleep", "1000"];
      delete s.process.capabilities; // only uid 0 keeps capabilities in nsrun: exec as another uid inherits none
    });
    const id = `ids-exec-${a.name}`;
    expect(oci(a, ["create", "--bundle", b, id]).code).toBe(0);
    try {
      expect(oci(a, ["start", id]).code).toBe(0);
      refused(oci(a, ["exec", "-u", "4294967295", id, "id", "-u"]), "--user");
      refused(oci(a, ["exec", "-u", "-1:-1", id, "id", "-u"]), "--user");
      refused(oci(a, ["exec", "--additional-gids", "-1", id, "id", "-u"]), "additionalGids[0]");
      expect(oci(a, ["exec", "-u", `${highest}:${highest}`, id, "id", "-u"]).stdout).toBe(`${highest}\n`);
    } finally {
      oci(a, ["delete", "--force", id]);
    }
    expect(await waitFor(() => oci(a, ["state", id]).code !== 0, 10_000)).toBe(true);
  });
});
