// A streaming tar reader: ustar, GNU long names and links ('L', 'K'), and PAX headers ('x', 'g')
// with their xattrs (SCHILY.xattr.*, and libarchive's LIBARCHIVE.xattr.*). Layers can be gigabytes,
// so nothing is held but the current header: a member's body is passed on in the chunks it came in.
import type { Time } from "../../ffi/fs";
import { nameFromBytes } from "../../ffi/libc";
import { NsrunError } from "../../ffi/error";

export type EntryType = "file" | "hardlink" | "symlink" | "chardev" | "blockdev" | "dir" | "fifo";

export interface TarEntry {
  /** The name as the archive spells it (PAX path, GNU long name or ustar prefix/name). */
  path: string;
  type: EntryType;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: Time;
  atime: Time | null;
  /** Target of a symlink or hard link. */
  linkname: string;
  devmajor: number;
  devminor: number;
  xattrs: Map<string, Buffer>;
}

export class TarError extends NsrunError {
  constructor(message: string) {
    super(message);
    this.name = "TarError";
  }
}

const BLOCK = 512;

/** A header's numeric field: octal text, or GNU base-256 when the first byte has its top bit set. */
export function parseNumber(field: Uint8Array): number {
  if (field[0] & 0x80) {
    let n = 0n;
    for (let i = 0; i < field.length; i++) n = (n << 8n) | BigInt(i === 0 ? field[0] & 0x7f : field[i]);
    return Number(n);
  }
  let text = "";
  for (const b of field) {
    if (b === 0) break;
    text += String.fromCharCode(b);
  }
  text = text.trim();
  if (text === "") return 0;
  if (!/^[0-7]+$/.test(text)) throw new TarError(`not an octal number in a tar header: ${JSON.stringify(text)}`);
  return Number.parseInt(text, 8);
}

/** A NUL-terminated name, its bytes kept (nameFromBytes: a byte that is not UTF-8 stays that byte). */
function cString(field: Uint8Array): string {
  const end = field.indexOf(0);
  return nameFromBytes(end === -1 ? field : field.subarray(0, end));
}

/** Whether the header's checksum holds (unsigned sum, or the signed sum some old tars wrote). */
function checksumOk(h: Uint8Array): boolean {
  const want = parseNumber(h.subarray(148, 156));
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : h[i];
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  return want === unsigned || want === signed;
}

function isZeroBlock(h: Uint8Array): boolean {
  for (let i = 0; i < BLOCK; i++) if (h[i] !== 0) return false;
  return true;
}

/** A PAX time: "1700000000.123456789" (seconds, maybe negative, with an optional fraction). */
export function parsePaxTime(text: string): Time {
  const m = text.trim().match(/^(-?\d+)(?:\.(\d+))?$/);
  if (!m) throw new TarError(`not a PAX time: ${JSON.stringify(text)}`);
  return { sec: Number(m[1]), nsec: Number((m[2] ?? "").padEnd(9, "0").slice(0, 9)) };
}

/** PAX records: "LEN key=value\n", where LEN counts the whole record in bytes. Values stay bytes (xattrs are binary). */
export function parsePax(body: Uint8Array): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  let i = 0;
  while (i < body.length) {
    if (body[i] === 0) break;
    const space = body.indexOf(0x20, i);
    if (space === -1) throw new TarError("a PAX header record has no length");
    const len = Number(Buffer.from(body.subarray(i, space)).toString("latin1"));
    if (!Number.isSafeInteger(len) || len <= 0 || i + len > body.length) throw new TarError("a PAX header record has a bad length");
    const record = body.subarray(space + 1, i + len - 1); // without the trailing newline
    const eq = record.indexOf(0x3d);
    if (eq === -1) throw new TarError("a PAX header record has no '='");
    out.set(Buffer.from(record.subarray(0, eq)).toString("utf8"), Buffer.from(record.subarray(eq + 1)));
    i += len;
  }
  return out;
}

const TYPES: Record<string, EntryType> = {
  "0": "file",
  "\0": "file",
  "7": "file",
  "1": "hardlink",
  "2": "symlink",
  "3": "chardev",
  "4": "blockdev",
  "5": "dir",
  D: "dir", // GNU dump directory: its body lists names, which we skip
  "6": "fifo",
};

interface RawHeader {
  typeflag: string;
  name: string;
  linkname: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  devmajor: number;
  devminor: number;
}

