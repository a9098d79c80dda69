/**
 * Maps a URL path onto a file under a root directory (/www for the server, /downloads for the client),
 * refusing anything that would leave the root: "..", NUL, an absolute path after decoding.
 */
import { isAbsolute, join, normalize, relative, sep } from "node:path";

/** The file under `root` for `urlPath` ("/dir/file"), or undefined when the path is malformed or escapes the root. */
export function fileUnderRoot(root: string, urlPath: string): string | undefined {
  let decoded: string;
  try {
    decoded = decodeURIComponent(urlPath);
  } catch {
    return undefined;
  }
  if (decoded.includes("\0")) return undefined;
  const inner = normalize(decoded.replace(/^\/+/, ""));
  if (inner === "" || inner === "." || isAbsolute(inner)) return undefined;
  const full = join(root, inner);
  const rel = relative(root, full);
  if (rel === "" || rel === ".." || rel.startsWith(`..${sep}`) || isAbsolute(rel)) return undefined;
  return full;
}
