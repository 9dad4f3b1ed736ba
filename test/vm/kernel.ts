// The guest kernel: a Debian kernel package, fetched with `apt-get download` and unpacked with
// `dpkg-deb -x` into the cache (nothing is installed on the host). From the package only three
// things are kept: the kernel as an uncompressed ELF (qemu's microvm boots it directly through its
// PVH entry, which saves the in-guest decompression), the few modules the guest needs before its
// root exists, and the kernel's config. Then a busybox initramfs is built around those modules.
import { spawnSync } from "bun";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";

export interface KernelSpec {
  /** Short name for the summary: "6.1". */
  label: string;
  /** Matches the package names of this series; the newest one apt knows is taken. */
  packages: RegExp;
  cpus: number;
}

export interface Kernel {
  spec: KernelSpec;
  /** The package, e.g. linux-image-6.1.0-57-amd64. */
  pkg: string;
  /** uname -r inside the guest. */
  release: string;
  image: string;
  initrd: string;
}

/**
 * Modules the initramfs loads, in this order (with their dependencies first): virtio-mmio is
 * microvm's bus, virtio_console carries the guest's output, 9p and overlay make the root, and
 * zram gives the memory_swap tests a swap device in a guest with no disk.
 */
const MODULES = ["virtio_mmio", "virtio_console", "9pnet_virtio", "9p", "overlay", "zram"];

const INIT = join(import.meta.dir, "init.sh");
const BUSYBOX = "/bin/busybox";

function sh(argv: string[], opts: { cwd?: string; stdin?: Uint8Array } = {}) {
  const r = spawnSync(argv, { cwd: opts.cwd, stdin: opts.stdin, stdout: "pipe", stderr: "pipe" });
  return { ok: r.exitCode === 0, out: r.stdout, text: r.stdout.toString(), err: r.stderr.toString().trim() };
}

/** Numeric parts of a package name compared in order: 6.1.0-57 < 6.1.0-101. */
function newer(a: string, b: string): number {
  const na = a.match(/\d+/g)?.map(Number) ?? [];
  const nb = b.match(/\d+/g)?.map(Number) ?? [];
  for (let i = 0; i < Math.max(na.length, nb.length); i++) if ((na[i] ?? -1) !== (nb[i] ?? -1)) return (na[i] ?? -1) - (nb[i] ?? -1);
  return 0;
}

/** The newest package of the series apt knows, else the newest already in the cache (offline). */
function choosePackage(spec: KernelSpec, cache: string): string | null {
  const search = sh(["apt-cache", "search", "--names-only", spec.packages.source]);
  const known = search.ok ? search.text.split("\n").map((l) => l.split(" ")[0]).filter((p) => spec.packages.test(p)) : [];
  const cached = existsSync(cache) ? readdirSync(cache).filter((p) => spec.packages.test(p) && existsSync(join(cache, p, "ready"))) : [];
  const pick = (names: string[]) => names.sort(newer).at(-1) ?? null;
  return pick(known) ?? pick(cached);
}

/** The kernel of this series, ready to boot, or why it cannot be had. */
export function prepareKernel(spec: KernelSpec, cacheDir: string): Kernel | { skipped: string } {
  const cache = join(cacheDir, "kernels");
  mkdirSync(cache, { recursive: true });
  const pkg = choosePackage(spec, cache);
  if (!pkg) return { skipped: `no package matching ${spec.packages.source} (apt-cache search found none; run apt-get update?)` };
  const dir = join(cache, pkg);
  if (!existsSync(join(dir, "ready"))) {
    const why = unpackKernel(pkg, dir);
    if (why) return { skipped: why };
  }
  const release = readFileSync(join(dir, "release"), "utf8").trim();
  return { spec, pkg, release, image: join(dir, "vmlinux"), initrd: buildInitramfs(dir) };
}

