// core/api.ts: boxes started from one long-lived Bun process, in this test's process (root) and in
// a Bun process of the ordinary user. Many boxes from one process must not affect each other: each
// has its own tape, pipes and stub, and nothing a box's first process does may change nsrun's own
// process (it shares nsrun's memory until it execs).
import { afterAll, describe, expect, test } from "bun:test";
import { spawnSync } from "bun";
import { join } from "node:path";
import { runBox } from "../core/api";
import { ConfigError, StageError } from "../core/errors";
import { command, REPO, setupTestArea } from "./helpers";

const area = setupTestArea();
afterAll(() => area.cleanup());
const root = area.actors.find((a) => a.name === "root");

describe.skipIf(!root)(`runBox in this process${root ? "" : " (skipped: the tests do not run as root)"}`, () => {
  const rootfs = join(root?.area ?? "", "rootfs");

  test("runs a box to its end: its exit status, or 128 + a signal", async () => {
    expect(await runBox({ rootfs }, { args: ["/bin/sh", "-c", "exit 3"] })).toMatchObject({ exitCode: 3, signal: null });
    // Without a PID namespace of its own the command is not a PID 1, which SIGKILL from inside would spare.
    expect(await runBox({ rootfs, namespaces: { pid: false } }, { args: ["/bin/sh", "-c", "kill -9 $$"] })).toMatchObject({ exitCode: 137, signal: 9 });
  });

  test("20 boxes one after the other, then 20 at once, all succeed", async () => {
    for (let i = 0; i < 20; i++) expect((await runBox({ rootfs }, { args: ["/bin/true"] })).exitCode).toBe(0);
    const all = await Promise.all(Array.from({ length: 20 }, () => runBox({ rootfs }, { args: ["/bin/true"] })));
    expect(all.map((r) => r.exitCode)).toEqual(Array(20).fill(0));
  });

  test("errors are thrown with nsrun's message and exit status", async () => {
    const notFound = await runBox({ rootfs }, { args: ["no-such-command"] }).catch((e) => e);
    expect(notFound).toBeInstanceOf(StageError);
    expect(notFound.exitCode).toBe(127);
    const bad = await runBox({ rootfs, readonyl: true }).catch((e) => e);
    expect(bad).toBeInstanceOf(ConfigError);
    expect(bad.message).toContain("readonyl: unknown key");
  });

  test("an aborted box is killed", async () => {
    const abort = new AbortController();
    const running = runBox({ rootfs }, { args: ["/bin/sleep", "30"], signal: abort.signal });
    await Bun.sleep(0);
    abort.abort();
    expect((await running).signal).toBe(9);
  });
});

describe("runBox in a process of an ordinary user", () => {
  const user = area.actors.find((a) => a.name === "user");
  test.skipIf(!user)("starts box after box rootless (the second one too: nothing of the first leaks into nsrun's process)", () => {
    if (!user) return;
    const script = join(REPO, "test/bench/api-boxes.ts");
    const r = spawnSync(command(process.execPath, user, [script, join(user.area, "rootfs"), "10"]), { cwd: "/", stdout: "pipe", stderr: "pipe" });
    expect(r.stderr.toString()).toBe("");
    expect(r.stdout.toString()).toContain("10 boxes in a row");
    expect(r.exitCode).toBe(0);
  });
});
