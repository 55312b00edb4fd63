/**
 * A streaming JSON value scanner with the grammar and limits of SPDK's `spdk_json_parse`
 * (lib/json/json_parse.c, v25.09), used to cut one JSON-RPC request out of a byte stream.
 *
 * It reports "incomplete" vs "invalid" the way SPDK does (so a request split across reads waits
 * for more data and garbage fails at once), counts values the way SPDK counts them (a name, a
 * scalar, and each container's begin and end are one value each; jsonrpc_server.c refuses more
 * than 1024), nests at most 64 containers, accepts no comments, and validates UTF-8 and
 * `\u` escapes (no lone surrogates).
 *
 * It builds the JavaScript value while scanning. Objects keep the last value of a repeated key,
 * like JSON.parse, and remember which keys repeated (see {@link hasDuplicateKeys}) because SPDK's
 * object decoder fails on a repeated key.
 */

/** Containers nested deeper than this are a parse error (SPDK_JSON_MAX_NESTING_DEPTH). */
export const JSON_MAX_NESTING_DEPTH = 64;

const DUPLICATE_KEYS = Symbol('spdk-node.json.duplicateKeys');

export type JsonScanResult =
  | { status: 'incomplete' }
  | { status: 'invalid'; offset: number }
  | {
      status: 'complete';
      value: unknown;
      /** Offset just past the value and the whitespace that follows it (SPDK's `end`). */
      end: number;
      /** How many JSON values SPDK would count in it. */
      valueCount: number;
    };

const NO_KEYS: ReadonlySet<string> = new Set();

/** The keys that appeared more than once in an object {@link scanJsonValue} built (else none). */
export function duplicateKeys(obj: object): ReadonlySet<string> {
  return (obj as { [DUPLICATE_KEYS]?: Set<string> })[DUPLICATE_KEYS] ?? NO_KEYS;
}

/** True when `obj` came from {@link scanJsonValue} and one of its keys appeared more than once. */
export function hasDuplicateKeys(obj: object): boolean {
  return duplicateKeys(obj).size > 0;
}

class Incomplete {}
class Invalid {
  constructor(readonly offset: number) {}
}
const INCOMPLETE = new Incomplete();

const enum State {
  Value,
  ValueSeparator,
  Name,
  NameSeparator,
  End,
}

interface Frame {
  container: Record<string, unknown> | unknown[];
  key: string;
}

const TWO_CHAR_ESCAPES: Record<number, string> = {
  0x62: '\b',
  0x66: '\f',
  0x6e: '\n',
  0x72: '\r',
  0x74: '\t',
  0x2f: '/',
  0x22: '"',
  0x5c: '\\',
};

function isWhitespace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0d || c === 0x0a;
}

/**
 * Scans one JSON value that starts at `buf[start]` (after optional whitespace) and must end
 * before `limit`.
 */
export function scanJsonValue(buf: Uint8Array, start = 0, limit = buf.length): JsonScanResult {
  try {
    return scan(buf, start, limit);
  } catch (e) {
    if (e === INCOMPLETE) return { status: 'incomplete' };
    if (e instanceof Invalid) return { status: 'invalid', offset: e.offset };
    throw e;
  }
}

