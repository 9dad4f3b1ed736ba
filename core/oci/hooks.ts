// runtime-spec hooks: prestart, createRuntime, poststart and poststop are host programs, run here in
// nsrun's own namespaces with the container's state JSON on their standard input; createContainer
// and startContainer run inside the container, forked by its tape (core/oci/emit.ts), and only their
// stdin is filled here. A failing prestart/createRuntime/createContainer hook fails `create`, a
// failing startContainer hook `start`; a failing poststart/poststop hook is a warning (the spec:
// the runtime logs it and carries on).
import { readFileSync } from "node:fs";
import { close, setPipeSize, writeAll } from "../../ffi/io";
import type { SpecHook } from "./spec";
import { NsrunError } from "../../ffi/error";

export class HookError extends NsrunError {}

export async function runHooks(kind: string, hooks: SpecHook[], state: object): Promise<void> {
  for (const [i, h] of hooks.entries()) {
    const where = `hooks.${kind}[${i}] ${JSON.stringify(h.path)}`;
    let child: ReturnType<typeof Bun.spawn>;
    try {
      child = Bun.spawn([h.path, ...(h.args ?? []).slice(1)], {
        argv0: h.args?.[0] ?? h.path,
        env: Object.fromEntries((h.env ?? []).map((e) => [e.slice(0, e.indexOf("=")), e.slice(e.indexOf("=") + 1)])),
        stdin: new TextEncoder().encode(JSON.stringify(state)),
        stdout: "inherit",
        stderr: "inherit",
        timeout: h.timeout ? h.timeout * 1000 : undefined,
        killSignal: "SIGKILL",
      });
    } catch (e) {
      throw new HookError(`${where}: cannot start it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
    const code = await child.exited;
    if (child.signalCode) throw new HookError(`${where}: ${h.timeout && child.signalCode === "SIGKILL" ? `timed out after ${h.timeout}s` : `killed by ${child.signalCode}`}`);
    if (code !== 0) throw new HookError(`${where}: exited with status ${code}`);
  }
}

/** poststart and poststop: a failure is reported and the command goes on. */
export async function runHooksWarning(kind: string, hooks: SpecHook[], state: object, warn: (line: string) => void): Promise<void> {
  try {
    await runHooks(kind, hooks, state);
  } catch (e) {
    warn(`warning: ${(e as Error).message}`);
  }
}

/**
 * A createContainer or startContainer hook runs in the container (core/oci/emit.ts); its stdin is a
 * pipe whose write end nsrun fills with the state and closes. The pipe is made big enough first,
 * since nobody reads it until the hook runs.
 */
export function fillHookStdin(fd: number, state: object): void {
  const bytes = new TextEncoder().encode(JSON.stringify(state));
  if (bytes.length > 65536 && !setPipeSize(fd, bytes.length)) {
    close(fd);
    throw new HookError(`the container's state is ${bytes.length} bytes, more than a pipe to a hook's stdin may hold (/proc/sys/fs/pipe-max-size)`);
  }
  writeAll(fd, bytes);
  close(fd);
}

/** The container's PID as a hook inside it sees it (runtime-spec state.md): the last NSpid of /proc/PID/status. */
export function pidInContainer(pid: number): number {
  try {
    const line = readFileSync(`/proc/${pid}/status`, "utf8").match(/^NSpid:\s*(.*)$/m)?.[1];
    const last = Number(line?.trim().split(/\s+/).pop());
    return Number.isInteger(last) && last > 0 ? last : pid;
  } catch {
    return pid;
  }
}
