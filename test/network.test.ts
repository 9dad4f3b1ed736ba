// The box's network (issue 11): "nat", through pasta and through slirp4netns: a host client reaches
// a server in the box through a forwarded port; the box reaches a server on the host's loopback
// (through the helper's mapping of the gateway address) only with [network] host_loopback = true
// (issue 19), and without it still reaches the outside; "none" reaches neither. Nothing leaves
// this machine but the outside probe, a TCP connection to the host's nameserver (skipped, saying
// why, where there is none outside 127.0.0.0/8). Planning's choice of helper is tested without running one.
import { afterAll, describe, expect, test } from "bun:test";
import { spawnSync } from "bun";
import { readdirSync, readFileSync } from "node:fs";
import { connect } from "node:net";
import { basename } from "node:path";
import { goneWithin } from "../ffi/wait";
import { parseConfig } from "../core/stages/config";
import { ConfigError } from "../core/errors";
import { HELPERS, type NetworkHelper, pastaArgs, slirp4netnsArgs } from "../core/stages/network";
import { planBox } from "../core/stages/plan";
import { type Actor, command, run, setupTestArea, start, writeConfig } from "./helpers";

const area = setupTestArea();
afterAll(() => area.cleanup());
const installed = (program: string) => spawnSync(["sh", "-c", `command -v ${program}`]).exitCode === 0;
/** Both helpers open /dev/net/tun as the user; some hosts keep it root's (0600). */
const tunFor = (a: Actor) => spawnSync(command("/bin/sh", a, ["-c", "exec 3<>/dev/net/tun"])).exitCode === 0;
const helpers = (["pasta", "slirp4netns"] as const).map((helper) => ({ helper, ...HELPERS[helper] }));

/** The helper processes (pasta, slirp4netns) that are children of process `parent` (nsrun, then its supervisor). */
function helperOf(parent: number, helper: NetworkHelper): number[] {
  return helperProcesses(helper).filter((pid) => {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) === parent;
    } catch {
      return false; // exited while we looked
    }
  });
}

/** Every process on this host whose program is the helper (pasta may run as pasta.avx2). */
function helperProcesses(helper: NetworkHelper): number[] {
  return readdirSync("/proc")
    .filter((name) => /^\d+$/.test(name))
    .filter((name) => {
      try {
        return basename(readFileSync(`/proc/${name}/cmdline`, "utf8").split("\0")[0]).startsWith(helper);
      } catch {
        return false;
      }
    })
    .map(Number);
}

/** Everything `stream` says until a line `line` (the box tells it is ready), as text. */
async function untilLine(stream: ReadableStream<Uint8Array>, line: string): Promise<string> {
  const reader = stream.getReader();
  let text = "";
  try {
    while (!text.split("\n").includes(line)) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`the box ended before saying ${JSON.stringify(line)}; it said ${JSON.stringify(text)}`);
      text += new TextDecoder().decode(value);
    }
  } finally {
    reader.releaseLock();
  }
  return text;
}

/** A free port on 127.0.0.1 (the kernel picks it; the listener is closed again). */
function freePort(): number {
  const l = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = l.port;
  l.stop(true);
  return port;
}

// Every exchange is client-first (HTTP): pasta (Debian 12's 2023.03) can lose what a server sends
// at once and follows with its FIN, before pasta has finished its side of the connection; a server
// that only answers a request never meets that.

/** An HTTP server on the host's 127.0.0.1 that answers every request with `text`. */
function hostServer(text: string): { port: number; stop(force: boolean): void } {
  const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response(text) });
  return { port: server.port as number, stop: (force) => void server.stop(force) };
}

/** The host's first nameserver outside 127.0.0.0/8 when it answers TCP on port 53 from the host: a stand-in for "the outside". */
async function outsideAddress(): Promise<string | null> {
  const ns = readFileSync("/etc/resolv.conf", "utf8").match(/^\s*nameserver\s+((?!127\.)\d+\.\d+\.\d+\.\d+)\s*$/m)?.[1];
  if (!ns) return null;
  const reached = await new Promise<boolean>((done) => {
    const s = connect({ host: ns, port: 53, timeout: 3000 });
    s.on("connect", () => (s.destroy(), done(true)));
    s.on("error", () => done(false));
    s.on("timeout", () => (s.destroy(), done(false)));
  });
  return reached ? ns : null;
}