function scan(buf: Uint8Array, start: number, limit: number): JsonScanResult {
  const stack: Frame[] = [];
  let state: State = State.Value as State;
  let trailingComma = false;
  let count = 0;
  let root: unknown;
  let i = start;

  // Stores a finished value in its container and returns the state that follows a value.
  const addValue = (v: unknown): State => {
    const top = stack[stack.length - 1];
    if (top === undefined) {
      root = v;
    } else if (Array.isArray(top.container)) {
      top.container.push(v);
    } else {
      setMember(top.container, top.key, v);
    }
    trailingComma = false;
    return stack.length > 0 ? State.ValueSeparator : State.End;
  };

  while (i < limit && state !== State.End) {
    const c = buf[i];
    if (isWhitespace(c)) {
      i++;
      continue;
    }
    switch (c) {
      case 0x74: // t
      case 0x66: // f
      case 0x6e: {
        // n
        if (state !== State.Value) throw new Invalid(i);
        const [text, value] = c === 0x74 ? ['true', true] : c === 0x66 ? ['false', false] : ['null', null];
        if (limit - i < text.length) throw INCOMPLETE;
        for (let k = 0; k < text.length; k++) {
          if (buf[i + k] !== text.charCodeAt(k)) throw new Invalid(i + k);
        }
        i += text.length;
        count++;
        state = addValue(value);
        break;
      }
      case 0x22: {
        if (state !== State.Value && state !== State.Name) throw new Invalid(i);
        const [str, next] = scanString(buf, i, limit);
        i = next;
        count++;
        if (state === State.Name) {
          stack[stack.length - 1].key = str;
          state = State.NameSeparator;
          trailingComma = false;
        } else {
          state = addValue(str);
        }
        break;
      }
      case 0x7b: // {
      case 0x5b: {
        // [
        if (state !== State.Value) throw new Invalid(i);
        if (stack.length === JSON_MAX_NESTING_DEPTH) throw new Invalid(i);
        stack.push({ container: c === 0x7b ? {} : [], key: '' });
        state = c === 0x7b ? State.Name : State.Value;
        trailingComma = false;
        count++;
        i++;
        break;
      }
      case 0x7d: // }
      case 0x5d: {
        // ]
        if (trailingComma || stack.length === 0) throw new Invalid(i);
        const frame = stack[stack.length - 1];
        const isObject = !Array.isArray(frame.container);
        if (c === 0x7d) {
          if ((state !== State.Name && state !== State.ValueSeparator) || !isObject) throw new Invalid(i);
        } else if ((state !== State.Value && state !== State.ValueSeparator) || isObject) {
          throw new Invalid(i);
        }
        stack.pop();
        count++;
        i++;
        state = addValue(frame.container);
        break;
      }
      case 0x2c: {
        // ,
        if (state !== State.ValueSeparator) throw new Invalid(i);
        state = Array.isArray(stack[stack.length - 1].container) ? State.Value : State.Name;
        trailingComma = true;
        i++;
        break;
      }
      case 0x3a: {
        // :
        if (state !== State.NameSeparator) throw new Invalid(i);
        state = State.Value;
        i++;
        break;
      }
      default: {
        if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
          if (state !== State.Value) throw new Invalid(i);
          const len = numberLength(buf, i, limit);
          count++;
          state = addValue(Number(Buffer.from(buf.buffer, buf.byteOffset + i, len).toString('latin1')));
          i += len;
          break;
        }
        throw new Invalid(i);
      }
    }
  }

  if (state !== State.End) return { status: 'incomplete' };
  while (i < limit && isWhitespace(buf[i])) i++;
  return { status: 'complete', value: root, end: i, valueCount: count };
}

function setMember(obj: Record<string, unknown>, key: string, value: unknown): void {
  if (Object.prototype.hasOwnProperty.call(obj, key)) {
    const holder = obj as { [DUPLICATE_KEYS]?: Set<string> };
    let dups = holder[DUPLICATE_KEYS];
    if (dups === undefined) {
      dups = new Set();
      Object.defineProperty(obj, DUPLICATE_KEYS, { value: dups, enumerable: false });
    }
    dups.add(key);
  }
  if (key === '__proto__') {
    Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
  } else {
    obj[key] = value;
  }
}

/** json_valid_number: the length of the number at `start`; a number may end at `limit`. */
function numberLength(buf: Uint8Array, start: number, limit: number): number {
  let p = start;
  const isDigit = (x: number): boolean => x >= 0x30 && x <= 0x39;
  const fail = (): never => {
    throw p >= limit ? INCOMPLETE : new Invalid(p);
  };
  const digits = (): void => {
    while (p < limit && isDigit(buf[p])) p++;
  };

  if (buf[p] === 0x2d) p++;
  if (p >= limit) fail();
  if (buf[p] === 0x30) {
    p++;
  } else if (isDigit(buf[p])) {
    digits();
  } else {
    fail();
  }
  if (p < limit && buf[p] === 0x2e) {
    p++;
    if (p >= limit || !isDigit(buf[p])) fail();
    digits();
  }
  if (p < limit && (buf[p] === 0x65 || buf[p] === 0x45)) {
    p++;
    if (p < limit && (buf[p] === 0x2b || buf[p] === 0x2d)) p++;
    if (p >= limit || !isDigit(buf[p])) fail();
    digits();
  }
  return p - start;
}

