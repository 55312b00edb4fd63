/**
 * How the provisioner's state is written into the storage: lvol names (at most 63 bytes, the
 * blobstore's limit) in the pools it manages, and NVMe-oF subsystem NQNs. Nothing else is kept:
 * a restarted provisioner reads these back (docs/provisioning.md, "State in the storage").
 *
 * | lvol name                                   | what it is                                      |
 * | ------------------------------------------- | ----------------------------------------------- |
 * | `<volume name>`                             | a volume (writable lvol), name verbatim         |
 * | `<encoded snapshot name>@<src><time>`       | a snapshot of volume `src` taken at `time`      |
 * | `__clone-<8 hex>@<src><time>`               | hidden snapshot a volume-to-volume clone reads  |
 * | `__tmp-<16 hex>`                            | a volume being built (renamed when complete)    |
 * | `__spdk_node_provisioner.<owner>.<epoch>`   | the pool's owner marker (single writer)         |
 *
 * `<src>` is the source volume's lvol UUID as 22 base64url characters, `<time>` the creation
 * time in seconds since the epoch as 7 base36 digits. A snapshot name is encoded by writing each
 * lower-case UUID in it as `~` and its 22 base64url characters (`snapshot-<uuid>` takes 32 bytes),
 * so names such as Kubernetes' `snapshot-<uuid>` fit beside the source and the time.
 */
import * as crypto from 'node:crypto';
import { isValidNqn } from '../nvmf/names';

/** The blobstore's name limit (SPDK_LVOL_NAME_MAX - 1), in bytes. */
export const LVOL_NAME_MAX = 63;
/** What volume, snapshot, node and owner names may hold. */
const NAME_RE = /^[A-Za-z0-9._-]+$/;
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const UUID_IN_NAME = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g;
const B64_UUID_LEN = 22;
const TIME_LEN = 7;
/** '@' + source + time. */
const SNAPSHOT_SUFFIX_LEN = 1 + B64_UUID_LEN + TIME_LEN;
/** The longest encoded snapshot name. */
export const SNAPSHOT_NAME_MAX = LVOL_NAME_MAX - SNAPSHOT_SUFFIX_LEN;

export const MARKER_PREFIX = '__spdk_node_provisioner.';
const TMP_PREFIX = '__tmp-';
const HIDDEN_PREFIX = '__clone-';
const EPOCH_LEN = 8;
/** The longest owner id: the marker name must fit in 63 bytes. */
export const OWNER_MAX = LVOL_NAME_MAX - MARKER_PREFIX.length - 1 - EPOCH_LEN;

export function isUuid(s: string): boolean {
  return UUID_RE.test(s);
}

/**
 * Why `name` cannot name a volume (or snapshot, node, owner), or undefined when it can: 1 to
 * `max` bytes of letters, digits, '.', '_' and '-', not starting with "__" (reserved for the
 * provisioner's own lvols).
 */
export function nameProblem(what: string, name: unknown, max = LVOL_NAME_MAX): string | undefined {
  if (typeof name !== 'string') return `${what} must be a string`;
  if (name.length === 0) return `${what} must not be empty`;
  if (!NAME_RE.test(name)) return `${what} '${name}' may hold only letters, digits, '.', '_' and '-'`;
  if (name.startsWith('__')) return `${what} '${name}' must not start with "__" (reserved for the provisioner's own lvols)`;
  if (name.length > max) return `${what} '${name}' is ${name.length} bytes; at most ${max}`;
  return undefined;
}

/** A UUID as 22 base64url characters (its 16 bytes). */
export function uuidToB64(uuid: string): string {
  return Buffer.from(uuid.replace(/-/g, ''), 'hex').toString('base64url');
}

