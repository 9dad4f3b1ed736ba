// Results of the guest's `bun test` runs (their JUnit files), counted per kernel and per actor.
import { existsSync, readFileSync } from "node:fs";

export type Actor = "root" | "rootless" | "other";
export interface Case {
  suite: string;
  /** describe blocks and test name, outermost first. */
  name: string;
  actor: Actor;
  status: "pass" | "fail" | "skip";
  message: string;
}

const entities: Record<string, string> = { "&lt;": "<", "&gt;": ">", "&amp;": "&", "&quot;": '"', "&apos;": "'" };
const unescape = (s: string) => s.replace(/&(lt|gt|amp|quot|apos);|&#(\d+);/g, (m, _n, code) => (code ? String.fromCharCode(Number(code)) : entities[m]));
const attr = (attrs: string, key: string) => unescape(attrs.match(new RegExp(`\\b${key}="([^"]*)"`))?.[1] ?? "");

/**
 * Whose boxes a test runs, from its outermost describe block: the host tests name it "a box started
 * by root|user", the VM tests "root: ..." or "rootless: ...". Tests that start no box are "other".
 */
function actorOf(outer: string): Actor {
  if (/rootless|ordinary user|started by user/i.test(outer)) return "rootless";
  if (/\broot\b/i.test(outer)) return "root";
  return "other";
}

/**
 * The test cases of one JUnit file. bun test lists the tests a -t filter left out as skipped;
 * those were never meant to run, so the same filter drops them here.
 */
export function readCases(file: string, suite: string, filter: string | null): Case[] {
  if (!existsSync(file)) return [];
  const xml = readFileSync(file, "utf8");
  const cases: Case[] = [];
  for (const m of xml.matchAll(/<testcase\b([^>]*?)(?:\/>|>([\s\S]*?)<\/testcase>)/g)) {
    const [, attrs, body = ""] = m;
    // classname lists the describe blocks innermost first: "inner > outer".
    const blocks = attr(attrs, "classname").split(" > ").filter(Boolean).reverse();
    const name = [...blocks, attr(attrs, "name")].join(" > ");
    if (filter && !new RegExp(filter).test([...blocks, attr(attrs, "name")].join(" "))) continue;
    const failure = body.match(/<(failure|error)\b[^>]*?message="([^"]*)"/);
    const status = failure || /<(failure|error)\b/.test(body) ? "fail" : /<skipped\b/.test(body) ? "skip" : "pass";
    cases.push({ suite, name, actor: actorOf(blocks[0] ?? ""), status, message: failure ? unescape(failure[2]) : "" });
  }
  return cases;
}

export function tally(cases: Case[], actor: Actor) {
  const mine = cases.filter((c) => c.actor === actor);
  return { pass: mine.filter((c) => c.status === "pass").length, fail: mine.filter((c) => c.status === "fail").length, skip: mine.filter((c) => c.status === "skip").length };
}

/**
 * A failure message in one line: its first line, then "Expected:" and "Received:", or a diff's
 * "+" lines (what came instead), without the diff's own legend.
 */
export function shortMessage(message: string): string {
  const lines = message.split("\n").map((l) => l.trim()).filter(Boolean);
  const received = lines.filter((l) => /^(Expected|Received):|^\+(?! Received {2})/.test(l)).slice(0, 4);
  const short = [lines[0] ?? "", ...received].join(" | ");
  return short.length > 400 ? `${short.slice(0, 400)}...` : short;
}
