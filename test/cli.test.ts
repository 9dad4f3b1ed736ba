// The command line (issue 13): flags for one-liners map onto box.toml (a flag and the equivalent
// TOML print the same config), `nsrun run CMD` without --, and what used to be silently accepted is
// now an error with exit status 125 naming the key or flag.
import { afterAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { run, setupTestArea, writeConfig } from "./helpers";

const area = setupTestArea();
afterAll(() => area.cleanup());
const a = area.actors[0];
const nsrun = (args: string[]) => run(area.bin, a, args);
const rootfs = join(a.area, "rootfs");
const data = join(a.area, "data");

describe("flags and box.toml say the same thing", () => {
  const cases: Array<[string, string[], string]> = [
    ["--rootfs", [], ""],
    ["--bind", ["--bind", `${data}:/d`], `[[mounts]]\ntype = "bind"\nsource = "${data}"\ntarget = "/d"\n`],
    ["--ro-bind", ["--ro-bind", `${data}:/d`], `[[mounts]]\ntype = "bind"\nsource = "${data}"\ntarget = "/d"\nreadonly = true\n`],
    ["--tmpfs", ["--tmpfs", "/scratch"], '[[mounts]]\ntype = "tmpfs"\ntarget = "/scratch"\n'],
    ["--env, -e", ["-e", "A=1", "--env", "B=2"], '[process]\nenv = { PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", A = "1", B = "2" }\n'],
    ["--hostname", ["--hostname", "one"], 'hostname = "one"\n'],
    ["--cwd, -w", ["-w", "/tmp"], '[process]\ncwd = "/tmp"\n'],
    ["--user, -u", ["-u", "5"], '[process]\nuser = "5:5"\n'],
    ["--net", ["--net", "host"], '[network]\nmode = "host"\n'],
    ["--memory --pids --cpus", ["-m", "64M", "--pids", "20", "--cpus", "0.5"], '[limits]\nmemory = "64M"\npids = 20\ncpu = 0.5\n'],
    ["--ephemeral --readonly --init", ["--ephemeral", "--readonly", "--init"], "ephemeral = true\nreadonly = true\n[process]\ninit = true\n"],
  ];
  test.each(cases)("%s", (_, flags, toml) => {
    // Root-level keys first in the file, then its tables, as TOML wants.
    const [top, ...tables] = toml.split(/(?=^\[)/m);
    const file = writeConfig(a, "flag-equivalent.toml", `rootfs = "${rootfs}"\n${top.startsWith("[") ? "" : top}${[top.startsWith("[") ? top : "", ...tables].join("")}`);
    const fromFlags = nsrun(["run", "--rootfs", rootfs, ...flags, "--print-config"]);
    const fromToml = nsrun(["run", "--config", file, "--print-config"]);
    expect(fromFlags.stderr).toBe("");
    expect(fromFlags.stdout).toBe(fromToml.stdout);
    expect(fromFlags.code).toBe(0);
  });

  test("a flag overrides the key it names in --config; the printed config runs as it is", () => {
    const file = writeConfig(a, "override.toml", `rootfs = "${rootfs}"\nhostname = "from-file"\n`);
    const printed = nsrun(["run", "--config", file, "--hostname", "from-flag", "--print-config"]).stdout;
    expect(printed).toContain('hostname = "from-flag"');
    const again = writeConfig(a, "printed.toml", printed);
    expect(nsrun(["run", "--config", again, "hostname"]).stdout).toBe("from-flag\n");
  });

  test("-p alone means --net nat", () => {
    const r = nsrun(["run", "--rootfs", rootfs, "-p", "18080:80", "--print-config"]);
    expect(r.stdout).toContain('mode = "nat"');
    expect(r.stdout).toContain('ports = ["18080:80"]');
  });
});

describe("the command and what used to be silent", () => {
  test("nsrun run CMD ARG... runs CMD (no -- needed); its options stay its own", () => {
    expect(nsrun(["run", "--rootfs", rootfs, "ls", "-d", "/etc"]).stdout).toBe("/etc\n");
    expect(nsrun(["run", "--rootfs", rootfs, "sh", "-c", "echo $0", "--help"]).stdout).toBe("--help\n");
  });

  test.each([
    ["--config with no file", ["run", "--config"], "--config needs a value"],
    ["an unknown flag", ["run", "--confg", "x"], "unknown option --confg"],
    ["a bad --env", ["run", "--rootfs", rootfs, "-e", "NOEQUALS", "true"], "--env: expected NAME=value"],
    ["a bad --pids", ["run", "--rootfs", rootfs, "--pids", "lots", "true"], "--pids: expected a number"],
  ])("%s: exit 125, one line", (_, args, message) => {
    const r = nsrun(args);
    expect(r.code).toBe(125);
    expect(r.stderr).toContain(message);
    expect(r.stderr.trim().split("\n").length).toBeLessThanOrEqual(2);
  });

  test("env takes a table or NAME=value strings, nothing else", () => {
    const list = writeConfig(a, "env-list.toml", `rootfs = "${rootfs}"\n[process]\nenv = ["FOO=bar", "PATH=/bin"]\n`);
    expect(nsrun(["run", "--config", list, "env"]).stdout.split("\n").filter(Boolean).sort()).toEqual(["FOO=bar", "HOME=/root", "PATH=/bin"]);
    const bad = writeConfig(a, "env-bad.toml", `rootfs = "${rootfs}"\n[process]\nenv = ["FOO"]\n`);
    const r = nsrun(["run", "--config", bad, "env"]);
    expect(r.code).toBe(125);
    expect(r.stderr).toContain("process.env");
  });

  test("a memory limit too small for nsrun to set a box up says so, naming the key", () => {
    const tiny = writeConfig(a, "tiny-memory.toml", `rootfs = "${rootfs}"\n[limits]\nmemory = 100\n`);
    const r = nsrun(["--config", tiny]);
    expect(r.code).toBe(125);
    expect(r.stderr).toContain("limits.memory: at least 6M");
  });

  test("an ordinary user's [namespaces] user = false names the key, not a sysctl", () => {
    const u = area.actors.find((x) => x.name === "user");
    if (!u) throw new Error("setupTestArea always has the user actor");
    const cfg = writeConfig(u, "no-userns.toml", 'rootfs = "../rootfs"\n[namespaces]\nuser = false\n');
    const r = run(area.bin, u, ["--config", cfg]);
    expect(r.code).toBe(125);
    expect(r.stderr).toContain("namespaces.user: an ordinary user may create the other namespaces only inside a user namespace");
  });

  test("--help lists the flags in groups, in one column, with the command in the usage line", () => {
    const help = nsrun(["run", "--help"]).stdout;
    expect(help).toContain("USAGE nsrun run [OPTIONS] [CMD ARG...]");
    for (const group of ["The box:", "Mounts:", "The command:", "Network:", "Limits:"]) expect(help).toContain(group);
    // Where each option's description starts: one column for all.
    const columns = help
      .split("\n")
      .map((l) => l.match(/^(\s+(?:-\w, )?--[\w-]+(?: \S+)?\s+)\S/)?.[1].length)
      .filter((n) => n !== undefined);
    expect(columns.length).toBeGreaterThan(20);
    expect(new Set(columns).size).toBe(1);
  });

  test("--log-level info and debug say more; a bad level is refused", () => {
    const debug = nsrun(["run", "--log-level", "debug", "--rootfs", rootfs, "true"]);
    expect(debug.stderr).toContain("nsrun: debug: plan");
    expect(nsrun(["run", "--rootfs", rootfs, "true"]).stderr).toBe("");
    const bad = nsrun(["run", "--log-level", "loud", "true"]);
    expect(bad.code).toBe(125);
    expect(bad.stderr).toContain("--log-level");
  });
});
