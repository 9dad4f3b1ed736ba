// The start record: a command line that started a box before starts it again from the tape cache's
// entry without assembling the config, inspecting the host or planning, when nothing those read has
// changed. It is the fast path of `nsrun run`: cmd/main.ts tries it before parsing the command
// line (the record's existence says the line may have one: cmd/run.ts keeps one only for such a
// line), and what it loads reads no file through node:fs and loads neither the command line's
// parser, the schema nor a planning stage (test/layout.test.ts checks).
//
// A record belongs to one command line: its key is the config cache's (core/host/cachefiles.ts
// commandLineFile: the command line, the cwd, the caller's ids and groups, nsrun's build). It holds
// every input assembly and planning read, with what each gave (core/host/inputs.ts): the config
// cache's reads (config and env files, environment variables, resolved paths), and the host inputs
// inspectHost and the tape cache's key read (core/stages/hostfacts.ts planningInputs: the kernel,
// nsrun's id maps, /etc/subuid and /etc/subgid, the helpers, the rootfs and every bind source by
// identity, what planning read in the rootfs), and the terminal. When each gives the same again,
// assembly would give the same config, inspectHost the same facts and the tape cache's key the same
// key: the box is the one the record names, whose entry is then read under the tape cache's own
// checks. Any input that gives something else, any doubt about a file, means no record: the slow
// path runs and, for a box it may be kept for, writes a new one.
//
// Kept only for a box whose start prints nothing of its own and needs nothing fresh: no cgroup (its
// name is nsrun-PID), no network helper, no generated files, no image, no --report, no debug log,
// and a rootfs and bind sources reached without a symlink.
//
// A record decides what a box runs, as the caller: it lives in the caller's private cache folder
// under the same checks as the tape cache's entries (core/host/cachefiles.ts). A file is
// "start-KEY", a sealed JSON file (cachefiles.ts sealedJson).
import { type Tracer, tracerFor } from "../pipeline";
import { FrozenTape } from "../tape/frozen";
import { commandLineFile, readCacheFile, sealedJson, unsealFor, writeCacheFile } from "./cachefiles";
import { firstChanged, inputName, type Observed } from "./inputs";
import { type Entry, fdsText, loadEntry, storeEntry } from "./tapefile";

/** Bump when the record's layout or what it covers changes. */
const FORMAT = "nsrun-start-record 1";
const WHAT = "cache: start";
/** Records kept (each a kilobyte or two). */
const KEEP = 200;

interface StartRecord {
  format: string;
  key: string;
  /** Every input, with what it gave when the record was made. */
  inputs: Observed[];
  /** The tape cache's entry: its file's name, its full key, and its hash (an entry written since is another). */
  tape: { name: string; key: string; sum: string };
  /** --trace, as the command line's parser read it: the tape was laid out for it. (cmd/main.ts only
   * looks for the word, for its own lines before the record is read.) */
  trace: boolean;
}

/**
 * Start the box from this command line's record when it has one and every input gives what it gave.
 * Never returns then (nsrun becomes the box's supervisor); returns when there is no usable record,
 * having started nothing.
 */
export async function startFromRecord(args: string[], cwd: string, traced: boolean): Promise<void> {
  const trace = tracerFor("host", traced);
  const file = commandLineFile("start", FORMAT, args, cwd);
  if (!file) return;
  const shown = `${file.folder}/${file.name}`;
  const bytes = readCacheFile(file.folder, file.name, trace, WHAT);
  if (bytes === null) return;
  const record = decode(bytes, file.key);
  if (!record) return void trace?.(`${WHAT}: not used: ${JSON.stringify(shown)} is corrupt or truncated`);
  const changed = firstChanged(record.inputs);
  if (changed) return void trace?.(`${WHAT}: miss: ${inputName(changed)} changed`);
  const entry = loadEntry(file.folder, record.tape.name, record.tape.key, trace);
  if (!entry) return void trace?.(`${WHAT}: miss: its tape cache entry is gone or not to be used`);
  if (entry.sum !== record.tape.sum) return void trace?.(`${WHAT}: miss: its tape cache entry was written again since`);
  trace?.(`${WHAT}: hit ${shown}`);
  trace?.(`cache: hit ${file.folder}/${record.tape.name}`);
  const { runPlan } = await import("./runplan");
  await runPlan(entry.plan, {
    trace: record.trace,
    log: { debug: () => {} },
    report: null,
    // The tape embeds the host fds it was compiled for: other fds (a file the caller left open in
    // this process took a number nsrun's own would have had) compile it anew from the plan, and the
    // new tape takes the old one's place, with this record naming it, as the slow path would
    // (core/host/tapecache.ts): the next start from the same line and fds starts from the cache.
    tape: async (fds, compile) => {
      const text = fdsText(fds);
      if (text === entry.fds) return entry.tape;
      trace?.("cache: the box's fds differ from the cached tape's: compiled anew");
      const tape = FrozenTape.of(await compile(), record.trace);
      const stored: Entry = { key: record.tape.key, plan: entry.plan, fds: text, reads: entry.reads, tape };
      if (storeEntry(file.folder, record.tape.name, stored, trace) && stored.sum)
        storeStartRecord({ args, cwd, trace: record.trace, inputs: record.inputs, tape: { ...record.tape, sum: stored.sum } }, trace);
      return tape;
    },
  });
}

export interface RecordInputs {
  args: string[];
  cwd: string;
  trace: boolean;
  /** Every input assembly and planning read, each with what it gave them. */
  inputs: Observed[];
  /** The tape cache's entry for the box, as on disk. */
  tape: { name: string; key: string; sum: string };
}

/** Keep a record for this command line. */
export function storeStartRecord(r: RecordInputs, trace: Tracer): void {
  const file = commandLineFile("start", FORMAT, r.args, r.cwd);
  if (!file) return;
  const record: StartRecord = { format: FORMAT, key: file.key, inputs: r.inputs, tape: r.tape, trace: r.trace };
  writeCacheFile(file.folder, file.name, sealedJson(record), trace, /^start-[0-9a-f]{64}$/, KEEP, WHAT);
}

/** A tape cache entry's name: 64 lowercase hex digits. Compared by hand: a regular expression's first use costs a start 0.07 ms. */
function isHex64(s: string): boolean {
  if (s.length !== 64) return false;
  for (let i = 0; i < 64; i++) {
    const c = s.charCodeAt(i);
    if (!((c >= 48 && c <= 57) || (c >= 97 && c <= 102))) return false;
  }
  return true;
}

function decode(bytes: Uint8Array, key: string): StartRecord | null {
  const r = unsealFor(bytes, FORMAT, key) as StartRecord | null;
  const tape = r?.tape;
  const wellFormed = typeof tape?.name === "string" && isHex64(tape.name) && typeof tape.key === "string" && typeof tape.sum === "string";
  return r && Array.isArray(r.inputs) && typeof r.trace === "boolean" && wellFormed ? r : null;
}
