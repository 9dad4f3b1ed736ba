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

/** A host server on 127.0.0.1 that greets each client. */
function greeter(text: string) {
  // end(text), not write then end: with the latter Bun left pasta's connection half-open, and pasta
  // connected again and again (seen with busybox nc in the box).
  return Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { open: (s) => void s.end(text), data() {} } });
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

  /** A nat box whose script serves one reply on box port 8080 (forwarded from `forwarded`), saying "ready" once it listens. */
  const serving = (name: string, forwarded: number, before = "", toml = "") => {
    const cfg = writeConfig(a, name, `rootfs = "../rootfs"\n${toml}[network]\nmode = "nat"\nports = ["127.0.0.1:${forwarded}:8080"]\n`);
    const script = [
      before,
      "(echo from-the-box | nc -l -p 8080) &",
      // Ready once the kernel lists the listening socket: no guessing how long nc takes to start.
      "until netstat -ltn | grep -q ':8080 '; do :; done",
      "echo ready",
      "wait",
    ].filter(Boolean).join("\n");
    return start(area.bin, a, ["run", "--config", cfg, "--", "/bin/sh", "-c", script]);
  };

  test.skipIf(why !== null)(`"nat": out to the host's loopback, in through a forwarded port; resolv.conf generated; pasta ends with the box${why ? ` (skipped: ${why})` : ""}`, async () => {
    const host = greeter("hello-from-host\n");
    const forwarded = freePort();
    const box = serving("nat.toml", forwarded, ["cat /etc/resolv.conf", "GW=$(ip route | awk '/default/{print $3}')", `echo | nc -w 5 $GW ${host.port}`].join("\n"));
    try {
      const out = await untilLine(box.stdout, "ready");
      expect(out).toContain("nameserver 169.254.1.1");
      expect(out).toContain("hello-from-host");
      expect(processesWith(`127.0.0.1/${forwarded}:8080`).length).toBe(1); // control: pasta is there while the box runs
      expect(await ask(forwarded)).toBe("from-the-box\n");
      expect(await box.exited).toBe(0);
      // nsrun has waited for pasta: nothing holds the port any more, at once.
      expect(processesWith(`127.0.0.1/${forwarded}:8080`)).toEqual([]);
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
      expect(await box.exited).toBe(0);
    }
    const box = serving("nat-killed.toml", forwarded);
    await untilLine(box.stdout, "ready");
    const pasta = processesWith(`127.0.0.1/${forwarded}:8080`);
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
