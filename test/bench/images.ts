// Image benchmark: import and pull throughput of nsrun against skopeo + umoci, on the same image.
// Not a test: it measures and prints a markdown table; it never fails because a machine is slow.
//
//   bun test/bench/images.ts            (as root; BENCH_RUNS=3 by default)
//
// The image: a busybox layer and a layer of many small files from the host (Python's standard
// library, Perl's, /usr/share/doc), gzip-compressed, as an OCI layout. Every run unpacks into a fresh
// folder; every pull starts from an empty store, so blobs are downloaded each time. The registry is
// Debian's docker-registry on 127.0.0.1. Needs: busybox-static, skopeo, umoci, docker-registry.
import { spawnSync } from "bun";
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { busyboxLayer, compress, writeOciLayout } from "../../fixtures/images/build";
import { has, skopeoPush, startDockerRegistry } from "../../fixtures/images/registries";
import { workDir } from "../../fixtures/images/test-support";

const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const ENTRY = join(import.meta.dir, "../../fixtures/images/nsrun-image.ts");
const notes: string[] = [];
const work = workDir("bench");

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1];
}

/** Wall time of a command (ms), or null when it fails (noted). `before` runs untimed first. */
function time(name: string, cmd: string[], before?: () => void): number | null {
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    before?.();
    const t0 = performance.now();
    const r = spawnSync(cmd, { stdout: "pipe", stderr: "pipe", env: { ...process.env, NSRUN_PLAIN_PROGRESS: "1" } });
    const ms = performance.now() - t0;
    if (r.exitCode !== 0) {
      notes.push(`${name} failed: ${r.stderr.toString().trim().split("\n").pop()}`);
      return null;
    }
    times.push(ms);
  }
  return median(times);
}

function hostLayer(): Buffer {
  const dirs = ["usr/lib/python3.11", "usr/share/perl", "usr/share/doc"].filter((d) => existsSync(`/${d}`));
  const r = spawnSync(["tar", "-C", "/", "--format=posix", "-cf", "-", ...dirs], { stdout: "pipe", stderr: "pipe" });
  return Buffer.from(r.stdout);
}

const rows: Array<[string, string, string, string]> = [];
const mb = (bytes: number) => bytes / 1024 / 1024;

try {
  if (process.getuid?.() !== 0) throw new Error("run it as root (umoci unpack and the owners in the layers need it)");
  const layers = [busyboxLayer(), hostLayer()];
  const size = layers.reduce((n, l) => n + l.length, 0);
  const oci = join(work.dir, "oci");
  writeOciLayout(oci, layers, { tag: "bench", compression: "gzip" });
  const tarball = join(work.dir, "rootfs.tar.gz");
  writeFileSync(tarball, compress(layers[1], "gzip"));
  const packed = spawnSync(["du", "-sb", join(oci, "blobs")], { stdout: "pipe" }).stdout.toString().split("\t")[0];
  console.log(`image: 2 layers, ${mb(size).toFixed(1)} MB uncompressed, ${mb(Number(packed)).toFixed(1)} MB gzip; ${RUNS} runs each, median; MB/s = uncompressed MB / wall time`);

  const row = (what: string, tool: string, ms: number | null, bytes: number) => rows.push([what, tool, ms === null ? "failed" : `${(ms / 1000).toFixed(2)} s`, ms === null ? "" : `${(mb(bytes) / (ms / 1000)).toFixed(1)}`]);
  const fresh = (p: string) => () => rmSync(p, { recursive: true, force: true });

  // Import: the OCI layout on disk -> an unpacked tree.
  const store = join(work.dir, "store");
  row("import OCI layout", "nsrun image import", time("nsrun import", ["bun", ENTRY, "import", `${oci}:bench`, "--name", "bench"], () => { fresh(store)(); process.env.NSRUN_STORE = store; }), size);
  if (has("umoci")) row("import OCI layout", "umoci unpack", time("umoci unpack", ["umoci", "unpack", "--image", `${oci}:bench`, join(work.dir, "bundle")], fresh(join(work.dir, "bundle"))), size);
  else notes.push("umoci is not installed (apt-get install umoci)");
  row("import rootfs.tar.gz", "nsrun image import", time("nsrun import tarball", ["bun", ENTRY, "import", tarball, "--name", "tarball"], fresh(store)), layers[1].length);
  const tarTarget = join(work.dir, "tar-x");
  row("import rootfs.tar.gz", "GNU tar -xzf", time("tar", ["sh", "-c", `mkdir -p ${tarTarget} && tar -xzf ${tarball} -C ${tarTarget}`], fresh(tarTarget)), layers[1].length);

  // Pull: registry on 127.0.0.1 -> an unpacked tree.
  if (has("docker-registry") && has("skopeo")) {
    mkdirSync(join(work.dir, "registry"));
    const registry = await startDockerRegistry(join(work.dir, "registry"));
    try {
      skopeoPush(oci, "bench", `${registry.host}/bench/image:bench`);
      const ref = `${registry.host}/bench/image:bench`;
      row("pull from 127.0.0.1", "nsrun image pull", time("nsrun pull", ["bun", ENTRY, "pull", ref, "--name", "pulled"], fresh(store)), size);
      const dest = join(work.dir, "skopeo-oci");
      const bundle = join(work.dir, "bundle2");
      const script = `skopeo --insecure-policy copy --quiet --src-tls-verify=false docker://${ref} oci:${dest}:bench && umoci unpack --image ${dest}:bench ${bundle}`;
      if (has("umoci")) row("pull from 127.0.0.1", "skopeo copy + umoci unpack", time("skopeo + umoci", ["sh", "-c", script], () => { fresh(dest)(); fresh(bundle)(); }), size);
      row("pull from 127.0.0.1", "skopeo copy (download only)", time("skopeo copy", ["sh", "-c", script.split(" && ")[0]], fresh(dest)), size);
    } finally {
      await registry.stop();
    }
  } else notes.push("docker-registry or skopeo is not installed: no pull figures");
} catch (e) {
  notes.push((e as Error).message);
} finally {
  work.cleanup();
}

console.log("\n| what | tool | time | MB/s |\n| --- | --- | ---: | ---: |");
for (const r of rows) console.log(`| ${r.join(" | ")} |`);
for (const n of notes) console.log(`\nnote: ${n}`);