/** GET http://127.0.0.1:port/greeting from the host: the body, or null when nothing answers. */
async function ask(port: number): Promise<string | null> {
  try {
    const r = await fetch(`http://127.0.0.1:${port}/greeting`);
    return r.ok ? await r.text() : null;
  } catch {
    return null;
  }
}

describe.each(area.actors)("the network ($name)", (a) => {
  describe.each(helpers)('"nat" through $helper', ({ helper, package: pkg, nameserver }) => {
    const why = !installed(helper) ? `${helper} is not installed (apt-get install ${pkg})` : !tunFor(a) ? `${a.name} may not open /dev/net/tun on this host` : null;
    if (why) console.warn(`skipped: "nat" through ${helper} for ${a.name}: ${why}`);
    const skipped = why ? ` (skipped: ${why})` : "";
    const natConfig = (name: string, extra = "") => writeConfig(a, name, `rootfs = "../rootfs"\n[network]\nmode = "nat"\nhelper = "${helper}"\n${extra}`);

    /** A nat box serving /greeting ("from-the-box") over HTTP on box port 8080, forwarded from `forwarded`; it says "ready" once it listens. */
    const serving = (name: string, forwarded: number, before = "", extra = "") => {
      const cfg = natConfig(name, `ports = ["127.0.0.1:${forwarded}:8080"]\n${extra}`);
      const script = [
        before,
        "mkdir -p /tmp/www && echo from-the-box > /tmp/www/greeting",
        "httpd -f -p 8080 -h /tmp/www &",
        // Ready once the kernel lists the listening socket: no guessing how long httpd takes to start.
        "until netstat -ltn | grep -q ':8080 '; do :; done",
        "echo ready",
        "wait",
      ].filter(Boolean).join("\n");
      return start(area.bin, a, ["run", "--config", cfg, "--", "/bin/sh", "-c", script]);
    };
    /** End a serving box the way a user would (SIGTERM to nsrun); its status says so. */
    const stop = async (box: ReturnType<typeof start>) => {
      box.kill("SIGTERM");
      return box.exited;
    };

    test.skipIf(why !== null)(`with host_loopback = true out to the host's loopback, in through a forwarded port; resolv.conf names ${nameserver}; ${helper} ends with the box${skipped}`, async () => {
      const host = hostServer("hello-from-host\n");
      const forwarded = freePort();
      const box = serving("nat.toml", forwarded, ["cat /etc/resolv.conf", "GW=$(ip route | awk '/default/{print $3}')", `wget -qO- http://$GW:${host.port}/`].join("\n"), "host_loopback = true\n");
      try {
        const out = await untilLine(box.stdout, "ready");
        expect(out).toContain(`nameserver ${nameserver}\n`);
        expect(out).toContain("hello-from-host");
        const pids = helperOf(box.pid, helper);
        expect(pids.length).toBe(1); // control: the helper is there while the box runs, nsrun's child
        expect(await ask(forwarded)).toBe("from-the-box\n");
        expect(await stop(box)).toBe(143);
        // nsrun has ended and reaped the helper before it returned: it is gone, and the port is free, at once.
        expect(goneWithin(pids[0], 0)).toBe(true);
        expect(await ask(forwarded)).toBeNull();
      } finally {
        box.kill();
        host.stop(true);
      }
    }, 60_000);

    test.skipIf(why !== null)(`by default the host's loopback is out of reach, while the outside and a forwarded port are not (control: host_loopback = true, above)${skipped}`, async () => {
      const host = hostServer("hello-from-host\n");
      const forwarded = freePort();
      const outside = await outsideAddress();
      if (!outside) console.warn("skipped: the outside probe: no nameserver outside 127.0.0.0/8 in /etc/resolv.conf answers TCP on this host");
      const probe = [
        "GW=$(ip route | awk '/default/{print $3}')",
        // A bounded wait: without the mapping, pasta sends the gateway's packets on to the real gateway.
        `wget -T 3 -qO- http://$GW:${host.port}/ || echo LOOPBACK-UNREACHABLE`,
        outside ? `nc -w 10 ${outside} 53 </dev/null && echo OUTSIDE-REACHED` : "",
      ].filter(Boolean).join("\n");
      const box = serving("nat-private.toml", forwarded, probe);
      try {
        const out = await untilLine(box.stdout, "ready");
        expect(out).toContain("LOOPBACK-UNREACHABLE");
        expect(out).not.toContain("hello-from-host");
        if (outside) expect(out).toContain("OUTSIDE-REACHED");
        expect(await ask(forwarded)).toBe("from-the-box\n");
        expect(await stop(box)).toBe(143);
      } finally {
        box.kill();
        host.stop(true);
      }
    }, 60_000);

    test.skipIf(why !== null)(`the same port for box after box; a SIGKILLed nsrun takes ${helper} with it${skipped}`, async () => {
      const forwarded = freePort();
      for (let i = 0; i < 3; i++) {
        const box = serving("nat-again.toml", forwarded);
        await untilLine(box.stdout, "ready");
        expect(await ask(forwarded)).toBe("from-the-box\n");
        expect(await stop(box)).toBe(143);
      }
      const box = serving("nat-killed.toml", forwarded);
      await untilLine(box.stdout, "ready");
      const pids = helperOf(box.pid, helper);
      expect(pids.length).toBe(1);
      box.kill("SIGKILL"); // nsrun itself (the supervisor), which the helper is a child of
      expect(goneWithin(pids[0], 10_000)).toBe(true);
    }, 60_000);

    test.skipIf(why !== null)(`a forwarded host port already in use: exit 125 naming network.ports[1], the box never starts, no ${helper} left${skipped}`, () => {
      const taken = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
      try {
        const before = new Set(helperProcesses(helper));
        const cfg = natConfig("nat-taken.toml", `ports = ["127.0.0.1:${freePort()}:8080", "127.0.0.1:${taken.port}:8080"]\n`);
        const r = run(area.bin, a, ["run", "--config", cfg, "--", "/bin/echo", "started"]);
        expect(r.code).toBe(125);
        expect(r.stderr).toContain(`network.ports[1] "127.0.0.1:${taken.port}:8080/tcp"`);
        expect(r.stdout).toBe("");
        expect(helperProcesses(helper).filter((pid) => !before.has(pid))).toEqual([]);
      } finally {
        taken.stop(true);
      }
    });

    // Only root's box has a user namespace of its own here; an ordinary user's always has one.
    if (a.name === "root") test.skipIf(why !== null)(`for root with a user namespace: the generated resolv.conf is readable by the box's root${skipped}`, () => {
      const cfg = writeConfig(a, "nat-userns.toml", `rootfs = "../rootfs"\n[namespaces]\nuser = true\n[network]\nmode = "nat"\nhelper = "${helper}"\n`);
      const r = run(area.bin, a, ["run", "--config", cfg, "--", "/bin/sh", "-c", "id -u; cat /etc/resolv.conf"]);
      expect(r.stderr).toBe("");
      expect(r.stdout).toContain(`nameserver ${nameserver}`);
    });
  });

  test(`"none" (the default) reaches neither (control: the host's loopback server answers the host)`, async () => {
    const host = hostServer("hello-from-host\n");
    try {
      expect(await ask(host.port)).toBe("hello-from-host\n");
      const cfg = writeConfig(a, "none.toml", 'rootfs = "../rootfs"\n');
      const r = run(area.bin, a, ["run", "--config", cfg, "--", "/bin/sh", "-c", `ip route; wget -T 2 -qO- http://10.0.2.2:${host.port}/ || echo UNREACHABLE; wget -T 2 -qO- http://192.0.2.1:${host.port}/ || echo UNREACHABLE`]);
      expect(r.stdout).not.toContain("hello-from-host");
      expect(r.stdout.match(/UNREACHABLE/g)?.length).toBe(2);
      expect(r.stdout).not.toContain("default");
    } finally {
      host.stop(true);
    }
  });

  test("--net-host-loopback is host_loopback = true and implies nat; with --net none it is refused naming the key", () => {
    const rootfs = `${a.area}/rootfs`;
    const printed = run(area.bin, a, ["run", "--rootfs", rootfs, "--net-host-loopback", "--print-config"]);
    expect(printed.stdout).toContain('[network]\nmode = "nat"\nports = []\nhost_loopback = true\n');
    expect(run(area.bin, a, ["run", "--rootfs", rootfs, "--print-config"]).stdout).not.toContain("host_loopback");
    const r = run(area.bin, a, ["run", "--rootfs", rootfs, "--net", "none", "--net-host-loopback", "true"]);
    expect(r.code).toBe(125);
    expect(r.stderr).toContain("network.host_loopback");
  });

  test('ports or a helper without "nat", or a bad port, are refused naming the key', () => {
    const bad = writeConfig(a, "ports-none.toml", 'rootfs = "../rootfs"\n[network]\nports = ["8080:80"]\n');
    expect(run(area.bin, a, ["--config", bad]).stderr).toContain("network.ports");
    const helperOnly = writeConfig(a, "helper-none.toml", 'rootfs = "../rootfs"\n[network]\nhelper = "slirp4netns"\n');
    expect(run(area.bin, a, ["--config", helperOnly]).stderr).toContain("network.helper");
    const worse = writeConfig(a, "ports-bad.toml", 'rootfs = "../rootfs"\n[network]\nmode = "nat"\nports = ["99999"]\n');
    const r = run(area.bin, a, ["--config", worse]);
    expect(r.code).toBe(125);
    expect(r.stderr).toContain("network.ports[0]");
  });
});

