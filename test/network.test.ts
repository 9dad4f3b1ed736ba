// The box's network (issue 11): "nat" reaches a server on the host's loopback (through pasta's
// mapping of the gateway address) and a host client reaches a server in the box through a forwarded
// port; "none" reaches neither. Nothing leaves this machine: both ends are on 127.0.0.1.
import { afterAll, describe, expect, test } from "bun:test";
import { spawnSync } from "bun";
import { type Actor, command, processesWith, run, setupTestArea, start, waitFor, writeConfig } from "./helpers";

const area = setupTestArea();
afterAll(() => area.cleanup());
const hasPasta = spawnSync(["sh", "-c", "command -v pasta"]).exitCode === 0;
/** pasta opens /dev/net/tun as the user; some hosts keep it root's (0600). */
const tunFor = (a: Actor) => spawnSync(command("/bin/sh", a, ["-c", "exec 3<>/dev/net/tun"])).exitCode === 0;

/** A free port on 127.0.0.1 (the kernel picks it; the listener is closed again). */
function freePort(): number {
  const l = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = l.port;
  l.stop(true);
  return port;
}

/** A host server on 127.0.0.1 that greets each client. */
function greeter(text: string) {
  return Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { open: (s) => void (s.write(text), s.end()), data() {} } });
}

/** Connect to 127.0.0.1:port and return what the other side says, or null when it is refused. */
async function ask(port: number): Promise<string | null> {
  return new Promise((resolve) => {
    let text = "";
    Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        data: (_s, d) => void (text += d.toString()),
        close: () => resolve(text),
        connectError: () => resolve(null),
        error: () => resolve(null),
      },
    }).catch(() => resolve(null));
  });
}

describe.each(area.actors)("the network ($name)", (a) => {
  const why = !hasPasta ? "pasta is not installed (apt-get install passt)" : !tunFor(a) ? `${a.name} may not open /dev/net/tun on this host` : null;
  if (why) console.warn(`skipped: "nat" for ${a.name}: ${why}`);

  test.skipIf(why !== null)(`"nat": out to the host's loopback, in through a forwarded port; resolv.conf generated; pasta ends with the box${why ? ` (skipped: ${why})` : ""}`, async () => {
    const host = greeter("hello-from-host\n");
    const forwarded = freePort();
    const cfg = writeConfig(a, "nat.toml", `rootfs = "../rootfs"\n[network]\nmode = "nat"\nports = ["127.0.0.1:${forwarded}:8080"]\n`);
    const script = [
      "cat /etc/resolv.conf",
      "GW=$(ip route | awk '/default/{print $3}')",
      `echo | nc -w 5 $GW ${host.port}`,
      // A server in the box: one reply, then the box ends.
      "echo from-the-box | nc -l -p 8080",
    ].join("; ");
    const box = start(area.bin, a, ["run", "--config", cfg, "--", "/bin/sh", "-c", script]);
    try {
      let reply: string | null = null;
      // The box's server is up when it answers: ask until it does (bounded).
      for (let i = 0; i < 200 && !reply; i++) {
        reply = await ask(forwarded);
        if (!reply) await Bun.sleep(25);
      }
      expect(reply).toBe("from-the-box\n");
      expect(await box.exited).toBe(0);
      const out = await new Response(box.stdout).text();
      expect(out).toContain("nameserver 169.254.1.1");
      expect(out).toContain("hello-from-host");
      expect(await waitFor(() => processesWith(`127.0.0.1/${forwarded}:8080`).length === 0)).toBe(true);
    } finally {
      box.kill();
      host.stop(true);
    }
  }, 60_000);

  test(`"none" (the default) reaches neither (control: the host's loopback server answers the host)`, async () => {
    const host = greeter("hello-from-host\n");
    try {
      expect(await ask(host.port)).toBe("hello-from-host\n");
      const cfg = writeConfig(a, "none.toml", 'rootfs = "../rootfs"\n');
      const r = run(area.bin, a, ["run", "--config", cfg, "--", "/bin/sh", "-c", `ip route; echo | nc -w 2 10.0.2.2 ${host.port} || echo UNREACHABLE; echo | nc -w 2 192.0.2.1 ${host.port} || echo UNREACHABLE`]);
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
