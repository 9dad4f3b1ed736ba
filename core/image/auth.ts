// Registry credentials, read where podman, skopeo and docker keep them ("auths" entries, the same
// format in each), and the WWW-Authenticate challenges of the distribution API (Bearer or Basic).
import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";

export interface Credentials {
  username: string;
  password: string;
  /** The file they came from, for error messages. */
  file: string;
}

/** The auth files in the order they are searched; the first with an entry for the registry wins. */
export function authFiles(): string[] {
  const home = process.env.HOME || homedir();
  const files: string[] = [];
  if (process.env.REGISTRY_AUTH_FILE) files.push(process.env.REGISTRY_AUTH_FILE);
  if (process.env.XDG_RUNTIME_DIR) files.push(join(process.env.XDG_RUNTIME_DIR, "containers/auth.json"));
  files.push(join(home, ".config/containers/auth.json"), join(process.env.DOCKER_CONFIG || join(home, ".docker"), "config.json"));
  return files;
}

/** Keys an "auths" map may use for a registry, most specific first (a repository path, then the host). */
function keysFor(registry: string, repository: string): string[] {
  const parts = repository.split("/");
  const keys: string[] = [];
  for (let i = parts.length; i > 0; i--) keys.push(`${registry}/${parts.slice(0, i).join("/")}`);
  keys.push(registry, `https://${registry}`, `http://${registry}`);
  if (registry === "docker.io" || registry === "registry-1.docker.io") keys.push("https://index.docker.io/v1/", "index.docker.io", "docker.io");
  return keys;
}

export function findCredentials(registry: string, repository: string, files = authFiles()): Credentials | null {
  for (const file of files) {
    if (!existsSync(file)) continue;
    let auths: Record<string, { auth?: string; username?: string; password?: string }>;
    try {
      auths = JSON.parse(readFileSync(file, "utf8")).auths ?? {};
    } catch {
      continue; // an unreadable or broken file: the registry's 401 will say credentials are missing
    }
    const normalized = new Map(Object.entries(auths).map(([k, v]) => [k.replace(/\/+$/, ""), v]));
    for (const key of keysFor(registry, repository)) {
      const entry = normalized.get(key.replace(/\/+$/, ""));
      if (!entry) continue;
      if (entry.username && entry.password) return { username: entry.username, password: entry.password, file };
      if (entry.auth) {
        const text = Buffer.from(entry.auth, "base64").toString("utf8");
        const colon = text.indexOf(":");
        if (colon > 0) return { username: text.slice(0, colon), password: text.slice(colon + 1), file };
      }
    }
  }
  return null;
}

export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/** `Bearer realm="https://auth.example/token",service="registry",scope="repository:a/b:pull"` -> its parts. */
export function parseChallenge(header: string): Challenge | null {
  const m = /^\s*(\w+)\s*(.*)$/s.exec(header);
  if (!m) return null;
  const params: Record<string, string> = {};
  for (const p of m[2].matchAll(/([\w-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g)) params[p[1].toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, "$1") : p[3];
  return { scheme: m[1].toLowerCase(), params };
}

export const basicHeader = (c: { username: string; password: string }) => `Basic ${Buffer.from(`${c.username}:${c.password}`).toString("base64")}`;
