/**
 * The state file: what `spdk-node setup` changed and what was there before, so `--unbind` and
 * `--reset` put the machine back. Only the first change of a thing records its original value:
 * binding a device twice, or asking for hugepages twice, still restores what the machine had
 * before spdk-node touched it.
 */
import { SpdkError } from '../errors';
import type { Host } from './host';

export interface SetupState {
  version: 1;
  /** Set once hugepages were changed. */
  hugepages?: {
    /** The file that was written (/proc/sys/vm/nr_hugepages or a per-size sysfs file). */
    file: string;
    /** Its value before the first change. */
    original: number;
  };
  /** Set when spdk-node mounted hugetlbfs. */
  hugetlbfs?: {
    mountpoint: string;
    /** The mount point directory was created too (removed again by --reset). */
    createdDir: boolean;
  };
  /** Devices spdk-node bound, by BDF. */
  devices: Record<string, { driver: string; originalDriver: string | null }>;
}

export function emptyState(): SetupState {
  return { version: 1, devices: {} };
}

export function loadState(host: Host): SetupState {
  const text = host.readState();
  if (text === undefined) return emptyState();
  try {
    const s = JSON.parse(text) as SetupState;
    if (s.version !== 1 || typeof s.devices !== 'object' || s.devices === null) throw new Error('unknown layout');
    return s;
  } catch (e) {
    throw new SpdkError(`the state file ${host.stateFile} is not spdk-node's (${(e as Error).message}): move it away, and restore by hand what it recorded`, { code: 'ERR_STATE', op: 'setup' });
  }
}

/** Writes the state, or removes the file when nothing is recorded any more. */
export function saveState(host: Host, s: SetupState): void {
  const empty = s.hugepages === undefined && s.hugetlbfs === undefined && Object.keys(s.devices).length === 0;
  if (empty && host.readState() === undefined) return;
  host.writeState(empty ? undefined : `${JSON.stringify(s, null, 2)}\n`);
}
