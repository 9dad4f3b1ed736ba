// Namespaces a config.json joins by path (linux.namespaces[].path). The path is the config's, so it
// is treated as hostile input: opened without blocking (ffi/nsfs.ts), and the fd kept only when
// it is a namespace file of the entry's kind. runc opens it with a blocking open(2): a FIFO there
// makes it wait for a writer until it is killed, and a regular file fails only later, in setns(2),
// as EINVAL. Planning checks each path this way for a clear error before anything is made; `create`
// opens it again and checks the fd it hands to setns(2) (the path may have changed in between).
import { closeNs, NsfsError, openNsToJoin } from "../../ffi/nsfs";
import { NAMESPACE_ORDER, type NamespaceKind } from "../stages/namespaces";
import { OciPlanError } from "./resources";

/** One namespace to join: its kind, the config's path, and the key that named it. */
export interface JoinedNamespace {
  kind: NamespaceKind;
  path: string;
  /** linux.namespaces[i].path: errors name it. */
  key: string;
}

/** The fd of `j`'s namespace, for setns(2); an OciPlanError naming `j.key` when the path is not a namespace of that kind. */
export function openToJoin(j: JoinedNamespace): number {
  let opened: { fd: number; type: number | null };
  try {
    opened = openNsToJoin(j.path);
  } catch (e) {
    const code = e instanceof NsfsError ? e.code : String(e);
    throw new OciPlanError(j.key, `${JSON.stringify(j.path)} ${code === "ENOENT" ? "does not exist" : `cannot be opened (${code})`}`);
  }
  const kind = NAMESPACE_ORDER.find(([, flag]) => flag === opened.type)?.[0];
  if (kind === j.kind) return opened.fd;
  closeNs(opened.fd);
  throw new OciPlanError(j.key, `${JSON.stringify(j.path)} ${kind ? `is a ${kind} namespace, not a ${j.kind} one` : "is not a namespace file (/proc/PID/ns/...)"}`);
}
