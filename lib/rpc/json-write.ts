/**
 * Compact JSON text the way SPDK's spdk_json_write_* functions produce it (lib/json/json_write.c,
 * v25.09, flags 0 as jsonrpc_server.c uses): no whitespace, and strings escaped like
 * write_codepoint does it: `\b \f \n \r \t \" \\` as two-character escapes, printable ASCII
 * (0x20-0x7E, `/` included) as itself, everything else (other control characters, DEL and all
 * non-ASCII) as `\uXXXX` with upper-case hex, astral characters as a surrogate pair.
 *
 * Numbers are written as JavaScript formats them (integers as plain digits); object members in
 * insertion order; `undefined` members are left out, like JSON.stringify.
 */
export function writeJson(value: unknown): string {
  const out: string[] = [];
  write(value, out);
  return out.join('');
}

function write(value: unknown, out: string[]): void {
  switch (typeof value) {
    case 'string':
      out.push(quote(value));
      return;
    case 'number':
      out.push(Number.isFinite(value) ? String(value) : 'null');
      return;
    case 'bigint':
      out.push(value.toString());
      return;
    case 'boolean':
      out.push(value ? 'true' : 'false');
      return;
    case 'object':
      break;
    default:
      out.push('null');
      return;
  }
  if (value === null) {
    out.push('null');
  } else if (Array.isArray(value)) {
    out.push('[');
    value.forEach((v, i) => {
      if (i > 0) out.push(',');
      write(v === undefined ? null : v, out);
    });
    out.push(']');
  } else {
    out.push('{');
    let first = true;
    for (const [k, v] of Object.entries(value)) {
      if (v === undefined) continue;
      if (!first) out.push(',');
      first = false;
      out.push(quote(k), ':');
      write(v, out);
    }
    out.push('}');
  }
}

const SHORT_ESCAPES: Record<string, string> = {
  '\b': '\\b',
  '\f': '\\f',
  '\n': '\\n',
  '\r': '\\r',
  '\t': '\\t',
  '"': '\\"',
  '\\': '\\\\',
};

// Everything outside printable ASCII, plus the two printable characters that need escaping.
const NEEDS_ESCAPE = /[\u0000-\u001f"\\\u007f-\uffff]/g;

function quote(s: string): string {
  return (
    '"' +
    s.replace(NEEDS_ESCAPE, (ch) => SHORT_ESCAPES[ch] ?? '\\u' + ch.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')) +
    '"'
  );
}
