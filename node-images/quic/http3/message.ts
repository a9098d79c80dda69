/**
 * HTTP message checks for HTTP/3 field sections (RFC 9114 §4.2, §4.3): a field section that fails
 * them makes the message malformed, a stream error of type H3_MESSAGE_ERROR (§4.1.2).
 */
import type { FieldLine } from "./qpack.ts";

const REQUEST_PSEUDO = new Set([":method", ":scheme", ":authority", ":path", ":protocol"]);
/** RFC 9110 §5.1 token characters, lowercase only (§4.2: uppercase names are malformed). */
const FIELD_NAME = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/;
/** §4.2: connection-specific fields have no meaning in HTTP/3. */
const CONNECTION_SPECIFIC = new Set(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"]);
/** RFC 9110 §5.5: field values must not contain CR, LF or NUL, nor start or end with whitespace. */
const BAD_VALUE = /[\r\n\0]|^[ \t]|[ \t]$/;

export type FieldSectionKind = "request" | "response" | "trailers";

/** undefined when valid, else why the message is malformed. */
export function validateFieldSection(fields: readonly FieldLine[], kind: FieldSectionKind): string | undefined {
  const pseudo = new Map<string, string>();
  let sawRegular = false;
  for (const [name, value] of fields) {
    if (BAD_VALUE.test(value)) return `field ${name} has an invalid value`;
    if (name.startsWith(":")) {
      if (kind === "trailers") return `pseudo-header ${name} in trailers`;
      if (sawRegular) return `pseudo-header ${name} after regular fields`;
      const allowed = kind === "request" ? REQUEST_PSEUDO.has(name) : name === ":status";
      if (!allowed) return `pseudo-header ${name} not allowed in a ${kind}`;
      if (pseudo.has(name)) return `pseudo-header ${name} repeated`;
      pseudo.set(name, value);
      continue;
    }
    sawRegular = true;
    if (!FIELD_NAME.test(name)) return `invalid field name "${name}"`;
    if (CONNECTION_SPECIFIC.has(name)) return `connection-specific field ${name}`;
    if (name === "te" && value !== "trailers") return `te: ${value} (only "trailers" is allowed)`;
  }
  if (kind === "response") {
    const status = pseudo.get(":status");
    if (status === undefined) return "missing :status";
    if (!/^[1-5]\d\d$/.test(status)) return `invalid :status ${status}`;
  } else if (kind === "request") {
    const method = pseudo.get(":method");
    if (method === undefined) return "missing :method";
    if (method === "CONNECT" && !pseudo.has(":protocol")) {
      // §4.4: CONNECT carries :authority only.
      if (pseudo.has(":scheme") || pseudo.has(":path")) return "CONNECT with :scheme or :path";
      if (!pseudo.get(":authority")) return "CONNECT without :authority";
    } else {
      if (pseudo.has(":protocol")) return ":protocol without extended CONNECT";
      if (pseudo.get(":scheme") === undefined) return "missing :scheme";
      const path = pseudo.get(":path");
      if (path === undefined) return "missing :path";
      if (path === "") return "empty :path";
      // §4.3.1: http/https requests need an authority (in :authority or host).
      const scheme = pseudo.get(":scheme");
      const host = fields.find(([n]) => n === "host")?.[1];
      if ((scheme === "http" || scheme === "https") && !pseudo.get(":authority") && !host) return "missing :authority and host";
    }
  }
  return undefined;
}
