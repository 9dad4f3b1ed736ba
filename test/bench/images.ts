// Image benchmark: import and pull throughput of nsrun against skopeo + umoci, on the same image.
// Not a test: it measures with hyperfine and prints markdown tables; it never fails because a
// machine is slow, and a competitor that cannot run here becomes a note.
//
//   bun run bench:images       (as root; builds dist/nsrun first; BENCH_RUNS=5 by default)
//   BENCH_DIR=/dev/shm bun run bench:images     (everything on a tmpfs: the CPU's figures, not the disk's)
//
// The image, made here: busybox-static, an application of a few thousand small text files owned
// by 1000:1000, a layer of large incompressible files, and a small layer that changes and whites
// out a few things; gzip-compressed, as an OCI layout. Every run starts from nothing: a fresh store
// for nsrun (so a pull downloads every blob), fresh folders for skopeo and umoci. The registry is
// Debian's docker-registry on 127.0.0.1. MB/s is the image's uncompressed size over the median time.
// Needs: busybox-static, hyperfine, skopeo, umoci, docker-registry (all Debian packages).
import { spawnSync } from "bun";
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { busyboxLayerEntries, writeOciLayout } from "../../fixtures/images/build";
import { has, skopeoPush, startDockerRegistry } from "../../fixtures/images/registries";
import { type TarInput, writeTar } from "../../fixtures/images/tar-writer";

const REPO = resolve(import.meta.dir, "../..");
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const USER = "nsrun-test";
const MB = 1024 * 1024;
const notes: string[] = [];
const work = { dir: mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), "nsrun-image-bench-")) };
chmodSync(work.dir, 0o755); // the rootless rows read the layout and write below it

interface Row {
  what: string;
  tool: string;
  median: number;
  mean: number;
  stddev: number;
}

/** A small deterministic generator (xorshift32): the same image on every run and machine. */
function generator(seed: number) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 0x100000000;
  };
}

const WORDS = "the a box image layer file owner root user namespace mount tape syscall kernel process store blob digest manifest config".split(" ");

/** Source-like text: compresses about 4:1, as code and documentation do. */
function text(rand: () => number, bytes: number): string {
  const out: string[] = [];
  let n = 0;
  while (n < bytes) {
    const line = Array.from({ length: 4 + Math.floor(rand() * 8) }, () => WORDS[Math.floor(rand() * WORDS.length)]).join(" ");
    out.push(line);
    n += line.length + 1;
  }
  return `${out.join("\n")}\n`;
}

function noise(rand: () => number, bytes: number): Buffer {
  const b = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i += 4) b.writeUInt32LE(Math.floor(rand() * 0x100000000), i);
  return b;
}

function layers(): Buffer[] {
  const rand = generator(14);
  const app: TarInput[] = [{ path: "home/", type: "dir" }, { path: "home/app/", type: "dir", uid: 1000, gid: 1000 }];
  for (let d = 0; d < 60; d++) {
    app.push({ path: `home/app/pkg${d}/`, type: "dir", uid: 1000, gid: 1000 });
    for (let f = 0; f < 50; f++) app.push({ path: `home/app/pkg${d}/mod${f}.js`, data: text(rand, 512 + Math.floor(rand() * 12000)), uid: 1000, gid: 1000, mode: 0o644 });
  }
  const data: TarInput[] = [{ path: "usr/", type: "dir" }, { path: "usr/lib/", type: "dir" }, { path: "usr/lib/data/", type: "dir" }];
  for (let i = 0; i < 4; i++) data.push({ path: `usr/lib/data/blob${i}.bin`, data: noise(rand, 4 * MB), mode: 0o644 });
  const change: TarInput[] = [
    { path: "home/app/pkg0/.wh.mod0.js", data: "" },
    { path: "etc/motd", data: "benchmark image\n" },
    { path: "home/app/pkg1/mod1.js", data: text(rand, 4000), uid: 1000, gid: 1000 },
  ];
  return [writeTar(busyboxLayerEntries()), writeTar(app), writeTar(data), writeTar(change)];
}

/**
 * A command, waited for without blocking the event loop: the registry's log is drained there, and a
 * registry whose log pipe is full stops answering.
 */
async function sh(argv: string[]): Promise<{ code: number; stderr: string }> {
  const p = Bun.spawn(argv, { cwd: work.dir, stdin: "ignore", stdout: "ignore", stderr: "pipe" });
  const [code, stderr] = await Promise.all([p.exited, new Response(p.stderr).text()]);
  return { code, stderr };
}