describe('planning picks the "nat" helper (a fake check of what is installed)', () => {
  const nat = (installedHere: string[], network: Record<string, unknown> = {}) =>
    planBox(
      { config: parseConfig({ rootfs: "r", network: { mode: "nat", ...network } }, "box.toml"), file: "box.toml", dir: "/tmp" },
      { rootfs: "/r", sources: [], installed: (p) => installedHere.includes(p), rootfsFile: () => null },
      { uid: 1000, gid: 1000 },
    );
  const refusal = (fn: () => unknown): ConfigError => {
    try {
      fn();
    } catch (e) {
      if (e instanceof ConfigError) return e;
      throw e;
    }
    throw new Error("expected a ConfigError");
  };
  const resolvOf = (p: ReturnType<typeof nat>) => p.files.find((f) => f.target === "/etc/resolv.conf")?.content;

  test("pasta when installed, else slirp4netns, else a refusal naming both packages", () => {
    const both = nat(["pasta", "slirp4netns"]);
    expect(both.network.helper).toEqual({ name: "pasta", why: "pasta is installed (preferred over slirp4netns)" });
    expect(resolvOf(both)).toBe("nameserver 169.254.1.1\n");
    const slirp = nat(["slirp4netns"]);
    expect(slirp.network.helper).toEqual({ name: "slirp4netns", why: "pasta is not installed" });
    expect(resolvOf(slirp)).toBe("nameserver 10.0.2.3\n");
    const neither = refusal(() => nat([]));
    expect(neither.key).toBe("network.mode");
    expect(neither.message).toContain("passt");
    expect(neither.message).toContain("slirp4netns");
  });

  test("the host's loopback only with host_loopback = true: pasta --no-map-gw and slirp4netns --disable-host-loopback otherwise; refused without nat", () => {
    const off = nat(["pasta"]).network;
    const on = nat(["pasta"], { host_loopback: true }).network;
    expect([off.hostLoopback, on.hostLoopback]).toEqual([false, true]);
    const pasta = (p: typeof off) => pastaArgs(p, { userns: true, root: false, pidFile: "/p" });
    expect(pasta(off)).toContain("--no-map-gw");
    expect(pasta(on)).not.toContain("--no-map-gw");
    const slirp = (hostLoopback: boolean | undefined) => slirp4netnsArgs({ userns: true, readyFd: 5, exitFd: 6, apiSocket: null, hostLoopback });
    expect(slirp(off.hostLoopback)).toContain("--disable-host-loopback");
    expect(slirp(undefined)).toContain("--disable-host-loopback");
    expect(slirp(true)).not.toContain("--disable-host-loopback");
    const none = () => planBox({ config: parseConfig({ rootfs: "r", network: { host_loopback: true } }, "box.toml"), file: "box.toml", dir: "/tmp" }, { rootfs: "/r", sources: [] }, { uid: 1000, gid: 1000 });
    expect(refusal(none).key).toBe("network.host_loopback");
  });

  test("[network] helper names one; one not installed is refused naming its package", () => {
    expect(nat(["pasta", "slirp4netns"], { helper: "slirp4netns" }).network.helper?.name).toBe("slirp4netns");
    expect(nat(["pasta"], { helper: "pasta" }).network.helper?.name).toBe("pasta");
    expect(nat(["pasta", "slirp4netns"], { helper: "auto" }).network.helper?.name).toBe("pasta");
    const missing = refusal(() => nat(["slirp4netns"], { helper: "pasta" }));
    expect(missing.key).toBe("network.helper");
    expect(missing.message).toContain("package passt");
    expect(refusal(() => nat(["pasta"], { helper: "slirp4netns" })).message).toContain("package slirp4netns");
    expect(refusal(() => nat(["pasta"], { helper: "slirp" })).key).toBe("network.helper");
  });
});
