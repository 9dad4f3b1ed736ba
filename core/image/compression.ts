// Layers and rootfs tarballs come plain, gzip-, zstd- or xz-compressed. The format is read from the
// first bytes, never from a file name or a media type (both lie in the wild). gzip and zstd are
// Bun's own (DecompressionStream); xz goes through the `xz` command, which Bun does not have.
import { StageError } from "../errors";

export type Compression = "none" | "gzip" | "zstd" | "xz" | "bzip2";

const MAGIC: Array<[Compression, number[]]> = [
  ["gzip", [0x1f, 0x8b]],
  ["zstd", [0x28, 0xb5, 0x2f, 0xfd]],
  ["xz", [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]],
  ["bzip2", [0x42, 0x5a, 0x68]],
];

export function sniffCompression(head: Uint8Array): Compression {
  for (const [kind, magic] of MAGIC) if (magic.every((b, i) => head[i] === b)) return kind;
  return "none";
}

/** The first bytes of a stream, and the whole stream again (those bytes included). */
async function peek(input: AsyncIterable<Uint8Array>, n: number): Promise<{ head: Uint8Array; stream: AsyncIterable<Uint8Array> }> {
  const it = input[Symbol.asyncIterator]();
  const seen: Uint8Array[] = [];
  let have = 0;
  let ended = false;
  while (have < n) {
    const r = await it.next();
    if (r.done) {
      ended = true;
      break;
    }
    seen.push(r.value);
    have += r.value.length;
  }
  const head = Buffer.concat(seen).subarray(0, n);
  async function* again(): AsyncGenerator<Uint8Array> {
    yield* seen;
    if (ended) return;
    for (;;) {
      const r = await it.next();
      if (r.done) return;
      yield r.value;
    }
  }
  return { head, stream: again() };
}

function toReadable(input: AsyncIterable<Uint8Array>): ReadableStream<Uint8Array> {
  const it = input[Symbol.asyncIterator]();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const r = await it.next();
      if (r.done) controller.close();
      else controller.enqueue(r.value);
    },
    async cancel() {
      await it.return?.();
    },
  });
}

/**
 * The decompressed bytes of `input`, whatever its compression. `what` names the source in errors
 * ("layer sha256:ab12...", "rootfs.tar.xz"). Reports the format it found through `found`.
 */
export async function* decompress(input: AsyncIterable<Uint8Array>, what: string, found?: (c: Compression) => void): AsyncGenerator<Uint8Array> {
  const { head, stream } = await peek(input, 6);
  const kind = sniffCompression(head);
  found?.(kind);
  try {
    if (kind === "none") yield* stream;
    else if (kind === "gzip" || kind === "zstd") yield* toReadable(stream).pipeThrough(new DecompressionStream(kind as "gzip") as unknown as TransformStream<Uint8Array, Uint8Array>);
    else if (kind === "xz") yield* unxz(stream, what);
    else throw new StageError("image", `${what}: bzip2 compression is not supported; recompress it with gzip, zstd or xz`);
  } catch (e) {
    if (e instanceof StageError) throw e;
    throw new StageError("image", `${what}: cannot decompress (${kind}): ${(e as Error).message}`);
  }
}

/** xz through `xz -dc`: input pumped into its stdin while its stdout is read. */
async function* unxz(input: AsyncIterable<Uint8Array>, what: string): AsyncGenerator<Uint8Array> {
  let proc: ReturnType<typeof Bun.spawn<"pipe", "pipe", "pipe">>;
  try {
    proc = Bun.spawn(["xz", "--decompress", "--stdout"], { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
  } catch {
    throw new StageError("image", `${what}: is xz-compressed, and the xz command is missing`, "install it: apt-get install xz-utils");
  }
  let pumpError: unknown = null;
  const pump = (async () => {
    try {
      for await (const chunk of input) {
        proc.stdin.write(chunk);
        await proc.stdin.flush();
      }
    } catch (e) {
      pumpError = e;
    } finally {
      try {
        await proc.stdin.end();
      } catch {
        // xz exited early: its own status says why
      }
    }
  })();
  try {
    yield* proc.stdout;
    await pump;
    const code = await proc.exited;
    if (pumpError) throw pumpError;
    if (code !== 0) {
      const err = (await new Response(proc.stderr).text()).trim().split("\n").pop() ?? "";
      throw new StageError("image", `${what}: xz failed: ${err.replace(/^xz: /, "").replace(/^\(stdin\): /, "")}`);
    }
  } finally {
    if (proc.exitCode === null) proc.kill();
  }
}