/** Each command once, untimed: one that fails here is a note, not a figure. */
async function works(name: string, prepare: string, cmd: string): Promise<boolean> {
  await sh(["sh", "-c", prepare]);
  const r = await sh(["sh", "-c", cmd]);
  if (r.code === 0) return true;
  notes.push(`${name} skipped: \`${cmd}\` failed here: ${r.stderr.trim().split("\n").pop()}`);
  return false;
}

/** hyperfine, side by side: each command with its own --prepare, which runs untimed before every run. */
async function hyperfine(what: string, commands: Array<{ tool: string; prepare: string; cmd: string }>): Promise<Row[]> {
  const ok: typeof commands = [];
  for (const c of commands) if (await works(`${what}: ${c.tool}`, c.prepare, c.cmd)) ok.push(c);
  if (!ok.length) return [];
  const out = join(work.dir, `hf-${Date.now()}.json`);
  const args = ["hyperfine", "--warmup", "1", "--runs", String(RUNS), "--export-json", out, "--style", "none"];
  for (const c of ok) args.push("--prepare", c.prepare, "-n", c.tool, c.cmd);
  const r = await sh(args);
  if (r.code !== 0) {
    notes.push(`hyperfine failed for ${what}: ${r.stderr.trim().split("\n").pop()}`);
    return [];
  }
  const json = JSON.parse(readFileSync(out, "utf8")) as { results: Array<{ command: string; median: number; mean: number; stddev: number }> };
  return json.results.map((x) => ({ what, tool: x.command, median: x.median, mean: x.mean, stddev: x.stddev ?? 0 }));
}

function userIds(): { uid: number; gid: number } | null {
  const id = (flag: string) => spawnSync(["id", flag, USER], { stdout: "pipe", stderr: "pipe" });
  if (id("-u").exitCode !== 0) return null;
  return { uid: Number(id("-u").stdout.toString()), gid: Number(id("-g").stdout.toString()) };
}

const rows: Row[] = [];
let sizes = "";
let uncompressed = 0;

