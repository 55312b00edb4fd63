/**
 * The checks SPDK v25.09 makes on NVMe-oF names and identifiers (lib/nvmf/subsystem.c,
 * lib/nvmf/nvmf_rpc.c, lib/nvmf/tcp.c), as pure functions. Lengths are in bytes, as SPDK's
 * strlen counts them.
 */

/** SPDK_NVMF_DISCOVERY_NQN. */
export const DISCOVERY_NQN = 'nqn.2014-08.org.nvmexpress.discovery';

const NQN_MIN_LEN = 11;
const NQN_MAX_LEN = 223;
const NQN_UUID_PRE = 'nqn.2014-08.org.nvmexpress:uuid:';
const DOMAIN_LABEL_MAX_LEN = 63;
/** Serial number and model number field sizes of Identify Controller. */
export const SN_MAX_LEN = 20;
export const MN_MAX_LEN = 40;
/** Transport address and service id buffers of spdk_nvme_transport_id (with their NUL). */
export const TRADDR_MAX_LEN = 255;
export const TRSVCID_MAX_LEN = 31;
/** SPDK_NVMF_TRSTRING_MAX_LEN. */
export const TRSTRING_MAX_LEN = 32;

// libuuid's uuid_parse (spdk_uuid_parse): 36 characters, hyphens at 8/13/18/23, hex elsewhere.
const UUID_RE = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

const isDigit = (c: number): boolean => c >= 0x30 && c <= 0x39;
const isAlpha = (c: number): boolean => (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);

/** True when `s` is a UUID in the text form spdk_uuid_parse accepts. */
export function isUuid(s: string): boolean {
  return UUID_RE.test(s);
}

/** Byte length of a string as SPDK's strlen sees it (UTF-8). */
export function byteLength(s: string): number {
  return Buffer.byteLength(s, 'utf8');
}

/**
 * nvmf_nqn_is_valid: 11 to 223 bytes; the discovery NQN; the UUID form
 * "nqn.2014-08.org.nvmexpress:uuid:<uuid>"; or "nqn.yyyy-mm.<reverse domain>:<user string>"
 * whose domain labels start with a letter, hold letters, digits and inner hyphens, are at most
 * 63 characters, and whose user string is valid UTF-8 (every JavaScript string encodes to valid
 * UTF-8). SPDK accepts an empty domain and a domain ending in '.', and so does this.
 */
export function isValidNqn(nqn: string): boolean {
  const b = Buffer.from(nqn, 'utf8');
  const len = b.length;
  if (len > NQN_MAX_LEN || len < NQN_MIN_LEN) return false;
  if (nqn === DISCOVERY_NQN) return true;
  if (nqn.startsWith(NQN_UUID_PRE)) {
    return len === NQN_UUID_PRE.length + 36 && UUID_RE.test(nqn.slice(NQN_UUID_PRE.length));
  }
  if (!nqn.startsWith('nqn.')) return false;
  if (!(isDigit(b[4]) && isDigit(b[5]) && isDigit(b[6]) && isDigit(b[7]) && b[8] === 0x2d && isDigit(b[9]) && isDigit(b[10]) && b[11] === 0x2e)) {
    return false;
  }
  const end = b.indexOf(0x3a); // ':'
  if (end < 0 || end >= len - 1) return false;

  // The RFC 1034 label state machine of nvmf_nqn_is_valid, byte for byte.
  const LETTER = 0;
  const LDH = 1;
  const ANY = 2;
  let state = LETTER;
  let labelLen = 0;
  for (let i = 12; i < end; i++) {
    if (labelLen > DOMAIN_LABEL_MAX_LEN) return false;
    const c = b[i];
    if (state === LETTER) {
      if (!isAlpha(c)) return false;
      state = ANY;
      labelLen++;
    } else if (isAlpha(c) || isDigit(c)) {
      state = ANY;
      labelLen++;
    } else if (c === 0x2d) {
      if (i === end - 1) return false;
      state = LDH;
      labelLen++;
    } else if (c === 0x2e && state === ANY) {
      state = LETTER;
      labelLen = 0;
    } else {
      return false;
    }
  }
  return true;
}

/**
 * spdk_nvmf_subsystem_set_sn / _set_mn: at most `max` bytes, every byte printable ASCII
 * (0x20..0x7e). An empty string is accepted, as in SPDK.
 */
export function isValidIdString(s: string, max: number): boolean {
  const b = Buffer.from(s, 'utf8');
  return b.length <= max && b.every((c) => c >= 0x20 && c <= 0x7e);
}

/**
 * decode_hex_string_be (nguid: 16 bytes, eui64: 8 bytes): exactly 2×bytes hex digits, either
 * case. Returns the canonical upper-case text SPDK writes back, or undefined.
 */
export function parseHexId(s: string, bytes: number): string | undefined {
  if (s.length !== bytes * 2 || !/^[0-9a-fA-F]*$/.test(s)) return undefined;
  return s.toUpperCase();
}

/** True when a hex identifier is all zeroes (SPDK treats it as not given). */
export function isZeroHex(s: string): boolean {
  return /^0*$/.test(s.replace(/-/g, ''));
}

/** A UUID as 32 upper-case hex digits: SPDK's default NGUID is the bdev's UUID bytes. */
export function uuidToNguid(uuid: string): string {
  return uuid.replace(/-/g, '').toUpperCase();
}

/**
 * nvmf_tcp_trsvcid_to_int: strtoull in base 10 of the whole string (leading white space and a
 * sign allowed, as strtoull does), 1..65535. Returns the port or -1.
 */
export function parseTcpPort(trsvcid: string): number {
  const m = /^[ \t\n\v\f\r]*([+-]?)([0-9]+)$/.exec(trsvcid);
  if (!m) return -1;
  // strtoull negates a '-' value modulo 2^64: never in 1..65535 unless the digits are 0, and
  // then the value is 0.
  if (m[1] === '-') return -1;
  const digits = m[2].replace(/^0+(?=\d)/, '');
  if (digits.length > 5) return -1;
  const v = Number(digits);
  return v >= 1 && v <= 65535 ? v : -1;
}
