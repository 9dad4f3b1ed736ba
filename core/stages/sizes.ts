// Sizes as box.toml writes them: read by the schema (core/stages/config.ts) and by planning, which
// must not load the schema for a box from the tape cache.

/** "256M", "1G", "512K", "1048576" or a TOML integer -> bytes (K/M/G are powers of 1024); null if not a size. */
export function parseSize(input: string | number): number | null {
  if (typeof input === "number") return Number.isSafeInteger(input) && input >= 0 ? input : null;
  const m = input.trim().match(/^(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?$/i);
  if (!m) return null;
  const scale = { "": 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 }[m[2].toUpperCase() as "" | "K"];
  const bytes = Math.round(Number(m[1]) * scale);
  return Number.isSafeInteger(bytes) ? bytes : null;
}
