// OCI runtimes side by side in tests: nsrun and (when installed) runc, each with a state folder of
// the actor's own, run as the actor with their output in files (a detached container keeps its
// stdio open, so pipes would never reach end of file), and bundles whose config.json `runc spec`
// wrote. Used by the OCI tests (oci, oci-runc, oci-cgroupv1, launcher).
import { spawnSync } from "bun";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { editBundle, type Spec } from "../fixtures/oci/bundle";
import { type Actor, command, PATH } from "./helpers";

/** runc's path, or "" when it is not installed (a test then says what it skips). */
export const runcPath = spawnSync(["sh", "-c", "command -v runc"], { stdout: "pipe" }).stdout.toString().trim();

export interface RuntimeResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RuntimeOptions {
  cwd?: string;
  stdin?: string;
  env?: Record<string, string>;
  /** Default 60 s. */
  timeoutMs?: number;
}

let calls = 0;

/** A program as the actor, its output to files in the actor's area (a detached container keeps its stdio open). */
export function runAs(a: Actor, program: string, args: string[], opts: RuntimeOptions = {}): RuntimeResult {
  const out = join(a.area, `out${++calls}`);
  const err = join(a.area, `err${calls}`);
  const r = spawnSync(command(program, a, args), {
    env: opts.env ?? { PATH, XDG_RUNTIME_DIR: a.area },
    cwd: opts.cwd ?? a.area,
    stdin: opts.stdin !== undefined ? Buffer.from(opts.stdin) : "ignore",
    stdout: Bun.file(out),
    stderr: Bun.file(err),
    timeout: opts.timeoutMs ?? 60_000,
  });
  const read = (f: string) => (existsSync(f) ? readFileSync(f, "utf8") : "");
  return { code: r.exitCode ?? 128, stdout: read(out), stderr: read(err) };
}

/** The two runtimes for one test file; `bin` is nsrun's executable. */
export function runtimes(bin: string) {
  const run = runAs;
  const states: Array<[string, string]> = [[bin, "nsrun-state"], [runcPath, "runc-state"]];
  const nsrun = (a: Actor, args: string[], opts: RuntimeOptions = {}) => run(a, bin, ["--root", join(a.area, "nsrun-state"), ...args], opts);
  const runc = (a: Actor, args: string[], opts: RuntimeOptions = {}) => run(a, runcPath, ["--root", join(a.area, "runc-state"), ...args], opts);
  let bundles = 0;
  return {
    run,
    nsrun,
    runc,
    /** Delete whatever container either runtime still has for the actor (a failed test's). */
    deleteAll(a: Actor): void {
      for (const [runtime, root] of states) {
        if (!runtime) continue;
        const r = run(a, runtime, ["--root", join(a.area, root), "list", "-q"]);
        for (const id of r.stdout.split("\n").filter(Boolean)) run(a, runtime, ["--root", join(a.area, root), "delete", "--force", id]);
      }
    },
    /**
     * A bundle whose config.json `runc spec` wrote (`--rootless` for the ordinary user; `nsrun spec`
     * when runc is missing), its root the actor's busybox rootfs, no terminal, then edited.
     */
    bundle(a: Actor, edit: (s: Spec) => void): string {
      const dir = join(a.area, `bundle${++bundles}`);
      mkdirSync(dir);
      spawnSync(["chown", `${a.uid}:${a.gid}`, dir]);
      const rootless = a.name === "user" ? ["--rootless"] : [];
      const r = runcPath ? run(a, runcPath, ["spec", ...rootless, "--bundle", dir]) : nsrun(a, ["spec", ...rootless, "--bundle", dir]);
      if (r.code !== 0) throw new Error(r.stderr);
      editBundle(dir, (s) => {
        s.root = { path: join(a.area, "rootfs"), readonly: s.root.readonly };
        s.process.terminal = false;
        edit(s);
      });
      return dir;
    },
  };
}
