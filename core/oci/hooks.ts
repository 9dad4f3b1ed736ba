// runtime-spec hooks: each is a host program, run in nsrun's own namespaces with the container's
// state JSON on its standard input. A failing prestart/createRuntime hook fails `create`; a failing
// poststart/poststop hook is a warning (the spec: the runtime logs it and carries on).
import type { SpecHook } from "./spec";

export class HookError extends Error {}

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
