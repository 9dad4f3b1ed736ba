// User and group ids, as the kernel takes them: uid_t and gid_t are 32 bits, and (uid_t)-1,
// 4294967295, is not an id at all: setresuid(2), setresgid(2) and chown(2) read it as "leave this
// one unchanged", so a box asked to run as 4294967295 would keep uid 0. An id map's ranges must
// end below it too (user_namespaces(7)). Every id nsrun takes (flags, box.toml, config.json) is
// checked here, and one outside the range is refused with the key that gave it.

/** The highest id a process or a file can have. */
export const MAX_ID = 4294967294;

/** Why `id` is not an id the kernel takes, or null. */
export function idProblem(id: unknown): string | null {
  if (typeof id !== "number" || !Number.isInteger(id) || id < 0) return `expected a whole number 0 to ${MAX_ID}, got ${JSON.stringify(id)}`;
  if (id > MAX_ID) return `${id} is outside the kernel's ids (0 to ${MAX_ID}; 4294967295 is (uid_t)-1, which setresuid(2) reads as "unchanged")`;
  return null;
}

/** "UID" or "UID:GID" as text: the problem with it, or null (decimal digits only, each in range). */
export function userTextProblem(text: string): string | null {
  const parts = text.split(":");
  if (parts.length > 2 || !parts.every((p) => /^\d+$/.test(p))) return `expected UID or UID:GID in decimal, got ${JSON.stringify(text)}`;
  for (const p of parts) {
    const problem = idProblem(Number(p));
    if (problem) return problem;
  }
  return null;
}

/** Why an id map's range "inside outside count" does not fit the kernel's ids, or null. */
export function rangeProblem(inside: number, outside: number, count: number): string | null {
  for (const id of [inside, outside]) {
    const problem = idProblem(id);
    if (problem) return problem;
  }
  if (!Number.isInteger(count) || count < 1) return `expected a count of 1 or more, got ${count}`;
  if (inside + count - 1 > MAX_ID || outside + count - 1 > MAX_ID) return `the range ${inside}+${count} or ${outside}+${count} goes past the highest id ${MAX_ID}`;
  return null;
}
