// A client for the OCI distribution API (v2): manifests and blobs, with bearer-token and basic
// auth, redirects (blob storage elsewhere never gets the registry's credentials), and ranged blob
// requests for resuming. Plain HTTP for localhost and 127.0.0.0/8 unless TLS is asked for.
import { q } from "../../ffi/libc";
import { StageError } from "../errors";
import { basicHeader, type Credentials, findCredentials, parseChallenge } from "./auth";
import { MEDIA } from "./oci-layout";

export interface Reference {
  /** Host[:port] as written ("docker.io" for Docker Hub names). */
  registry: string;
  repository: string;
  tag?: string;
  digest?: string;
}

/** docker's reference grammar: [host[:port]/]path[:tag][@sha256:hex]; a first part with "." or ":" (or localhost) is a host. */
export function parseReference(text: string): Reference {
  const bad = (why: string) => new StageError("image", `image pull ${q(text)}: not an image reference: ${why}`, "expected [HOST[:PORT]/]PATH[:TAG][@sha256:DIGEST], e.g. localhost:5000/test/busybox:latest");
  let rest = text;
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at !== -1) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!/^sha256:[a-f0-9]{64}$/.test(digest)) throw bad(`bad digest ${q(digest)}`);
  }
  let registry = "docker.io";
  const slash = rest.indexOf("/");
  const first = slash === -1 ? "" : rest.slice(0, slash);
  if (first && (first.includes(".") || first.includes(":") || first === "localhost" || first.startsWith("["))) {
    registry = first;
    rest = rest.slice(slash + 1);
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(":");
  if (colon !== -1 && !rest.slice(colon).includes("/")) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!/^[\w][\w.-]{0,127}$/.test(tag)) throw bad(`bad tag ${q(tag)}`);
  }
  if (!/^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/.test(rest)) throw bad(`bad repository ${q(rest)} (lower-case letters, digits, and . _ - between them)`);
  if (registry === "docker.io" && !rest.includes("/")) rest = `library/${rest}`;
  if (!tag && !digest) tag = "latest";
  return { registry, repository: rest, tag, digest };
}

export function referenceText(r: Reference): string {
  return `${r.registry}/${r.repository}${r.tag ? `:${r.tag}` : ""}${r.digest ? `@${r.digest}` : ""}`;
}