/** Scans the string whose opening quote is at `start`; returns its value and the next offset. */
function scanString(buf: Uint8Array, start: number, limit: number): [string, number] {
  const parts: string[] = [];
  let p = start + 1;
  let segment = p;
  const flush = (): void => {
    if (p > segment) parts.push(Buffer.from(buf.buffer, buf.byteOffset + segment, p - segment).toString('utf8'));
  };

  while (p < limit) {
    const c = buf[p];
    if (c === 0x22) {
      flush();
      return [parts.join(''), p + 1];
    }
    if (c === 0x5c) {
      flush();
      if (limit - p < 2) throw INCOMPLETE;
      const simple = TWO_CHAR_ESCAPES[buf[p + 1]];
      if (simple !== undefined) {
        parts.push(simple);
        p += 2;
      } else {
        const [codePoint, next] = unicodeEscape(buf, p, limit);
        parts.push(String.fromCodePoint(codePoint));
        p = next;
      }
      segment = p;
    } else if (c <= 0x1f) {
      throw new Invalid(p); // control characters must be escaped
    } else {
      p += utf8SequenceLength(buf, p, limit);
    }
  }
  throw INCOMPLETE;
}

/** A `\uXXXX` escape, or a surrogate pair of two, starting at the backslash at `start`. */
function unicodeEscape(buf: Uint8Array, start: number, limit: number): [number, number] {
  const readOne = (at: number): number => {
    if (buf[at] !== 0x5c) throw new Invalid(at);
    if (at + 1 >= limit) throw INCOMPLETE;
    if (buf[at + 1] !== 0x75) throw new Invalid(at + 1);
    let v = 0;
    for (let k = 2; k < 6; k++) {
      if (at + k >= limit) throw INCOMPLETE;
      const h = hexValue(buf[at + k]);
      if (h < 0) throw new Invalid(at + k);
      v = (v << 4) | h;
    }
    return v;
  };
  const first = readOne(start);
  if (first >= 0xdc00 && first <= 0xdfff) throw new Invalid(start); // low half without a high half
  if (first < 0xd800 || first > 0xdbff) return [first, start + 6];
  if (start + 6 >= limit) throw INCOMPLETE;
  const second = readOne(start + 6);
  if (second < 0xdc00 || second > 0xdfff) throw new Invalid(start + 6);
  return [0x10000 + ((first - 0xd800) << 10) + (second - 0xdc00), start + 12];
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  return -1;
}

/**
 * utf8_valid from SPDK's utf.h: the length of the well-formed UTF-8 sequence at `p` (no overlong
 * forms, no surrogates, nothing above U+10FFFF). SPDK calls a sequence cut off by the end of its
 * receive buffer invalid, which makes a multi-byte character that straddles two reads a parse
 * error; here it is "incomplete" instead, so the result does not depend on how the kernel split
 * the stream.
 */
function utf8SequenceLength(buf: Uint8Array, p: number, limit: number): number {
  const b0 = buf[p];
  if (b0 <= 0x7f) return 1;
  if (b0 <= 0xc1 || b0 > 0xf4) throw new Invalid(p);
  const len = b0 <= 0xdf ? 2 : b0 <= 0xef ? 3 : 4;
  if (p + len > limit) throw INCOMPLETE;
  const tail = (x: number): boolean => (x & 0xc0) === 0x80;
  const b1 = buf[p + 1];
  let ok: boolean;
  if (len === 2) {
    ok = tail(b1);
  } else if (len === 3) {
    const b2 = buf[p + 2];
    if (b0 === 0xe0) ok = b1 >= 0xa0 && b1 <= 0xbf && tail(b2);
    else if (b0 === 0xed) ok = b1 >= 0x80 && b1 <= 0x9f && tail(b2);
    else ok = tail(b1) && tail(b2);
  } else {
    const b2 = buf[p + 2];
    const b3 = buf[p + 3];
    if (b0 === 0xf0) ok = b1 >= 0x90 && b1 <= 0xbf && tail(b2) && tail(b3);
    else if (b0 === 0xf4) ok = b1 >= 0x80 && b1 <= 0x8f && tail(b2) && tail(b3);
    else ok = tail(b1) && tail(b2) && tail(b3);
  }
  if (!ok) throw new Invalid(p);
  return len;
}