/** The inverse of uuidToB64 (lower case), or undefined when `s` is not one's output. */
export function b64ToUuid(s: string): string | undefined {
  if (s.length !== B64_UUID_LEN || !/^[A-Za-z0-9_-]+$/.test(s)) return undefined;
  const b = Buffer.from(s, 'base64url');
  if (b.length !== 16 || b.toString('base64url') !== s) return undefined;
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** A snapshot name as written in its lvol name (each lower-case UUID as '~' + 22 characters). */
export function encodeSnapshotName(name: string): string {
  return name.replace(UUID_IN_NAME, (u) => (u === u.toLowerCase() ? `~${uuidToB64(u)}` : u));
}

/** The inverse of encodeSnapshotName, or undefined when `s` is not one's output. */
export function decodeSnapshotName(s: string): string | undefined {
  let bad = false;
  const out = s.replace(/~([A-Za-z0-9_-]{22})/g, (_, b: string) => {
    const u = b64ToUuid(b);
    if (u === undefined) bad = true;
    return u ?? '';
  });
  if (bad || out.includes('~') || nameProblem('', out, Infinity) !== undefined) return undefined;
  return encodeSnapshotName(out) === s ? out : undefined;
}

/** Why `name` cannot name a snapshot, or undefined. */
export function snapshotNameProblem(name: unknown): string | undefined {
  const p = nameProblem('snapshot name', name, Infinity);
  if (p !== undefined) return p;
  const enc = encodeSnapshotName(name as string);
  if (enc.length > SNAPSHOT_NAME_MAX) {
    return `snapshot name '${name as string}' takes ${enc.length} bytes in storage (each lower-case UUID in it takes 23); at most ${SNAPSHOT_NAME_MAX}`;
  }
  return undefined;
}

function timeToB36(seconds: number): string {
  return Math.max(0, Math.floor(seconds)).toString(36).padStart(TIME_LEN, '0').slice(-TIME_LEN);
}

/** The lvol name of a snapshot named `name` of the volume whose lvol UUID is `source`. */
export function snapshotLvolName(name: string, source: string, createdAt: Date): string {
  return `${encodeSnapshotName(name)}@${uuidToB64(source)}${timeToB36(createdAt.getTime() / 1000)}`;
}

/** The lvol name of a hidden snapshot taken of `source` to clone it into a new volume. */
export function hiddenSnapshotLvolName(source: string, createdAt: Date): string {
  return `${HIDDEN_PREFIX}${crypto.randomBytes(4).toString('hex')}@${uuidToB64(source)}${timeToB36(createdAt.getTime() / 1000)}`;
}

/** A fresh temporary lvol name: a volume is built under it and renamed when complete. */
export function tempLvolName(): string {
  return `${TMP_PREFIX}${crypto.randomBytes(8).toString('hex')}`;
}

/** The owner marker's lvol name. */
export function markerLvolName(owner: string, epoch: string): string {
  return `${MARKER_PREFIX}${owner}.${epoch}`;
}

/** A fresh epoch: every start of a provisioner claims its pools under a new one. */
export function newEpoch(): string {
  return crypto.randomBytes(EPOCH_LEN / 2).toString('hex');
}

/** What an lvol name says, as the provisioner wrote it. */
export type ParsedLvolName =
  | { kind: 'volume'; name: string }
  | { kind: 'snapshot'; name: string; source: string; createdAt: Date }
  | { kind: 'hidden'; source: string; createdAt: Date }
  | { kind: 'temp' }
  | { kind: 'marker'; owner: string; epoch: string }
  | { kind: 'foreign' };

/**
 * Reads an lvol name back. `snapshot` is whether the lvol is a snapshot (read-only): volumes and
 * temporaries are writable, snapshot records read-only; anything else is foreign.
 */
export function parseLvolName(lvolName: string, snapshot: boolean): ParsedLvolName {
  if (lvolName.startsWith(MARKER_PREFIX)) {
    const rest = lvolName.slice(MARKER_PREFIX.length);
    const dot = rest.lastIndexOf('.');
    if (!snapshot && dot > 0 && rest.length - dot - 1 === EPOCH_LEN) return { kind: 'marker', owner: rest.slice(0, dot), epoch: rest.slice(dot + 1) };
    return { kind: 'foreign' };
  }
  if (lvolName.startsWith(TMP_PREFIX)) return snapshot ? { kind: 'foreign' } : { kind: 'temp' };
  const at = lvolName.lastIndexOf('@');
  if (at >= 0) {
    if (!snapshot || lvolName.length - at !== SNAPSHOT_SUFFIX_LEN) return { kind: 'foreign' };
    const source = b64ToUuid(lvolName.slice(at + 1, at + 1 + B64_UUID_LEN));
    const t = lvolName.slice(at + 1 + B64_UUID_LEN);
    if (source === undefined || !/^[0-9a-z]+$/.test(t)) return { kind: 'foreign' };
    const createdAt = new Date(parseInt(t, 36) * 1000);
    const head = lvolName.slice(0, at);
    if (head.startsWith(HIDDEN_PREFIX)) {
      return /^[0-9a-f]{8}$/.test(head.slice(HIDDEN_PREFIX.length)) ? { kind: 'hidden', source, createdAt } : { kind: 'foreign' };
    }
    const name = decodeSnapshotName(head);
    return name === undefined ? { kind: 'foreign' } : { kind: 'snapshot', name, source, createdAt };
  }
  if (!snapshot && nameProblem('', lvolName) === undefined) return { kind: 'volume', name: lvolName };
  return { kind: 'foreign' };
}

/** The default NQN prefix: a volume's NQN is this followed by its lvol UUID. */
export const DEFAULT_NQN_PREFIX = 'nqn.2016-06.io.spdk-node:vol:';

/** Why `prefix` cannot prefix NQNs, or undefined. */
export function nqnPrefixProblem(prefix: unknown): string | undefined {
  if (typeof prefix !== 'string') return 'nqnPrefix must be a string';
  if (!isValidNqn(`${prefix}00000000-0000-0000-0000-000000000000`)) return `nqnPrefix '${prefix}' followed by a UUID is not a valid NQN`;
  return undefined;
}

/**
 * A volume's serial number: the first 20 hex digits of its UUID, so it is stable (the same on every
 * export and after restarts) and distinct per volume (udev's /dev/disk/by-id/nvme-<model>_<serial>).
 */
export function serialNumberOf(uuid: string): string {
  return uuid.replace(/-/g, '').slice(0, 20);
}