/** localhost, 127.0.0.0/8 and ::1: plain HTTP by default, as podman and docker treat them. */
export function isLoopback(registry: string): boolean {
  const host = registry.startsWith("[") ? registry.slice(1, registry.indexOf("]")) : registry.replace(/:\d+$/, "");
  return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

const MAX_MANIFEST = 4 * 1024 * 1024;

/**
 * Seconds a registry may take to answer a request, and then to send the next bytes of a body
 * (NSRUN_REGISTRY_TIMEOUT, default 30): a registry that accepts and never answers ends the pull.
 */
export function registryTimeoutMs(): number {
  const s = Number(process.env.NSRUN_REGISTRY_TIMEOUT ?? "");
  return Number.isFinite(s) && s > 0 ? s * 1000 : 30_000;
}

/** The registry went quiet: not a dropped connection to retry at once, and a download keeps what it has. */
export class RegistryTimeout extends StageError {}

/** Only http and https are fetched: a redirect to file:, data: or anything else is refused. */
function webUrl(url: URL, what: string, from: string): URL {
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new StageError("image", `${what}: ${from} pointed to ${q(url.href.slice(0, 200))}; nsrun follows only http and https`);
  return url;
}

/** A body read up to `limit` bytes; more is refused (a registry must not make nsrun hold more). */
export async function readCapped(res: Response, limit: number, what: string): Promise<Buffer> {
  if (Number(res.headers.get("content-length") ?? 0) > limit) {
    await res.body?.cancel().catch(() => {});
    throw new StageError("image", `${what}: larger than ${limit >> 20} MiB; refused`);
  }
  const parts: Uint8Array[] = [];
  let size = 0;
  if (res.body) {
    const reader = res.body.getReader();
    for (;;) {
      const r = await reader.read();
      if (r.done) break;
      size += r.value.length;
      if (size > limit) {
        await reader.cancel().catch(() => {});
        throw new StageError("image", `${what}: larger than ${limit >> 20} MiB; refused`);
      }
      parts.push(r.value);
    }
  }
  return Buffer.concat(parts);
}

export const MANIFEST_ACCEPT = [MEDIA.ociIndex, MEDIA.ociManifest, MEDIA.dockerList, MEDIA.dockerManifest].join(", ");

export interface ClientOptions {
  /** true: https with verification; false: https without, falling back to http; undefined: http for loopback, else verified https. */
  tlsVerify?: boolean;
  credentials?: Credentials | null;
}

export class RegistryClient {
  private base: string;
  private readonly verify: boolean;
  private readonly mayFallBack: boolean;
  private authorization: string | null = null;
  private readonly credentials: Credentials | null;
  readonly host: string;

  constructor(
    readonly ref: Reference,
    opts: ClientOptions = {},
  ) {
    this.host = ref.registry === "docker.io" ? "registry-1.docker.io" : ref.registry;
    const plain = opts.tlsVerify === undefined ? isLoopback(ref.registry) : false;
    this.base = `${plain ? "http" : "https"}://${this.host}`;
    this.verify = opts.tlsVerify !== false;
    this.mayFallBack = opts.tlsVerify === false;
    this.credentials = opts.credentials === undefined ? findCredentials(ref.registry, ref.repository) : opts.credentials;
  }

  get origin(): string {
    return this.base;
  }

  private what(): string {
    return `image pull ${q(referenceText(this.ref))}`;
  }

  /** GET a registry path, authenticating on a 401 challenge and following redirects. */
  async get(path: string, headers: Record<string, string> = {}): Promise<Response> {
    let res = await this.fetchFollowing(path, headers);
    if (res.status === 401) {
      const challenge = res.headers.get("www-authenticate");
      await res.body?.cancel();
      await this.authenticate(challenge);
      res = await this.fetchFollowing(path, headers);
      if (res.status === 401) {
        await res.body?.cancel();
        throw new StageError(
          "image",
          `${this.what()}: ${this.host} refused the credentials${this.credentials ? ` from ${q(this.credentials.file)}` : ""} (401 Unauthorized)`,
          this.credentials ? "check the user name and password for this registry" : "log in first (podman login / skopeo login), or add credentials to $REGISTRY_AUTH_FILE",
        );
      }
    }
    return res;
  }

  private async fetchFollowing(path: string, headers: Record<string, string>): Promise<Response> {
    let url = new URL(path, this.base);
    for (let hops = 0; hops < 6; hops++) {
      const sameOrigin = url.origin === new URL(this.base).origin;
      const h: Record<string, string> = { ...headers, "User-Agent": "nsrun" };
      if (sameOrigin && this.authorization) h.Authorization = this.authorization;
      const res = await this.fetch(url, h);
      if (![301, 302, 303, 307, 308].includes(res.status)) return res;
      const location = res.headers.get("location");
      await res.body?.cancel();
      if (!location) throw new StageError("image", `${this.what()}: ${url.href} redirected without a Location`);
      url = webUrl(new URL(location, url), this.what(), `a redirect from ${url.origin}`);
    }
    throw new StageError("image", `${this.what()}: too many redirects from ${path}`);
  }

  /**
   * fetch with a deadline for the answer and one for each piece of the body after it (idle): the
   * body is passed through a stream that aborts the request when the registry goes quiet.
   */
  private async timed(url: URL, init: RequestInit): Promise<Response> {
    webUrl(url, this.what(), "the request");
    const ms = registryTimeoutMs();
    const abort = new AbortController();
    let timedOut = false;
    let timer = setTimeout(() => {
      timedOut = true;
      abort.abort();
    }, ms);
    const quiet = () => new RegistryTimeout("image", `${this.what()}: ${url.host} sent nothing for ${ms / 1000} s; giving up (NSRUN_REGISTRY_TIMEOUT sets the seconds)`, "run the pull again when the registry answers; a download continues where it stopped");
    let res: Response;
    try {
      res = await fetch(url, { ...init, signal: abort.signal } as RequestInit);
    } catch (e) {
      clearTimeout(timer);
      if (timedOut) throw quiet();
      throw e;
    }
    clearTimeout(timer);
    if (!res.body) return res;
    const reader = res.body.getReader();
    const body = new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        timer = setTimeout(() => {
          timedOut = true;
          abort.abort();
          reader.cancel().catch(() => {});
        }, ms);
        try {
          const r = await reader.read();
          if (r.done) controller.close();
          else controller.enqueue(r.value);
        } catch (e) {
          controller.error(timedOut ? quiet() : e);
        } finally {
          clearTimeout(timer);
        }
      },
      cancel: async () => {
        await reader.cancel().catch(() => {});
      },
    });
    return new Response(body, { status: res.status, statusText: res.statusText, headers: res.headers });
  }

  private async fetch(url: URL, headers: Record<string, string>): Promise<Response> {
    try {
      return await this.timed(url, { headers, redirect: "manual", tls: { rejectUnauthorized: this.verify } } as RequestInit);
    } catch (e) {
      if (e instanceof StageError) throw e;
      // --tls-verify=false: a registry that speaks only plain HTTP fails the TLS handshake; use HTTP from then on.
      if (this.mayFallBack && url.protocol === "https:" && url.origin === new URL(this.base).origin) {
        this.base = `http://${this.host}`;
        const plain = new URL(url.href.replace(/^https:/, "http:"));
        try {
          return await this.timed(plain, { headers, redirect: "manual" });
        } catch (e2) {
          if (e2 instanceof StageError) throw e2;
          throw this.unreachable(plain, e2);
        }
      }
      throw this.unreachable(url, e);
    }
  }

  private unreachable(url: URL, e: unknown): StageError {
    const tlsHint = url.protocol === "https:" && !isLoopback(this.ref.registry) ? "for a registry without TLS, add --tls-verify=false" : undefined;
    return new StageError("image", `${this.what()}: cannot reach ${url.origin}: ${networkProblem(e)}`, tlsHint);
  }

  private async authenticate(header: string | null): Promise<void> {
    const challenge = header ? parseChallenge(header) : null;
    if (challenge?.scheme === "basic") {
      if (!this.credentials) throw this.needsCredentials();
      this.authorization = basicHeader(this.credentials);
      return;
    }
    if (challenge?.scheme !== "bearer" || !challenge.params.realm) {
      throw new StageError("image", `${this.what()}: ${this.host} answered 401 with an authentication scheme nsrun does not know: ${q(header ?? "")}`);
    }
    let url: URL;
    try {
      url = webUrl(new URL(challenge.params.realm), this.what(), `${this.host}'s token realm`);
    } catch (e) {
      if (e instanceof StageError) throw e;
      throw new StageError("image", `${this.what()}: ${this.host}'s token realm ${q(challenge.params.realm.slice(0, 200))} is not a URL`);
    }
    if (challenge.params.service) url.searchParams.set("service", challenge.params.service);
    url.searchParams.set("scope", challenge.params.scope ?? `repository:${this.ref.repository}:pull`);
    const headers: Record<string, string> = { "User-Agent": "nsrun" };
    if (this.credentials) headers.Authorization = basicHeader(this.credentials);
    let res: Response;
    try {
      res = await this.timed(url, { headers, redirect: "manual", tls: { rejectUnauthorized: this.verify } } as RequestInit);
    } catch (e) {
      if (e instanceof StageError) throw e;
      throw this.unreachable(url, e);
    }
    if (res.status === 401 || res.status === 403) {
      await res.body?.cancel();
      throw this.credentials
        ? new StageError("image", `${this.what()}: the token service ${url.origin} refused the credentials from ${q(this.credentials.file)} (${res.status})`)
        : this.needsCredentials();
    }
    if (!res.ok) throw new StageError("image", `${this.what()}: the token service ${url.origin} answered ${res.status} ${res.statusText}`);
    let body: { token?: string; access_token?: string } = {};
    try {
      body = JSON.parse((await readCapped(res, MAX_MANIFEST, `${this.what()}: the token service ${url.origin}`)).toString("utf8"));
    } catch (e) {
      if (e instanceof StageError) throw e;
    }
    const token = body.token ?? body.access_token;
    if (!token) throw new StageError("image", `${this.what()}: the token service ${url.origin} sent no token`);
    this.authorization = `Bearer ${token}`;
  }

  private needsCredentials(): StageError {
    return new StageError("image", `${this.what()}: ${this.host} needs credentials, and none were found for it`, "log in first (podman login / skopeo login), or set REGISTRY_AUTH_FILE to an auth.json with an \"auths\" entry for it");
  }

  /** Throws a StageError for a status that is not 2xx, quoting the registry's own error code. */
  async check(res: Response, what: string): Promise<Response> {
    if (res.ok) return res;
    let detail = "";
    try {
      const body = JSON.parse((await readCapped(res, 64 * 1024, "error")).toString("utf8")) as { errors?: Array<{ code?: string; message?: string }> };
      detail = (body.errors ?? []).map((e) => [e.code, e.message].filter(Boolean).join(": ")).join("; ");
      detail = JSON.stringify(detail.slice(0, 300)).slice(1, -1); // the registry's text, one line and no control characters
    } catch {
      // not JSON
    }
    throw new StageError("image", `${this.what()}: ${what}: ${res.status} ${res.statusText}${detail ? ` (${detail})` : ""}`);
  }

  /** A manifest or index, by tag or digest: its bytes, media type and digest. */
  async manifest(reference: string): Promise<{ body: Buffer; mediaType: string; digest: string }> {
    const path = `/v2/${this.ref.repository}/manifests/${reference}`;
    const res = await this.check(await this.get(path, { Accept: MANIFEST_ACCEPT }), `GET ${path}`);
    // The distribution spec caps manifests at 4 MiB; a registry must not make nsrun hold more.
    const body = await readCapped(res, MAX_MANIFEST, `${this.what()}: manifest ${reference}`);
    const digest = `sha256:${new Bun.CryptoHasher("sha256").update(body).digest("hex")}`;
    if (reference.startsWith("sha256:") && digest !== reference) {
      throw new StageError("image", `${this.what()}: manifest ${reference}: digest mismatch: the registry sent content with digest ${digest}`);
    }
    let mediaType = (res.headers.get("content-type") ?? "").split(";")[0].trim();
    try {
      mediaType = (JSON.parse(body.toString("utf8")) as { mediaType?: string }).mediaType ?? mediaType;
    } catch {
      throw new StageError("image", `${this.what()}: manifest ${reference}: not valid JSON`);
    }
    return { body, mediaType, digest };
  }

  /** A blob, from byte `from` on (HTTP Range). The caller checks the status: 200 (whole), 206 (the rest), 416. */
  async blob(digest: string, from: number): Promise<Response> {
    return this.get(`/v2/${this.ref.repository}/blobs/${digest}`, from > 0 ? { Range: `bytes=${from}-` } : {});
  }
}

const NETWORK_CODES: Record<string, string> = {
  ECONNREFUSED: "connection refused",
  ECONNRESET: "the connection was reset",
  ENOTFOUND: "no such host",
  EAI_AGAIN: "the host name could not be resolved now",
  ETIMEDOUT: "the connection timed out",
  EHOSTUNREACH: "no route to the host",
  ENETUNREACH: "the network is unreachable",
};

/** A fetch error as one line: the code and what it means, without Bun's advice ("pass `verbose: true` ..."). */
export function networkProblem(e: unknown): string {
  const err = e as { code?: string; message?: string };
  const code = typeof err.code === "string" ? err.code : "";
  if (NETWORK_CODES[code]) return `${NETWORK_CODES[code]} (${code})`;
  const text = String(err.message ?? e)
    .split(/\n/)[0]
    .replace(/[.,;]?\s*(For more information, )?pass `?verbose: true`?.*$/i, "")
    .replace(/[\x00-\x1f\x7f]/g, " ")
    .trim();
  return code && !text.includes(code) ? `${text} (${code})` : text;
}
