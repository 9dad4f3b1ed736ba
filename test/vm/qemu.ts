// One boot of the test VM: qemu's microvm machine in plain TCG emulation (this project's /dev/kvm
// cannot run a stock kernel), no network, no disk. The host's / is shared read-only over 9p
// (init.sh puts a tmpfs overlay on it) and the run folder read-write. The guest's output comes back
// on a virtio console that qemu writes to its own stdout, which is ours; the kernel's own console
// goes to a log file in the run folder, shown only when the VM fails.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Kernel } from "./kernel";

export interface Boot {
  /** null when the guest finished its plan; else what went wrong. */
  failure: string | null;
  seconds: number;
}

/**
 * Under TCG the guest's TSC is the host's. Telling the kernel its rate means it never calibrates
 * against the PIT, which under load sometimes never finished and hung the boot.
 */
function tscKhz(): number | null {
  const mhz = readFileSync("/proc/cpuinfo", "utf8").match(/^cpu MHz\s*:\s*([\d.]+)/m)?.[1];
  return mhz ? Math.round(Number(mhz) * 1000) : null;
}

/** qemu's option syntax doubles a comma inside a value. */
const q = (s: string) => s.replaceAll(",", ",,");

function share(tag: string, path: string, readonly: boolean): string[] {
  // passthrough: the guest sees the host's owners and modes (qemu runs as root); remap keeps inode
  // numbers unique across the host's mounts below /.
  const fsdev = `local,id=${tag},path=${q(path)},security_model=passthrough,multidevs=remap${readonly ? ",readonly=on" : ""}`;
  return ["-fsdev", fsdev, "-device", `virtio-9p-device,fsdev=${tag},mount_tag=${tag}`];
}

export async function boot(qemu: string, kernel: Kernel, runDir: string, opts: { memory: string; timeoutSeconds: number }): Promise<Boot> {
  const khz = tscKhz();
  const append = [
    "console=ttyS0",
    "quiet",
    "loglevel=1",
    "panic=-1", // a guest panic resets at once, and -no-reboot turns that into qemu's exit
    "mitigations=off", // a throw-away guest: speed over side-channel hardening
    ...(khz ? [`tsc_early_khz=${khz}`, "tsc=reliable"] : []),
  ].join(" ");
  const argv = [
    qemu,
    ...["-M", "microvm,x-option-roms=off", "-accel", "tcg,thread=multi", "-cpu", "max"],
    ...["-m", opts.memory, "-smp", String(kernel.spec.cpus)],
    ...["-nodefaults", "-no-user-config", "-display", "none", "-monitor", "none", "-no-reboot", "-nic", "none"],
    ...["-kernel", kernel.image, "-initrd", kernel.initrd, "-append", append],
    ...["-serial", `file:${join(runDir, "console.log")}`],
    ...share("hostroot", "/", true),
    ...share("ctl", runDir, false),
    ...["-device", "virtio-serial-device", "-chardev", "stdio,id=out,signal=off", "-device", "virtconsole,chardev=out"],
  ];
  const started = performance.now();
  const vm = Bun.spawn(argv, { stdin: "ignore", stdout: "inherit", stderr: "pipe" });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    vm.kill("SIGKILL");
  }, opts.timeoutSeconds * 1000);
  // A signal to test:vm alone (a CI job's timeout, say) would leave qemu running: take it down too.
  const stop = (signal: NodeJS.Signals) => {
    vm.kill("SIGKILL");
    process.exit(signal === "SIGINT" ? 130 : 143);
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  const [code, qemuErr] = await Promise.all([vm.exited, new Response(vm.stderr).text()]);
  clearTimeout(timer);
  process.off("SIGINT", stop);
  process.off("SIGTERM", stop);
  const seconds = Math.round((performance.now() - started) / 1000);
  if (existsSync(join(runDir, "finished"))) return { failure: null, seconds };
  const log = join(runDir, "console.log");
  const tail = existsSync(log) ? readFileSync(log, "utf8").trim().split("\n").slice(-15).join("\n") : "";
  const why = timedOut ? `no result within ${opts.timeoutSeconds} s (NSRUN_VM_TIMEOUT); the VM was stopped` : `the VM stopped before the tests finished (qemu exit ${code})`;
  return { failure: [why, qemuErr.trim(), tail && `kernel console, last lines:\n${tail}`].filter(Boolean).join("\n"), seconds };
}
