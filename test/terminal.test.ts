// A box with a terminal of its own (issue 11): driven through a pseudo-terminal as a user at a
// terminal would, root and rootless: tty names the box's pty, job control works (a job stopped with
// Ctrl-Z and brought back with fg), Ctrl-C interrupts a foreground child, a resize reaches the box,
// and nsrun gives its terminal back as it found it.
import { afterAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { openPty } from "./pty";
import { type Actor, command, setupTestArea } from "./helpers";

const area = setupTestArea();
afterAll(() => area.cleanup());

describe.each(area.actors)("a box with a terminal ($name)", (a: Actor) => {
  test("tty, job control, Ctrl-C, resize, and the host terminal restored", async () => {
    const pty = openPty(30, 100);
    const before = pty.termios();
    const cfg = join(a.area, "configs/minimal.toml");
    // setsid -c: the pty is nsrun's controlling terminal, as a login shell's would be.
    const nsrun = Bun.spawn(["setsid", "-c", ...command(area.bin, a, ["run", "-t", "--config", cfg, "--", "/bin/sh", "-i"])], {
      stdio: [pty.slave, pty.slave, pty.slave],
      env: { PATH: "/usr/bin:/bin", TERM: "xterm-256color" },
      cwd: a.area,
    });
    const step = async (input: string, expected: RegExp) => {
      const from = pty.output().length;
      pty.write(input);
      const ok = await pty.waitFor(expected, from);
      if (!ok) throw new Error(`no ${expected} after ${JSON.stringify(input)}; got ${JSON.stringify(pty.output().slice(from))}`);
    };
    try {
      await step("tty; echo TERM=$TERM\n", /\/dev\/pts\/0[\s\S]*TERM=xterm-256color/);
      await step("stty size\n", /30 100/);
      pty.resize(40, 120);
      await step("stty size\n", /40 120/);
      // Ctrl-C reaches the foreground job through the box's own terminal, not nsrun. The job says
      // when it runs (input typed before that would be read as part of the command line).
      await step("sh -c 'echo running; exec sleep 100'\n", /running\r?\n/);
      await step("\x03", /\^C[\s\S]*# /);
      await step("echo interrupted\n", /interrupted/);
      // Ctrl-Z stops the job, fg brings it back, Ctrl-C ends it.
      await step("sh -c 'echo running; exec sleep 100'\n", /running\r?\n/);
      await step("\x1a", /Stopped/i);
      await step("jobs\n", /sleep 100|running/);
      await step("fg\n", /sleep 100|sh -c/);
      await step("\x03", /\^C[\s\S]*# /);
      await step("echo back-in-front\n", /back-in-front/);
      pty.write("exit 5\n");
      expect(await nsrun.exited).toBe(5);
      expect(pty.termios()).toBe(before);
    } finally {
      nsrun.kill("SIGKILL");
      pty.close();
    }
  }, 60_000);

  test("without a terminal (--no-tty, or stdio that are not one) the box's stdio are nsrun's own", () => {
    const cfg = join(a.area, "configs/minimal.toml");
    const r = Bun.spawnSync(command(area.bin, a, ["run", "--config", cfg, "--", "/bin/sh", "-c", "tty; echo out"]), { stdout: "pipe", stderr: "pipe", cwd: a.area });
    expect(r.stdout.toString()).toBe("not a tty\nout\n");
  });
});
