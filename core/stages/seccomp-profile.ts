// Reads a seccomp profile in the OCI runtime spec / docker format (linux.seccomp, or docker's
// default.json) into a Profile. Rules for other architectures, or that docker would include only
// for capabilities the box does not have, are skipped as docker skips them.
import { ERRNO } from "../../ffi/errno";
import { syscallTable } from "../../ffi/syscalls";
import type { Action, ArgCondition, CmpOp, Profile, Rule } from "./seccomp";
import { NsrunError } from "../../ffi/error";

const ACTIONS: Record<string, (errno: number) => Action> = {
  SCMP_ACT_ALLOW: () => ({ kind: "allow" }),
  SCMP_ACT_ERRNO: (errno) => ({ kind: "errno", errno }),
  SCMP_ACT_KILL: () => ({ kind: "kill_thread" }),
  SCMP_ACT_KILL_THREAD: () => ({ kind: "kill_thread" }),
  SCMP_ACT_KILL_PROCESS: () => ({ kind: "kill_process" }),
  SCMP_ACT_TRAP: () => ({ kind: "trap" }),
  SCMP_ACT_LOG: () => ({ kind: "log" }),
};
const OPS: Record<string, CmpOp> = {
  SCMP_CMP_EQ: "EQ",
  SCMP_CMP_NE: "NE",
  SCMP_CMP_LT: "LT",
  SCMP_CMP_LE: "LE",
  SCMP_CMP_GT: "GT",
  SCMP_CMP_GE: "GE",
  SCMP_CMP_MASKED_EQ: "MASKED_EQ",
};
const THIS_ARCH = ["SCMP_ARCH_X86_64", "amd64", "x86_64"];

/** A problem in the profile: `where` is the JSON path (`syscalls[3].names[0]`). */
export class ParseProfileError extends NsrunError {
  constructor(
    readonly where: string,
    problem: string,
  ) {
    super(`${where ? `${where}: ` : ""}${problem}`);
  }
}

type Json = Record<string, unknown>;

function action(name: unknown, errnoRet: unknown, where: string): Action {
  const make = typeof name === "string" ? ACTIONS[name] : undefined;
  if (!make) throw new ParseProfileError(where, `unknown action ${JSON.stringify(name)} (expected one of ${Object.keys(ACTIONS).join(", ")})`);
  if (errnoRet !== undefined && (typeof errnoRet !== "number" || !Number.isInteger(errnoRet) || errnoRet < 0 || errnoRet > 4095))
    throw new ParseProfileError(where, `errnoRet must be a whole number 0-4095, got ${JSON.stringify(errnoRet)}`);
  return make((errnoRet as number | undefined) ?? ERRNO.EPERM);
}

function toBig(v: unknown, where: string): bigint {
  // JSON numbers above 2^53 have already lost precision (and 2^64-1 became 2^64): refuse them.
  if (typeof v === "number" && Number.isSafeInteger(v) && v >= 0) return BigInt(v);
  if (typeof v === "bigint" && v >= 0n) return v;
  throw new ParseProfileError(where, `expected a whole number from 0 to 2^53-1 (larger ones lose precision in JSON), got ${JSON.stringify(v)}`);
}

/** Whether docker would apply a rule with these includes/excludes to a box with `caps`. */
function applies(rule: Json, caps: string[], where: string): boolean {
  const inc = (rule.includes ?? {}) as Json;
  const exc = (rule.excludes ?? {}) as Json;
  const list = (v: unknown, w: string): string[] => {
    if (v === undefined) return [];
    if (!Array.isArray(v) || !v.every((x) => typeof x === "string")) throw new ParseProfileError(w, "expected a list of strings");
    return v;
  };
  const incArches = list(inc.arches, `${where}.includes.arches`);
  const excArches = list(exc.arches, `${where}.excludes.arches`);
  const incCaps = list(inc.caps, `${where}.includes.caps`).map((c) => c.toUpperCase().replace(/^CAP_/, ""));
  const excCaps = list(exc.caps, `${where}.excludes.caps`).map((c) => c.toUpperCase().replace(/^CAP_/, ""));
  if (incArches.length && !incArches.some((a) => THIS_ARCH.includes(a))) return false;
  if (excArches.some((a) => THIS_ARCH.includes(a))) return false;
  if (!incCaps.every((c) => caps.includes(c))) return false;
  if (excCaps.some((c) => caps.includes(c))) return false;
  return true;
}

/** Parse profile text; `caps` are the box's capability names (without CAP_), for includes/excludes. */
export function parseProfile(text: string, caps: string[]): Profile {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ParseProfileError("", `not valid JSON: ${(e as Error).message}`);
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw new ParseProfileError("", "expected a JSON object");
  const p = raw as Json;
  const arches = p.architectures;
  if (Array.isArray(arches) && arches.length && !arches.some((a) => THIS_ARCH.includes(String(a))))
    throw new ParseProfileError("architectures", `no entry for this machine (x86_64): ${JSON.stringify(arches)}`);
  const defaultAction = action(p.defaultAction, p.defaultErrnoRet, "defaultAction");
  const list = p.syscalls ?? [];
  if (!Array.isArray(list)) throw new ParseProfileError("syscalls", "expected a list");
  const rules: Rule[] = [];
  list.forEach((entry, i) => {
    const where = `syscalls[${i}]`;
    if (typeof entry !== "object" || entry === null) throw new ParseProfileError(where, "expected an object");
    const r = entry as Json;
    if (!applies(r, caps, where)) return;
    const names = r.names ?? (r.name !== undefined ? [r.name] : undefined);
    if (!Array.isArray(names) || !names.length) throw new ParseProfileError(`${where}.names`, "expected a non-empty list of syscall names");
    const nrs = names.map((n, j) => {
      const nr = typeof n === "string" ? syscallTable("x64")[n] : undefined;
      if (nr === undefined) throw new ParseProfileError(`${where}.names[${j}]`, `unknown syscall ${JSON.stringify(n)}`);
      return nr;
    });
    const args: ArgCondition[] = ((r.args as unknown[] | undefined) ?? []).map((a, j) => {
      const aw = `${where}.args[${j}]`;
      const arg = (a ?? {}) as Json;
      const index = arg.index;
      if (typeof index !== "number" || !Number.isInteger(index) || index < 0 || index > 5) throw new ParseProfileError(`${aw}.index`, "expected 0-5");
      const op = OPS[String(arg.op)];
      if (!op) throw new ParseProfileError(`${aw}.op`, `unknown comparison ${JSON.stringify(arg.op)}`);
      return { index, op, value: toBig(arg.value ?? 0, `${aw}.value`), valueTwo: toBig(arg.valueTwo ?? 0, `${aw}.valueTwo`) };
    });
    rules.push({ nrs, action: action(r.action, r.errnoRet, `${where}.action`), args });
  });
  return { defaultAction, rules };
}
