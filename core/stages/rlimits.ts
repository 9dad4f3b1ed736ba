// Stage: rlimits (setrlimit(2)). Set before the switch of user: raising a hard limit needs
// CAP_SYS_RESOURCE. An unset limit is inherited, except core, which is 0 unless configured, so a
// crashing program in a box leaves no core file (which could hold its secrets) behind.
import { RLIMIT } from "../../ffi/flags";
import { setrlimit } from "../tape/calls";
import type { Tape } from "../tape/tape";

export type RlimitName = keyof typeof RLIMIT;
type Value = number | "unlimited";
export type RlimitConfig = Value | [Value, Value];

export interface RlimitPlan {
  name: RlimitName;
  resource: number;
  /** -1 is unlimited (RLIM_INFINITY). */
  soft: number;
  hard: number;
}

const num = (v: Value) => (v === "unlimited" ? -1 : v);

/** Returns the problem with a [soft, hard] pair, or null. */
export function rlimitProblem(c: RlimitConfig): string | null {
  if (!Array.isArray(c)) return null;
  const [soft, hard] = c.map(num);
  if (hard !== -1 && (soft === -1 || soft > hard)) return "the soft limit is above the hard one";
  return null;
}

export function planRlimits(limits: Partial<Record<RlimitName, RlimitConfig>>): RlimitPlan[] {
  const out: RlimitPlan[] = [];
  for (const name of Object.keys(RLIMIT) as RlimitName[]) {
    const c = limits[name] ?? (name === "core" ? 0 : undefined);
    if (c === undefined) continue;
    const [soft, hard] = Array.isArray(c) ? c.map(num) : [num(c), num(c)];
    out.push({ name, resource: RLIMIT[name], soft, hard });
  }
  return out;
}

/** Tape: before the switch of user, since raising a hard limit needs CAP_SYS_RESOURCE. */
export function emitRlimits(t: Tape, plan: RlimitPlan[]): void {
  for (const r of plan) {
    t.doing(`set the ${r.name} limit`, {
      EPERM: "raising a hard limit above nsrun's own needs CAP_SYS_RESOURCE in the initial user namespace; a rootless box can only lower limits",
    });
    setrlimit(t, r.resource, r.name, r.soft, r.hard);
  }
}