/** Download and unpack the package, keep what the VM needs; returns why not, or null. */
function unpackKernel(pkg: string, dir: string): string | null {
  const tmp = mkdtempSync(`${dir}.tmp-`);
  try {
    // apt-get download writes into the current folder; as root it warns that _apt cannot reach it.
    const dl = sh(["apt-get", "download", pkg], { cwd: tmp });
    const deb = readdirSync(tmp).find((f) => f.endsWith(".deb"));
    if (!dl.ok || !deb) return `apt-get download ${pkg} failed: ${dl.err.split("\n").filter((l) => !l.includes("unsandboxed")).at(-1) ?? "no .deb"}`;
    const tree = join(tmp, "tree");
    const x = sh(["dpkg-deb", "-x", join(tmp, deb), tree]);
    if (!x.ok) return `dpkg-deb -x ${deb} failed: ${x.err}`;
    const release = readdirSync(join(tree, "lib/modules"))[0];
    const keep = join(tmp, "keep");
    mkdirSync(join(keep, "modules"), { recursive: true });
    writeFileSync(join(keep, "vmlinux"), uncompressedKernel(join(tree, `boot/vmlinuz-${release}`)));
    copyFileSync(join(tree, `boot/config-${release}`), join(keep, "config"));
    const order = moduleLoadOrder(join(tree, "lib/modules", release), MODULES);
    if (typeof order === "string") return `${pkg} cannot run the guest: ${order}`;
    order.forEach((file, i) => writeFileSync(join(keep, "modules", `${String(i).padStart(2, "0")}-${moduleName(file)}.ko`), readModule(file)));
    writeFileSync(join(keep, "release"), `${release}\n`);
    writeFileSync(join(keep, "ready"), `${pkg}\n`);
    rmSync(dir, { recursive: true, force: true });
    renameSync(keep, dir);
    return null;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/**
 * vmlinuz is a bzImage: a decompressor followed by the compressed ELF kernel. Find the payload by
 * its compression's magic bytes and inflate it (the tools stop with an error at the trailing data,
 * which is expected). A bzImage also boots, only slower, so it is the fallback.
 */
function uncompressedKernel(vmlinuz: string): Uint8Array {
  const z = readFileSync(vmlinuz);
  const formats: Array<[string[], number[]]> = [
    [["xz", "-dc"], [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]],
    [["zstd", "-dcq"], [0x28, 0xb5, 0x2f, 0xfd]],
    [["gzip", "-dc"], [0x1f, 0x8b, 0x08]],
  ];
  for (const [tool, magic] of formats) {
    for (let at = z.indexOf(Buffer.from(magic)), tries = 0; at >= 0 && tries < 3; at = z.indexOf(Buffer.from(magic), at + 1), tries++) {
      const out = sh(tool, { stdin: z.subarray(at) }).out;
      if (out.length > 4 && out[0] === 0x7f && out.subarray(1, 4).toString() === "ELF") return out;
    }
  }
  return z;
}

const moduleName = (file: string) => basename(file).replace(/\.ko(\.xz|\.zst|\.gz)?$/, "").replaceAll("-", "_");

/** Decompressed module contents: the initramfs's busybox insmod reads plain .ko files only. */
function readModule(file: string): Uint8Array {
  if (file.endsWith(".ko")) return readFileSync(file);
  const tool = file.endsWith(".xz") ? ["xz", "-dc", file] : file.endsWith(".zst") ? ["zstd", "-dcq", file] : ["gzip", "-dc", file];
  const r = sh(tool);
  if (!r.ok) throw new Error(`${tool.join(" ")}: ${r.err}`);
  return r.out;
}

/** The module files to load, each after the modules it depends on (its .modinfo `depends=`); or which is missing. */
function moduleLoadOrder(modulesDir: string, wanted: string[]): string[] | string {
  const files = new Map<string, string>();
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(d, e.name));
      else if (/\.ko(\.xz|\.zst|\.gz)?$/.test(e.name)) files.set(moduleName(e.name), join(d, e.name));
    }
  };
  walk(join(modulesDir, "kernel"));
  const builtin = new Set(readFileSync(join(modulesDir, "modules.builtin"), "utf8").split("\n").filter(Boolean).map(moduleName));
  const order: string[] = [];
  const missing: string[] = [];
  const visit = (name: string) => {
    const file = files.get(name);
    if (!file) {
      if (!builtin.has(name)) missing.push(name);
      return;
    }
    if (order.includes(file)) return;
    const deps = Buffer.from(readModule(file)).toString("latin1").match(/\0depends=([^\0]*)\0/)?.[1] ?? "";
    for (const dep of deps.split(",").filter(Boolean)) visit(dep.replaceAll("-", "_"));
    order.push(file);
  };
  for (const m of wanted) visit(m);
  return missing.length ? `it has no ${missing.join(", ")}, neither as a module nor built in` : order;
}

/** A gzipped newc cpio: busybox, init.sh as /init, the modules. Rebuilt when init.sh changes. */
function buildInitramfs(dir: string): string {
  const init = readFileSync(INIT);
  const stamp = new Bun.CryptoHasher("sha256").update(init).update(readFileSync(BUSYBOX)).digest("hex").slice(0, 12);
  const out = join(dir, `initramfs-${stamp}.cpio.gz`);
  if (existsSync(out)) return out;
  for (const old of readdirSync(dir).filter((f) => f.startsWith("initramfs-"))) rmSync(join(dir, old), { recursive: true, force: true });
  const root = mkdtempSync(join(dir, "initramfs-"));
  try {
    for (const d of ["bin", "dev", "proc", "sys", "lower", "upper", "newroot", "ctl", "lib/modules"]) mkdirSync(join(root, d), { recursive: true });
    copyFileSync(BUSYBOX, join(root, "bin/busybox"));
    writeFileSync(join(root, "init"), init, { mode: 0o755 });
    for (const m of readdirSync(join(dir, "modules"))) copyFileSync(join(dir, "modules", m), join(root, "lib/modules", m));
    const list = sh(["find", "."], { cwd: root });
    const cpio = sh([BUSYBOX, "cpio", "-o", "-H", "newc"], { cwd: root, stdin: list.out });
    if (!cpio.ok) throw new Error(`cpio: ${cpio.err}`);
    const gz = sh(["gzip", "-1"], { stdin: cpio.out });
    writeFileSync(`${out}.tmp`, gz.out);
    renameSync(`${out}.tmp`, out);
    return out;
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}
