// File names as the kernel has them, bytes, in JavaScript strings (no libc here: the tape
// assembler uses it too).
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });
/** A lone low surrogate U+DC80..U+DCFF: a byte that was not UTF-8 (nameFromBytes). */
const ESCAPED = /(?<![\uD800-\uDBFF])[\uDC80-\uDCFF]/;

/**
 * A file name's bytes as a string, keeping every byte: UTF-8 decodes as usual, and each byte that is
 * not part of valid UTF-8 becomes the lone surrogate U+DC00+byte (Python's "surrogateescape"). So
 * names that differ in one such byte (`caf\xe9`, `caf\xe8`) stay two names, and nameBytes (every
 * path given to the kernel, through cstr) turns them back into the same bytes.
 */
export function nameFromBytes(bytes: Uint8Array): string {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    // not all UTF-8: decode sequence by sequence below
  }
  let out = "";
  for (let i = 0; i < bytes.length; ) {
    const b = bytes[i];
    const n = b < 0x80 ? 1 : b >= 0xc2 && b <= 0xdf ? 2 : b >= 0xe0 && b <= 0xef ? 3 : b >= 0xf0 && b <= 0xf4 ? 4 : 0;
    if (n > 0 && i + n <= bytes.length) {
      try {
        out += strictUtf8.decode(bytes.subarray(i, i + n));
        i += n;
        continue;
      } catch {
        // an invalid sequence: its first byte is escaped, the rest looked at again
      }
    }
    out += String.fromCharCode(0xdc00 + b);
    i++;
  }
  return out;
}

/** A name's bytes: UTF-8, with the bytes nameFromBytes escaped given back as they were. */
export function nameBytes(s: string): Uint8Array {
  // Most names are ASCII: copied here. The rest apart, in a function of its own: a function that
  // names Buffer makes the runtime set Buffer up on its first call (about 0.1 ms of a box's start).
  return asciiBytes(s) ?? unicodeBytes(s);
}

function unicodeBytes(s: string): Uint8Array {
  if (!ESCAPED.test(s)) return Buffer.from(s);
  const parts: Buffer[] = [];
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      parts.push(Buffer.from(s.slice(i, i + 2)));
      i++;
    } else if (c >= 0xdc80 && c <= 0xdcff) parts.push(Buffer.from([c - 0xdc00]));
    else parts.push(Buffer.from(s[i]));
  }
  return Buffer.concat(parts);
}

/** `s` as bytes when it is all ASCII, else null. */
function asciiBytes(s: string): Uint8Array | null {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0x7f) return null;
    out[i] = c;
  }
  return out;
}
