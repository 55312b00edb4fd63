import { JsonRpcError, JSONRPC_ERROR_INTERNAL_ERROR } from './errors';
import { duplicateKeys } from './json-parse';

/**
 * Strict parameter decoding with the rules of SPDK's spdk_json_decode_object
 * (lib/json/json_util.c, v25.09):
 * - the params must be a JSON object (absent params or an array fail);
 * - a key no decoder knows fails (unless relaxed, as spdk_json_decode_object_relaxed);
 * - a key given twice fails;
 * - a required key that is missing fails;
 * - each value must have its decoder's type: strings are JSON strings without NUL
 *   (spdk_json_strdup), booleans are true/false, integers are JSON numbers with an integral
 *   value in the type's range (SPDK accepts `1.0` and `1e3` but not `1.5` or `-0` for unsigned
 *   types), `null` is never accepted.
 *
 * Deliberate limit: uint64 values must be at most 2^53-1 (JavaScript numbers are exact only up
 * to there); SPDK accepts up to 2^64-1.
 */

export type FieldType =
  | 'string'
  | 'uuid'
  | 'bool'
  | 'uint8'
  | 'uint16'
  | 'int32'
  | 'uint32'
  | 'uint64'
  | 'object'
  | 'array'
  | 'any';

/** One decoder entry: the JSON type of the value, whether it may be left out, and for strings the allowed values. */
export interface FieldSpec {
  readonly type: FieldType;
  readonly optional?: boolean;
  readonly values?: readonly string[];
}

/** Field name → decoder, like an spdk_json_object_decoder array. */
export type Schema = { readonly [name: string]: FieldSpec };

type ValueOf<F extends FieldSpec> = F['type'] extends 'string'
  ? F extends { values: readonly (infer V)[] }
    ? V
    : string
  : F['type'] extends 'uuid'
    ? string
    : F['type'] extends 'bool'
      ? boolean
      : F['type'] extends 'object'
        ? Record<string, unknown>
        : F['type'] extends 'array'
          ? unknown[]
          : F['type'] extends 'any'
            ? unknown
            : number;

/** The decoded parameters: required fields present, optional ones possibly absent. */
export type Decoded<S extends Schema> = {
  -readonly [K in keyof S as S[K]['optional'] extends true ? never : K]: ValueOf<S[K]>;
} & {
  -readonly [K in keyof S as S[K]['optional'] extends true ? K : never]?: ValueOf<S[K]>;
};

/** The message SPDK's bdev and lvol handlers answer a decode failure with (code -32603). */
export const DECODE_FAILED_MESSAGE = 'spdk_json_decode_object failed';

/** -32603 "spdk_json_decode_object failed": the decode error of most bdev methods. */
export function decodeFailed(): JsonRpcError {
  return new JsonRpcError(JSONRPC_ERROR_INTERNAL_ERROR, DECODE_FAILED_MESSAGE);
}

const INTEGER_RANGES: Record<string, [number, number]> = {
  uint8: [0, 0xff],
  uint16: [0, 0xffff],
  int32: [-0x80000000, 0x7fffffff],
  uint32: [0, 0xffffffff],
  uint64: [0, Number.MAX_SAFE_INTEGER],
};

// libuuid's uuid_parse (what spdk_uuid_parse calls): exactly 36 characters, hyphens at 8/13/18/23.
const UUID_RE = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

/** Decodes one value; returns `undefined` when it does not fit (uuids come back lower-cased). */
function decodeValue(spec: FieldSpec, v: unknown): { value: unknown } | undefined {
  switch (spec.type) {
    case 'any':
      return { value: v };
    case 'string':
      if (typeof v !== 'string' || v.includes('\0')) return undefined;
      if (spec.values && !spec.values.includes(v)) return undefined;
      return { value: v };
    case 'uuid':
      if (typeof v !== 'string' || !UUID_RE.test(v)) return undefined;
      return { value: v.toLowerCase() };
    case 'bool':
      return typeof v === 'boolean' ? { value: v } : undefined;
    case 'object':
      return v !== null && typeof v === 'object' && !Array.isArray(v) ? { value: v } : undefined;
    case 'array':
      return Array.isArray(v) ? { value: v } : undefined;
    default: {
      const [min, max] = INTEGER_RANGES[spec.type];
      if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) return undefined;
      if (min === 0 && Object.is(v, -0)) return undefined;
      return { value: v === 0 ? 0 : v };
    }
  }
}

type DecodeResult<S extends Schema> = { value: Decoded<S> } | { reason: string };

function decode<S extends Schema>(params: unknown, schema: S, opts: { relaxed?: boolean }): DecodeResult<S> {
  if (params === null || typeof params !== 'object' || Array.isArray(params)) {
    return { reason: params === undefined ? 'parameters are required' : 'parameters must be a JSON object' };
  }
  const obj = params as Record<string, unknown>;
  // A repeated key fails when a decoder knows it (both modes) or when it is unknown (strict mode
  // fails on the unknown key anyway).
  for (const key of duplicateKeys(obj)) {
    if (!opts.relaxed || Object.prototype.hasOwnProperty.call(schema, key)) return { reason: `parameter '${key}' is given twice` };
  }
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(obj)) {
    const spec = Object.prototype.hasOwnProperty.call(schema, key) ? schema[key] : undefined;
    if (spec === undefined) {
      if (opts.relaxed) continue;
      return { reason: `unknown parameter '${key}'` };
    }
    const decoded = decodeValue(spec, v);
    if (decoded === undefined) {
      const what = spec.values ? `one of ${spec.values.map((x) => `"${x}"`).join(', ')}` : `a ${spec.type}`;
      return { reason: `parameter '${key}' must be ${what}, not ${JSON.stringify(v)}` };
    }
    out[key] = decoded.value;
  }
  for (const [key, spec] of Object.entries(schema)) {
    if (!spec.optional && !Object.prototype.hasOwnProperty.call(out, key)) return { reason: `missing parameter '${key}'` };
  }
  return { value: out as Decoded<S> };
}

/**
 * Decodes `params` with `schema`; `undefined` when SPDK's decoder would fail. Use this where the
 * failure answer is built by the caller.
 */
export function tryDecodeObject<S extends Schema>(
  params: unknown,
  schema: S,
  opts: { relaxed?: boolean } = {},
): Decoded<S> | undefined {
  const r = decode(params, schema, opts);
  return 'value' in r ? r.value : undefined;
}

/**
 * Decodes `params` with `schema`, throwing `onError()` (by default -32603
 * "spdk_json_decode_object failed") when SPDK's decoder would fail. The thrown error carries a
 * `detail` naming the parameter; it never goes on the wire (SPDK's answer has no such text) but
 * the config loader and logs show it.
 */
export function decodeObject<S extends Schema>(
  params: unknown,
  schema: S,
  onError: () => Error = decodeFailed,
  opts: { relaxed?: boolean } = {},
): Decoded<S> {
  const r = decode(params, schema, opts);
  if ('value' in r) return r.value;
  const err = onError() as Error & { detail?: string };
  err.detail = r.reason;
  throw err;
}
