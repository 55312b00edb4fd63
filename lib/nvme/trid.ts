import * as dns from 'node:dns';
import * as net from 'node:net';
import { SpdkError } from '../errors';

/** The well-known discovery subsystem NQN (NVMe-oF 1.1, 7.2). */
export const DISCOVERY_NQN = 'nqn.2014-08.org.nvmexpress.discovery';

/**
 * Where an NVMe controller is, as SPDK's `struct spdk_nvme_transport_id` says it. The string
 * form is SPDK's (`spdk_nvme_transport_id_parse`): `key:value` pairs separated by whitespace,
 * keys in any case, e.g.
 * `trtype:TCP adrfam:IPv4 traddr:127.0.0.1 trsvcid:4420 subnqn:nqn.2016-06.io.spdk:cnode1`.
 */
export interface TransportId {
  /** 'TCP'; 'PCIe' and 'RDMA' with the libspdk engine (the builtin engine's host speaks NVMe/TCP only). */
  trtype: 'TCP' | 'PCIe' | 'RDMA';
  /** 'IPv4' (default) or 'IPv6'. */
  adrfam?: 'IPv4' | 'IPv6';
  /** The target's address (an IP address, or a host name that resolves to one); PCIe: the device's BDF (0000:01:00.0). */
  traddr: string;
  /** The TCP port (default 4420). */
  trsvcid?: string | number;
  /** The subsystem NQN (default: the discovery subsystem). */
  subnqn?: string;
  /** The host NQN to connect as (overrides the connect option). */
  hostnqn?: string;
  /** spdk_nvme_perf's `ns:` key: the namespace to use (perf only). */
  ns?: number;
}

/** A transport ID with every default applied. */
export interface ResolvedTransportId {
  trtype: 'TCP' | 'PCIe' | 'RDMA';
  adrfam: 'IPv4' | 'IPv6';
  traddr: string;
  trsvcid: string;
  subnqn: string;
  hostnqn?: string;
  ns?: number;
}

const KEYS = ['trtype', 'adrfam', 'traddr', 'trsvcid', 'subnqn', 'hostnqn', 'ns', 'priority'] as const;

function bad(msg: string): SpdkError {
  return SpdkError.invalidArg('nvme.transportId', msg);
}

/**
 * Parses SPDK's string form into a TransportId (keys are matched case-insensitively; `:` or
 * `=` separates a key from its value; IPv6 addresses keep their colons).
 *
 * @example
 * parseTransportId('trtype:TCP adrfam:IPv4 traddr:127.0.0.1 trsvcid:4420 subnqn:nqn.2016-06.io.spdk:cnode1')
 */
export function parseTransportId(text: string): TransportId {
  if (typeof text !== 'string') throw bad('a transport ID is a string or an object');
  const out: Record<string, string> = {};
  const words = text.trim().split(/\s+/).filter(Boolean);
  if (words.length === 0) throw bad('empty transport ID');
  for (const w of words) {
    const m = /^([A-Za-z_]+)[:=](.*)$/.exec(w);
    if (!m) throw bad(`'${w}' is not a key:value pair (expected e.g. traddr:127.0.0.1)`);
    const key = m[1].toLowerCase();
    if (!(KEYS as readonly string[]).includes(key)) throw bad(`unknown key '${m[1]}' in transport ID (known: ${KEYS.join(', ')})`);
    if (m[2] === '') throw bad(`key '${m[1]}' has no value`);
    if (key in out) throw bad(`key '${m[1]}' given twice`);
    out[key] = m[2];
  }
  const trtype = canonicalTrtype(out.trtype ?? (out.traddr ? 'TCP' : ''));
  const adrfam = out.adrfam === undefined ? undefined : canonicalAdrfam(out.adrfam);
  if (!out.traddr) throw bad('transport ID has no traddr');
  const tr: TransportId = { trtype, traddr: out.traddr };
  if (adrfam) tr.adrfam = adrfam;
  if (out.trsvcid !== undefined) tr.trsvcid = out.trsvcid;
  if (out.subnqn !== undefined) tr.subnqn = out.subnqn;
  if (out.hostnqn !== undefined) tr.hostnqn = out.hostnqn;
  if (out.ns !== undefined) {
    const ns = Number(out.ns);
    if (!Number.isSafeInteger(ns) || ns < 1 || ns > 0xfffffffe) throw bad(`ns '${out.ns}' is not a namespace ID`);
    tr.ns = ns;
  }
  return tr;
}

function canonicalTrtype(v: string): 'TCP' | 'PCIe' | 'RDMA' {
  switch (v.toLowerCase()) {
    case 'tcp':
      return 'TCP';
    case 'pcie':
      return 'PCIe';
    case 'rdma':
      return 'RDMA';
    case '':
      throw bad('transport ID has no trtype');
    default:
      throw bad(`unknown trtype '${v}' (TCP, RDMA or PCIe)`);
  }
}

function canonicalAdrfam(v: string): 'IPv4' | 'IPv6' {
  switch (v.toLowerCase()) {
    case 'ipv4':
      return 'IPv4';
    case 'ipv6':
      return 'IPv6';
    default:
      throw bad(`adrfam '${v}' is not supported (IPv4 or IPv6)`);
  }
}

