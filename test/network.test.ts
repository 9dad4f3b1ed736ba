// The box's network (issue 11): "nat" reaches a server on the host's loopback (through pasta's
// mapping of the gateway address) and a host client reaches a server in the box through a forwarded
// port; "none" reaches neither. Nothing leaves this machine: both ends are on 127.0.0.1.
import { afterAll, describe, expect, test } from "bun:test";
import { spawnSync } from "bun";
import { goneWithin } from "../ffi/wait";
import { type Actor, command, processesWith, run, setupTestArea, start, writeConfig } from "./helpers";

const area = setupTestArea();
afterAll(() => area.cleanup());
const hasPasta = spawnSync(["sh", "-c", "command -v pasta"]).exitCode === 0;
/** pasta opens /dev/net/tun as the user; some hosts keep it root's (0600). */
const tunFor = (a: Actor) => spawnSync(command("/bin/sh", a, ["-c", "exec 3<>/dev/net/tun"])).exitCode === 0;

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
  const why = !hasPasta ? "pasta is not installed (apt-get install passt)" : !tunFor(a) ? `${a.name} may not open /dev/net/tun on this host` : null;
  if (why) console.warn(`skipped: "nat" for ${a.name}: ${why}`);

  /** A nat box serving /greeting ("from-the-box") over HTTP on box port 8080, forwarded from `forwarded`; it says "ready" once it listens. */
  const serving = (name: string, forwarded: number, before = "") => {
    const cfg = writeConfig(a, name, `rootfs = "../rootfs"\n[network]\nmode = "nat"\nports = ["127.0.0.1:${forwarded}:8080"]\n`);
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
  const pastaFor = (port: number) => processesWith(`127.0.0.1/${port}:8080`);

  test.skipIf(why !== null)(`"nat": out to the host's loopback, in through a forwarded port; resolv.conf generated; pasta ends with the box${why ? ` (skipped: ${why})` : ""}`, async () => {
    const host = hostServer("hello-from-host\n");
    const forwarded = freePort();
    const box = serving("nat.toml", forwarded, ["cat /etc/resolv.conf", "GW=$(ip route | awk '/default/{print $3}')", `wget -qO- http://$GW:${host.port}/`].join("\n"));
    try {
      const out = await untilLine(box.stdout, "ready");
      expect(out).toContain("nameserver 169.254.1.1");
      expect(out).toContain("hello-from-host");
      expect(pastaFor(forwarded).length).toBe(1); // control: pasta is there while the box runs
      expect(await ask(forwarded)).toBe("from-the-box\n");
      expect(await stop(box)).toBe(143);
      // nsrun has waited for pasta: nothing holds the port any more, at once.
      expect(pastaFor(forwarded)).toEqual([]);
      expect(await ask(forwarded)).toBeNull();
    } finally {
      box.kill();
      host.stop(true);
    }
  }, 60_000);

  test.skipIf(why !== null)(`"nat": the same port for box after box; a SIGKILLed nsrun takes pasta with it${why ? ` (skipped: ${why})` : ""}`, async () => {
    const forwarded = freePort();
    for (let i = 0; i < 3; i++) {
      const box = serving("nat-again.toml", forwarded);
      await untilLine(box.stdout, "ready");
      expect(await ask(forwarded)).toBe("from-the-box\n");
      expect(await stop(box)).toBe(143);
    }
    const box = serving("nat-killed.toml", forwarded);
    await untilLine(box.stdout, "ready");
    const pasta = pastaFor(forwarded);
    expect(pasta.length).toBe(1);
    box.kill("SIGKILL"); // nsrun itself (the supervisor), which pasta is a child of
    expect(goneWithin(pasta[0], 10_000)).toBe(true);
  }, 60_000);

  test.skipIf(why !== null || a.name !== "root")(`"nat" for root with a user namespace: the generated resolv.conf is readable by the box's root (root only)${why ? ` (skipped: ${why})` : ""}`, () => {
    const cfg = writeConfig(a, "nat-userns.toml", 'rootfs = "../rootfs"\n[namespaces]\nuser = true\n[network]\nmode = "nat"\n');
    const r = run(area.bin, a, ["run", "--config", cfg, "--", "/bin/sh", "-c", "id -u; cat /etc/resolv.conf"]);
    expect(r.stderr).toBe("");
    expect(r.stdout).toContain("nameserver 169.254.1.1");
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

  test('ports without "nat", or a bad port, are refused naming the key', () => {
    const bad = writeConfig(a, "ports-none.toml", 'rootfs = "../rootfs"\n[network]\nports = ["8080:80"]\n');
    expect(run(area.bin, a, ["--config", bad]).stderr).toContain("network.ports");
    const worse = writeConfig(a, "ports-bad.toml", 'rootfs = "../rootfs"\n[network]\nmode = "nat"\nports = ["99999"]\n');
    const r = run(area.bin, a, ["--config", worse]);
    expect(r.code).toBe(125);
    expect(r.stderr).toContain("network.ports[0]");
  });
});