try {
  if (process.getuid?.() !== 0) throw new Error("run it as root (nsrun keeps the layers' owners as root, and the rootless rows run as nsrun-test)");
  for (const tool of ["hyperfine", "skopeo", "umoci", "docker-registry"]) if (!has(tool)) notes.push(`${tool} is not installed (apt-get install ${tool})`);
  if (!has("hyperfine")) throw new Error("hyperfine is needed to measure");
  const dist = join(REPO, "dist/nsrun");
  if (!existsSync(dist) && spawnSync(["bun", "run", "build"], { cwd: REPO, stdout: "inherit", stderr: "inherit" }).exitCode !== 0) throw new Error("bun run build failed");
  const bin = join(work.dir, "nsrun"); // a copy the ordinary user can reach
  copyFileSync(dist, bin);
  chmodSync(bin, 0o755);

  const ls = layers();
  uncompressed = ls.reduce((n, l) => n + l.length, 0);
  const oci = join(work.dir, "oci");
  writeOciLayout(oci, ls, { tag: "bench", compression: "gzip" });
  const packed = readdirSync(join(oci, "blobs/sha256")).reduce((n, f) => n + statSync(join(oci, "blobs/sha256", f)).size, 0);
  sizes = `${ls.length} layers, ${(uncompressed / MB).toFixed(1)} MB uncompressed, ${(packed / MB).toFixed(1)} MB as gzip blobs; ${RUNS} runs each after 1 warm-up, as root unless marked`;
  const at = (name: string) => join(work.dir, name);
  const q = (s: string) => `'${s}'`;
  const nsrun = (store: string, args: string) => `env NSRUN_STORE=${q(store)} NSRUN_PLAIN_PROGRESS=1 ${q(bin)} image ${args} >/dev/null 2>&1`;

  // Import: the OCI layout on disk -> an unpacked tree.
  const importRows: Array<{ tool: string; prepare: string; cmd: string }> = [
    { tool: "nsrun image import", prepare: `rm -rf ${q(at("store"))}`, cmd: nsrun(at("store"), `import ${q(`${oci}:bench`)} --name bench`) },
    {
      tool: "skopeo copy oci: + umoci unpack --rootless",
      prepare: `rm -rf ${q(at("copy"))} ${q(at("bundle"))}`,
      cmd: `skopeo --insecure-policy copy --quiet oci:${q(oci)}:bench oci:${q(at("copy"))}:bench && umoci unpack --rootless --image ${q(at("copy"))}:bench ${q(at("bundle"))} >/dev/null`,
    },
    { tool: "umoci unpack --rootless (alone)", prepare: `rm -rf ${q(at("bundle"))}`, cmd: `umoci unpack --rootless --image ${q(oci)}:bench ${q(at("bundle"))} >/dev/null` },
    { tool: "umoci unpack (owners kept)", prepare: `rm -rf ${q(at("bundle"))}`, cmd: `umoci unpack --image ${q(oci)}:bench ${q(at("bundle"))} >/dev/null` },
  ];
  // Rootless: nsrun-test, whose subordinate ids give the layers' owners (a tape in a user namespace).
  const u = userIds();
  if (u) {
    const as = `setpriv --reuid=${u.uid} --regid=${u.gid} --clear-groups`;
    const home = at("user");
    mkdirSync(home);
    chownSync(home, u.uid, u.gid);
    const fresh = (dir: string) => `rm -rf ${q(dir)} && mkdir ${q(dir)} && chown ${u.uid}:${u.gid} ${q(dir)}`;
    importRows.push(
      { tool: `nsrun image import (rootless, ${USER})`, prepare: fresh(join(home, "store")), cmd: `${as} env HOME=${q(home)} ${nsrun(join(home, "store"), `import ${q(`${oci}:bench`)} --name bench`)}` },
      { tool: `umoci unpack --rootless (alone; rootless, ${USER})`, prepare: fresh(join(home, "b")), cmd: `${as} env HOME=${q(home)} umoci unpack --rootless --image ${q(oci)}:bench ${q(join(home, "b", "bundle"))} >/dev/null` },
    );
  } else notes.push(`no user ${USER}: no rootless rows (the tests make it: bun test test/image-owners.test.ts)`);
  rows.push(...(await hyperfine("import an OCI layout", importRows)));

  // Pull: the registry on 127.0.0.1 -> an unpacked tree.
  if (has("docker-registry") && has("skopeo")) {
    mkdirSync(at("registry"));
    const registry = await startDockerRegistry(at("registry"));
    try {
      const ref = `${registry.host}/bench/image:bench`;
      skopeoPush(oci, "bench", ref);
      rows.push(
        ...(await hyperfine("pull from 127.0.0.1", [
          { tool: "nsrun image pull", prepare: `rm -rf ${q(at("store"))}`, cmd: nsrun(at("store"), `pull ${ref} --name pulled`) },
          {
            tool: "skopeo copy docker:// + umoci unpack --rootless",
            prepare: `rm -rf ${q(at("copy"))} ${q(at("bundle"))}`,
            cmd: `skopeo --insecure-policy copy --quiet --src-tls-verify=false docker://${ref} oci:${q(at("copy"))}:bench && umoci unpack --rootless --image ${q(at("copy"))}:bench ${q(at("bundle"))} >/dev/null`,
          },
          { tool: "skopeo copy docker:// (download only)", prepare: `rm -rf ${q(at("copy"))}`, cmd: `skopeo --insecure-policy copy --quiet --src-tls-verify=false docker://${ref} oci:${q(at("copy"))}:bench` },
        ])),
      );
    } finally {
      await registry.stop();
    }
  } else notes.push("docker-registry or skopeo is not installed: no pull figures");
} catch (e) {
  notes.push((e as Error).message);
} finally {
  rmSync(work.dir, { recursive: true, force: true });
}

const cpu = readFileSync("/proc/cpuinfo", "utf8").match(/model name\s*:\s*(.*)/)?.[1] ?? "unknown CPU";
const fsType = spawnSync(["findmnt", "-n", "-o", "FSTYPE", "-T", process.env.BENCH_DIR ?? tmpdir()], { stdout: "pipe" }).stdout.toString().trim().split("\n")[0] || "unknown";
console.log(`\n## Image import and pull\n\n${sizes}. ${cpu}, ${navigator.hardwareConcurrency} CPUs, Linux ${spawnSync(["uname", "-r"], { stdout: "pipe" }).stdout.toString().trim()}, files on ${fsType}.\n`);
console.log("| what | tool | median | mean ± σ | MB/s |\n| --- | --- | ---: | ---: | ---: |");
for (const r of rows) console.log(`| ${r.what} | ${r.tool} | ${r.median.toFixed(2)} s | ${r.mean.toFixed(2)} ± ${r.stddev.toFixed(2)} s | ${(uncompressed / MB / r.median).toFixed(1)} |`);
for (const n of notes) console.log(`\nnote: ${n}`);