function parseHeader(h: Uint8Array): RawHeader {
  const magic = Buffer.from(h.subarray(257, 265)).toString("latin1");
  const gnu = magic === "ustar  \0";
  let name = cString(h.subarray(0, 100));
  // ustar splits long names into prefix/name; GNU tar keeps other fields where the prefix would be.
  if (!gnu && magic.startsWith("ustar")) {
    const prefix = cString(h.subarray(345, 500));
    if (prefix) name = `${prefix}/${name}`;
  }
  return {
    typeflag: String.fromCharCode(h[156]),
    name,
    linkname: cString(h.subarray(157, 257)),
    mode: parseNumber(h.subarray(100, 108)),
    uid: parseNumber(h.subarray(108, 116)),
    gid: parseNumber(h.subarray(116, 124)),
    size: parseNumber(h.subarray(124, 136)),
    mtime: parseNumber(h.subarray(136, 148)),
    devmajor: parseNumber(h.subarray(329, 337)),
    devminor: parseNumber(h.subarray(337, 345)),
  };
}

/** Buffered reads of exact lengths from a stream of chunks. */
class ByteSource {
  private chunks: Uint8Array[] = [];
  private buffered = 0;
  private done = false;
  /** Bytes handed out so far: the offset in the input of what comes next. */
  position = 0;
  constructor(private readonly it: AsyncIterator<Uint8Array>) {}

  private async fill(n: number): Promise<void> {
    while (this.buffered < n && !this.done) {
      const r = await this.it.next();
      if (r.done) this.done = true;
      else if (r.value.length) {
        this.chunks.push(r.value);
        this.buffered += r.value.length;
      }
    }
  }

  /** Exactly n bytes, or null at a clean end of input (nothing left). */
  async read(n: number): Promise<Uint8Array | null> {
    await this.fill(n);
    if (this.buffered === 0) return null;
    if (this.buffered < n) throw new TarError("the archive ends in the middle of a member (truncated?)");
    const first = this.chunks[0];
    if (first.length >= n) {
      const out = first.subarray(0, n);
      this.take(n);
      return out;
    }
    const out = new Uint8Array(n);
    let off = 0;
    while (off < n) {
      const c = this.chunks[0];
      const k = Math.min(c.length, n - off);
      out.set(c.subarray(0, k), off);
      off += k;
      this.take(k);
    }
    return out;
  }

  /** Up to n bytes as they come, without copying. */
  async *pieces(n: number): AsyncGenerator<Uint8Array> {
    let left = n;
    while (left > 0) {
      if (this.buffered === 0) await this.fill(1);
      if (this.buffered === 0) throw new TarError("the archive ends in the middle of a member (truncated?)");
      const c = this.chunks[0];
      const k = Math.min(c.length, left);
      const piece = c.subarray(0, k);
      this.take(k);
      left -= k;
      yield piece;
    }
  }

  async skip(n: number): Promise<void> {
    for await (const _ of this.pieces(n));
  }

  /** Read to the end of the input (so that a digest over the whole stream is complete). */
  async drain(): Promise<void> {
    this.chunks = [];
    this.buffered = 0;
    while (!this.done) if ((await this.it.next()).done) this.done = true;
  }

  private take(n: number): void {
    this.position += n;
    const c = this.chunks[0];
    if (n === c.length) this.chunks.shift();
    else this.chunks[0] = c.subarray(n);
    this.buffered -= n;
  }
}

export interface TarMember {
  entry: TarEntry;
  /** Where the member's content starts in the input: an uncompressed archive on disk can be read there later. */
  offset: number;
  /** The member's content (files only). Unread content is skipped when the next member is asked for. */
  body(): AsyncGenerator<Uint8Array>;
}

const padding = (size: number) => (BLOCK - (size % BLOCK)) % BLOCK;

/**
 * The members of a tar stream, in order. Meta members (PAX, GNU long names) are folded into the
 * member they describe. Reads the input to its end, past the end-of-archive blocks, so that a digest
 * taken over the input covers all of it.
 */