/**
 * Checks a string or object transport ID and applies the defaults (trsvcid 4420, subnqn
 * discovery). PCIe and RDMA are accepted with `{ anyTransport: true }` (the libspdk engine, whose
 * SPDK driver speaks them); otherwise they throw ENOTSUP.
 */
export function normalizeTransportId(t: string | TransportId, opts: { anyTransport?: boolean } = {}): ResolvedTransportId {
  const tr = typeof t === 'string' ? parseTransportId(t) : t;
  if (tr === null || typeof tr !== 'object') throw bad('a transport ID is a string or an object');
  const trtype = canonicalTrtype(String(tr.trtype ?? 'TCP'));
  if (trtype !== 'TCP' && !opts.anyTransport) {
    throw new SpdkError(`trtype ${trtype} needs the libspdk engine; the builtin engine's host speaks NVMe/TCP`, { code: 'ENOTSUP', errno: 95, op: 'nvme.connect' });
  }
  if (typeof tr.traddr !== 'string' || tr.traddr === '') throw bad('traddr must be a non-empty string');
  if (trtype === 'PCIe') {
    // A local device: its PCI address; SPDK's driver checks it (and answers for a wrong one).
    if (!/^([0-9a-f]{4,8}:)?[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/i.test(tr.traddr)) throw bad(`traddr '${tr.traddr}' is not a PCI address (e.g. 0000:01:00.0)`);
    const pcie: ResolvedTransportId = { trtype, adrfam: 'IPv4', traddr: tr.traddr, trsvcid: '', subnqn: tr.subnqn ?? '' };
    if (tr.hostnqn !== undefined) pcie.hostnqn = tr.hostnqn;
    if (tr.ns !== undefined) pcie.ns = tr.ns;
    return pcie;
  }
  let adrfam = tr.adrfam === undefined ? undefined : canonicalAdrfam(String(tr.adrfam));
  const ipv = net.isIP(tr.traddr);
  if (ipv === 6 && adrfam === 'IPv4') throw bad(`traddr ${tr.traddr} is an IPv6 address but adrfam is IPv4`);
  if (ipv === 4 && adrfam === 'IPv6') throw bad(`traddr ${tr.traddr} is an IPv4 address but adrfam is IPv6`);
  adrfam ??= ipv === 6 ? 'IPv6' : 'IPv4';
  const port = tr.trsvcid === undefined ? 4420 : Number(tr.trsvcid);
  if (!Number.isInteger(port) || port < 1 || port > 65535 || (typeof tr.trsvcid === 'string' && !/^\d+$/.test(tr.trsvcid))) {
    throw bad(`trsvcid '${String(tr.trsvcid)}' is not a TCP port`);
  }
  const subnqn = tr.subnqn ?? DISCOVERY_NQN;
  checkNqn(subnqn, 'subnqn');
  if (tr.hostnqn !== undefined) checkNqn(tr.hostnqn, 'hostnqn');
  const out: ResolvedTransportId = { trtype, adrfam, traddr: tr.traddr, trsvcid: String(port), subnqn };
  if (tr.hostnqn !== undefined) out.hostnqn = tr.hostnqn;
  if (tr.ns !== undefined) out.ns = tr.ns;
  return out;
}

/** NQN rules the target also applies (NVMe base 2.0, 4.5): 'nqn.' prefix, at most 223 bytes. */
export function checkNqn(nqn: unknown, what: string): void {
  if (typeof nqn !== 'string' || nqn.length === 0) throw bad(`${what} must be a non-empty string`);
  if (Buffer.byteLength(nqn) > 223) throw bad(`${what} is longer than 223 bytes`);
  if (!nqn.startsWith('nqn.')) throw bad(`${what} '${nqn}' does not start with 'nqn.'`);
}

/** The numeric address to connect to (host names are resolved, as SPDK's getaddrinfo does). */
export async function resolveAddress(tr: ResolvedTransportId): Promise<{ address: string; family: 4 | 6 }> {
  const ipv = net.isIP(tr.traddr);
  if (ipv !== 0) return { address: tr.traddr, family: ipv as 4 | 6 };
  try {
    const r = await dns.promises.lookup(tr.traddr, { family: tr.adrfam === 'IPv6' ? 6 : 4 });
    return { address: r.address, family: r.family as 4 | 6 };
  } catch (e) {
    throw new SpdkError(`cannot resolve traddr '${tr.traddr}': ${(e as Error).message}`, { errno: 22, op: 'nvme.connect', code: 'EINVAL' });
  }
}

/** SPDK's string form of a transport ID. */
export function formatTransportId(tr: ResolvedTransportId): string {
  if (tr.trtype === 'PCIe') return `trtype:PCIe traddr:${tr.traddr}`;
  return `trtype:${tr.trtype} adrfam:${tr.adrfam} traddr:${tr.traddr} trsvcid:${tr.trsvcid} subnqn:${tr.subnqn}`;
}
