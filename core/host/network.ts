// The host's part of the network stage for mode "nat": start pasta on the box's network namespace
// while the box waits at its sync point. nsrun opens the namespaces (it may, as their owner or as
// root) and hands them to pasta as fds 3 and 4; pasta configures the box's interface, routes and
// DNS forwarding, forks into the background and writes its PID, which the supervisor ends the box with.
import { accessSync, closeSync, constants, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { StageError } from "../errors";
import { type NetworkPlan, pastaArgs } from "../network";

function usable(path: string): boolean {
  try {
    accessSync(path, constants.R_OK | constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/** Start pasta for process `pid`'s network namespace; returns pasta's PID. */
export async function startPasta(plan: NetworkPlan, pid: number, userns: boolean): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), "nsrun-pasta-"));
  const pidFile = join(dir, "pid");
  const fds = [openSync(`/proc/${pid}/ns/net`, "r"), ...(userns ? [openSync(`/proc/${pid}/ns/user`, "r")] : [])];
  try {
    const args = pastaArgs(plan, { userns, root: process.getuid?.() === 0, pidFile });
    const run = Bun.spawn(args, { stdio: ["ignore", "ignore", "pipe", ...fds], env: { PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" } });
    const [code, err] = await Promise.all([run.exited, new Response(run.stderr).text()]);
    let pastaPid = 0;
    try {
      pastaPid = Number(readFileSync(pidFile, "utf8").trim());
    } catch {
      // no PID file: pasta did not get as far as its background process
    }
    const message = err.split("\n").filter((l) => l && !/syslog/.test(l)).pop();
    if (code !== 0 || !pastaPid) {
      const tun = /tun/.test(message ?? "") && !usable("/dev/net/tun");
      const hint = tun
        ? "pasta needs /dev/net/tun, which this user may not open here: make it usable (Debian's default is mode 0666: chmod 0666 /dev/net/tun), or use [network] mode = \"none\""
        : 'check [network] ports (a host port already in use?), or use [network] mode = "none"';
      throw new StageError("network", `start pasta for the box: ${args.join(" ")}: ${message || `exit status ${code}`}`, hint);
    }
    return pastaPid;
  } finally {
    for (const fd of fds) closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  }
}