export async function* readTar(input: AsyncIterable<Uint8Array>): AsyncGenerator<TarMember> {
  const src = new ByteSource(input[Symbol.asyncIterator]());
  let global = new Map<string, Buffer>();
  let pax: Map<string, Buffer> | null = null;
  let longName: string | null = null;
  let longLink: string | null = null;
  for (;;) {
    const block = await src.read(BLOCK);
    if (block === null) break; // no end-of-archive blocks: accepted at a member boundary, as Go's archive/tar does
    if (isZeroBlock(block)) break;
    if (!checksumOk(block)) throw new TarError("a tar header has a bad checksum (not a tar archive, or corrupt)");
    const h = parseHeader(block);
    const paxSize = pax?.get("size");
    const size = paxSize ? (/^\d+$/.test(paxSize.toString()) ? Number(paxSize.toString()) : Number.NaN) : h.size;
    if (!Number.isSafeInteger(size) || size < 0) throw new TarError(`a tar member has a bad size: ${size}`);
    if (h.typeflag === "x" || h.typeflag === "g" || h.typeflag === "L" || h.typeflag === "K") {
      if (size > 64 * 1024 * 1024) throw new TarError(`a tar meta header of ${size} bytes is too large`);
      const body = (await src.read(size + padding(size))) ?? new Uint8Array(0);
      const data = body.subarray(0, size);
      if (h.typeflag === "x") pax = parsePax(data);
      else if (h.typeflag === "g") global = new Map([...global, ...parsePax(data)]);
      else if (h.typeflag === "L") longName = cString(data);
      else longLink = cString(data);
      continue;
    }
    const meta = new Map([...global, ...(pax ?? [])]);
    pax = null;
    if (h.typeflag === "S" || [...meta.keys()].some((k) => k.startsWith("GNU.sparse."))) throw new TarError(`${JSON.stringify(longName ?? h.name)}: sparse tar members are not supported`);
    const entry = toEntry(h, meta, longName, longLink, size);
    longName = null;
    longLink = null;
    if (h.typeflag === "V") {
      await src.skip(size + padding(size)); // a volume label, not a file
      continue;
    }
    // Links, directories, devices and FIFOs are header-only whatever their size field says (as Go's
    // archive/tar reads them); a GNU dump directory's body lists names, which are skipped.
    const bodySize = entry.type === "file" || h.typeflag === "D" ? size : 0;
    let left = bodySize;
    yield {
      entry,
      offset: src.position,
      body: async function* () {
        if (entry.type !== "file") return;
        for await (const piece of src.pieces(left)) {
          left -= piece.length;
          yield piece;
        }
      },
    };
    await src.skip(left + padding(bodySize)); // what the consumer did not read
  }
  await src.drain();
}

function toEntry(h: RawHeader, meta: Map<string, Buffer>, longName: string | null, longLink: string | null, size: number): TarEntry {
  const text = (k: string) => meta.get(k)?.toString("utf8");
  const name = (k: string) => {
    const v = meta.get(k);
    return v === undefined ? undefined : nameFromBytes(v);
  };
  const path = name("path") ?? longName ?? h.name;
  const linkname = name("linkpath") ?? longLink ?? h.linkname;
  // A NUL in a PAX name would end the name at the syscall ("etc/passwd\0junk" is etc/passwd): refused.
  if (path.includes("\0") || linkname.includes("\0")) throw new TarError(`${JSON.stringify(path)}: its name or link target contains NUL`);
  // An owner is a decimal id up to 4294967294: "-1", "abc" or "1e3" (which Number() reads as 1000) is
  // refused, never read as root.
  const num = (k: "uid" | "gid", fallback: number) => {
    const v = text(k);
    const n = v === undefined ? fallback : /^\d{1,10}$/.test(v) ? Number(v) : Number.NaN;
    if (!Number.isSafeInteger(n) || n < 0 || n > 4294967294) throw new TarError(`${JSON.stringify(path)}: its ${v === undefined ? "header's" : "PAX"} ${k} ${JSON.stringify(v ?? String(fallback))} is not an id (0-4294967294)`);
    return n;
  };
  const type = TYPES[h.typeflag] ?? "file"; // POSIX: an unknown type is read as a regular file
  const xattrs = new Map<string, Buffer>();
  for (const [k, v] of meta) {
    if (k.includes("\0")) throw new TarError(`${JSON.stringify(path)}: a PAX record's name contains NUL: ${JSON.stringify(k)}`);
    if (k.startsWith("SCHILY.xattr.")) xattrs.set(k.slice("SCHILY.xattr.".length), v);
    // libarchive: the name is URL-encoded and the value base64.
    else if (k.startsWith("LIBARCHIVE.xattr.")) xattrs.set(decodeURIComponent(k.slice("LIBARCHIVE.xattr.".length)), Buffer.from(v.toString("latin1"), "base64"));
  }
  const mtimeText = text("mtime");
  const atimeText = text("atime");
  // A time the kernel's 64-bit seconds cannot hold (a base-256 field of 2^88) is refused naming the
  // entry, before it reaches a syscall's argument.
  const time = (t: Time, k: string): Time => {
    if (!Number.isSafeInteger(t.sec)) throw new TarError(`${JSON.stringify(path)}: its ${k} ${mtimeText ?? t.sec} is out of range`);
    return t;
  };
  return {
    path,
    type,
    mode: h.mode & 0o7777,
    uid: num("uid", h.uid),
    gid: num("gid", h.gid),
    size: type === "file" ? size : 0,
    mtime: time(mtimeText ? parsePaxTime(mtimeText) : { sec: h.mtime, nsec: 0 }, "mtime"),
    atime: atimeText ? time(parsePaxTime(atimeText), "atime") : null,
    linkname,
    devmajor: h.devmajor,
    devminor: h.devminor,
    xattrs,
  };
}
