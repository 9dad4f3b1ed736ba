// A box from an image, through the compiled binary, as root and as an ordinary user: the image's Env
// is the base that -e adds to (its PATH stays), and `image rm` is refused while a box runs on the
// image (its supervisor holds the in-use lock to the end), then works once the box has ended.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { busyboxLayer, DEFAULTS, haveStaticBusybox, writeOciLayout } from "../fixtures/images/build";
import { type Actor, command, run, setupTestArea } from "./helpers";

const area = setupTestArea();
afterAll(() => area.cleanup());
const why = haveStaticBusybox() ? null : "busybox-static is not installed (apt-get install busybox-static)";
if (why) console.warn(`skipped: boxes from images: ${why}`);

/** An image "use" with DEFAULTS' Env (PATH and GREETING), imported into a store of the actor's own. */
function storeWithImage(a: Actor): string {
  const store = join(a.area, "store-use");
  const layout = join(a.area, "layout-use");
  writeOciLayout(layout, [busyboxLayer()], { tag: "use" });
  mkdirSync(store, { recursive: true });
  if (a.name === "user") Bun.spawnSync(["chown", "-R", `${a.uid}:${a.gid}`, store, layout]);
  const r = nsrun(a, store, ["image", "import", layout, "--name", "use"]);
  if (r.code !== 0) throw new Error(`image import: ${r.stderr}`);
  return store;
}

const nsrun = (a: Actor, store: string, args: string[]) => run(area.bin, a, args, { env: { NSRUN_STORE: store, HOME: store } });

describe.skipIf(why !== null).each(area.actors)("a box from an image ($name)", (a) => {
  test("-e adds to the image's Env: its PATH and its own variables stay (control: without -e, the same)", () => {
    const store = storeWithImage(a);
    const script = ["run", "--image", "use", "-u", "0:0"];
    const plain = nsrun(a, store, [...script, "--", "/bin/sh", "-c", 'echo "$PATH|$GREETING|$EXTRA"']);
    expect(plain.stdout).toBe(`${(DEFAULTS.Env ?? [])[0].slice(5)}|hello from the image|\n`);
    const added = nsrun(a, store, [...script, "-e", "EXTRA=1", "-e", "GREETING=over", "--", "/bin/sh", "-c", 'echo "$PATH|$GREETING|$EXTRA"']);
    expect(added.stdout).toBe(`${(DEFAULTS.Env ?? [])[0].slice(5)}|over|1\n`);
  });

  test("image rm is refused while a box runs on the image, and works after it (control: rm of an unused image)", async () => {
    const store = storeWithImage(a);
    const held = Bun.spawn(command(area.bin, a, ["run", "--image", "use", "-u", "0:0", "--", "/bin/sh", "-c", "echo ready; read x"]), {
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", NSRUN_STORE: store, HOME: store },
      cwd: a.area,
      stdin: "pipe",
      stdout: "pipe",
      stderr: "pipe",
    });
    const reader = held.stdout.getReader();
    expect(new TextDecoder().decode((await reader.read()).value)).toBe("ready\n");
    const refused = nsrun(a, store, ["image", "rm", "use"]);
    expect(refused.code).toBe(125);
    expect(refused.stderr).toContain("use");
    held.stdin.write("done\n");
    held.stdin.end();
    expect(await held.exited).toBe(0);
    expect(nsrun(a, store, ["image", "rm", "use"]).code).toBe(0);
    expect(nsrun(a, store, ["image", "ls", "--json"]).stdout.trim()).toBe("[]");
  });
});
