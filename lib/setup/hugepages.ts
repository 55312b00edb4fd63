/**
 * Hugepages: what the kernel has reserved (per page size, per NUMA node), where hugetlbfs is
 * mounted, and changing the number of 2 MiB pages.
 *
 * Counts: `total` is the kernel's nr_hugepages (persistent pages plus surplus ones), `surplus`
 * the pages above the persistent pool (overcommit, or pages still in use after the pool was
 * shrunk). The persistent pool, `total - surplus`, is what `--hugepages` sets and `--reset`
 * restores. /proc/sys/vm/nr_hugepages reads back that persistent count for the default size.
 */
import { SpdkError } from '../errors';
import type { Host } from './host';
import { parseSizeKiB, readMounts } from './mounts';
import { saveState, SetupState } from './state';

export interface HugepageCounts {
  total: number;
  free: number;
  surplus: number;
}

export interface HugepageSize extends HugepageCounts {
  sizeKiB: number;
  /** Pages promised to mappings but not faulted in yet (resv_hugepages). */
  reserved: number;
  /** Per NUMA node, when /sys/devices/system/node exists. */
  nodes: Array<HugepageCounts & { node: number }>;
}

export interface HugetlbfsMount {
  mountpoint: string;
  /** The mount's page size in KiB (its pagesize= option, else the default size). */
  pagesizeKiB: number | null;
  options: string[];
}

export interface HugepagesStatus {
  /** Hugepagesize from /proc/meminfo, in KiB (null when the kernel has no hugetlb). */
  defaultSizeKiB: number | null;
  sizes: HugepageSize[];
  mounts: HugetlbfsMount[];
}

export interface HugepagesResult {
  /** The file written. */
  file: string;
  sizeKiB: number;
  /** Persistent pages before. */
  before: number;
  requested: number;
  /** Persistent pages the kernel reserved (undefined in a dry run). */
  reserved?: number;
  /** Where hugetlbfs was mounted by this call, if it was. */
  mounted?: string;
  /** hugetlbfs mount points that were already there. */
  mounts: string[];
}

/** The page size spdk-node sets: 2 MiB, what SPDK and DPDK use by default. */
export const PAGE_KIB = 2048;
export const MOUNTPOINT = '/dev/hugepages';

const sizeDir = (kib: number): string => `/sys/kernel/mm/hugepages/hugepages-${kib}kB`;

function counts(host: Host, dir: string): HugepageCounts {
  return {
    total: host.readInt(`${dir}/nr_hugepages`) ?? 0,
    free: host.readInt(`${dir}/free_hugepages`) ?? 0,
    surplus: host.readInt(`${dir}/surplus_hugepages`) ?? 0,
  };
}

export function defaultSizeKiB(host: Host): number | null {
  const m = /^Hugepagesize:\s*(\d+)\s*kB/m.exec(host.read('/proc/meminfo') ?? '');
  return m ? Number(m[1]) : null;
}

export function hugetlbfsMounts(host: Host, defaultKiB = defaultSizeKiB(host)): HugetlbfsMount[] {
  return readMounts(host)
    .filter((m) => m.fstype === 'hugetlbfs')
    .map((m) => {
      const opt = m.options.find((o) => o.startsWith('pagesize='));
      const size = opt === undefined ? defaultKiB : parseSizeKiB(opt.slice('pagesize='.length)) ?? null;
      return { mountpoint: m.mountpoint, pagesizeKiB: size, options: m.options };
    });
}

export function hugepagesStatus(host: Host): HugepagesStatus {
  const defaultKiB = defaultSizeKiB(host);
  const nodes = host
    .list('/sys/devices/system/node')
    .filter((n) => /^node\d+$/.test(n))
    .map((n) => Number(n.slice(4)))
    .sort((a, b) => a - b);
  const sizes: HugepageSize[] = [];
  for (const entry of host.list('/sys/kernel/mm/hugepages')) {
    const m = /^hugepages-(\d+)kB$/.exec(entry);
    if (!m) continue;
    const kib = Number(m[1]);
    const dir = sizeDir(kib);
    sizes.push({
      sizeKiB: kib,
      ...counts(host, dir),
      reserved: host.readInt(`${dir}/resv_hugepages`) ?? 0,
      nodes: nodes
        .filter((n) => host.exists(`/sys/devices/system/node/node${n}/hugepages/hugepages-${kib}kB`))
        .map((n) => ({ node: n, ...counts(host, `/sys/devices/system/node/node${n}/hugepages/hugepages-${kib}kB`) })),
    });
  }
  sizes.sort((a, b) => a.sizeKiB - b.sizeKiB);
  return { defaultSizeKiB: defaultKiB, sizes, mounts: hugetlbfsMounts(host, defaultKiB) };
}

/** The pool of persistent pages of one size (nr_hugepages less the surplus). */
function persistent(host: Host, kib: number): number {
  const c = counts(host, sizeDir(kib));
  return c.total - c.surplus;
}

/** Where the count of 2 MiB pages is written: the sysctl when 2 MiB is the default size. */
function countFile(host: Host): string {
  if (!host.exists(sizeDir(PAGE_KIB))) {
    throw new SpdkError(`this kernel offers no 2 MiB hugepages (${sizeDir(PAGE_KIB)} does not exist): it needs CONFIG_HUGETLBFS on an architecture with 2 MiB pages`, { code: 'ENOTSUP', errno: 95, op: 'setup.hugepages' });
  }
  return defaultSizeKiB(host) === PAGE_KIB && host.exists('/proc/sys/vm/nr_hugepages') ? '/proc/sys/vm/nr_hugepages' : `${sizeDir(PAGE_KIB)}/nr_hugepages`;
}

/**
 * Sets the persistent pool of 2 MiB pages to `pages`, reads back what the kernel reserved, and
 * mounts hugetlbfs at /dev/hugepages when no hugetlbfs is mounted. The original count (and the
 * mount) go into the state first, so a failure half-way can still be reset.
 */
export async function setHugepages(host: Host, state: SetupState, pages: number): Promise<HugepagesResult> {
  if (!Number.isSafeInteger(pages) || pages < 0) throw SpdkError.invalidArg('setup.hugepages', `invalid number of hugepages: ${pages}`);
  const file = countFile(host);
  const before = persistent(host, PAGE_KIB);
  if (state.hugepages === undefined) {
    state.hugepages = { file, original: before };
    saveState(host, state);
  }
  host.write(file, `${pages}\n`, 'setup.hugepages');
  const result: HugepagesResult = { file, sizeKiB: PAGE_KIB, before, requested: pages, mounts: hugetlbfsMounts(host).map((m) => m.mountpoint) };
  if (!host.dryRun) result.reserved = persistent(host, PAGE_KIB);
  if (result.mounts.length === 0) result.mounted = await mountHugetlbfs(host, state);
  return result;
}

async function mountHugetlbfs(host: Host, state: SetupState): Promise<string> {
  const createdDir = !host.exists(MOUNTPOINT);
  if (createdDir) host.mkdir(MOUNTPOINT);
  const args = ['-t', 'hugetlbfs', '-o', 'pagesize=2M', 'nodev', host.p(MOUNTPOINT)];
  const r = await host.run('mount', args);
  const by = `(mount ${args.join(' ')})`;
  if (r.error) throw new SpdkError(`cannot run mount ${by}: ${r.error.message}: install util-linux's mount, or mount hugetlbfs yourself`, { code: 'ENOENT', errno: 2, op: 'setup.hugepages' });
  if (r.status !== 0) throw new SpdkError(`mounting hugetlbfs at ${MOUNTPOINT} failed ${by}: ${r.stderr.trim() || `exit status ${r.status}`}; mount a hugetlbfs yourself and run again`, { code: 'ERR_MOUNT', op: 'setup.hugepages' });
  if (!host.dryRun && !hugetlbfsMounts(host).some((m) => m.mountpoint === MOUNTPOINT)) {
    throw new SpdkError(`mount reported success but /proc/mounts shows no hugetlbfs at ${MOUNTPOINT}`, { code: 'ERR_MOUNT', op: 'setup.hugepages' });
  }
  state.hugetlbfs = { mountpoint: MOUNTPOINT, createdDir };
  saveState(host, state);
  return MOUNTPOINT;
}

export interface HugepagesRestore {
  file?: string;
  restoredTo?: number;
  /** Persistent pages after the restore (undefined in a dry run). */
  now?: number;
  unmounted?: string;
}

/**
 * Undoes setHugepages: unmounts the hugetlbfs it mounted (and removes the directory it made),
 * then writes back the original count. Each part leaves the state once it is done.
 */
export async function restoreHugepages(host: Host, state: SetupState): Promise<HugepagesRestore> {
  const out: HugepagesRestore = {};
  if (state.hugetlbfs) {
    const { mountpoint, createdDir } = state.hugetlbfs;
    if (hugetlbfsMounts(host).some((m) => m.mountpoint === mountpoint)) {
      const r = await host.run('umount', [host.p(mountpoint)]);
      if (r.error || r.status !== 0) {
        throw new SpdkError(`umount ${mountpoint} failed: ${r.error?.message ?? (r.stderr.trim() || `exit status ${r.status}`)}; stop the programs using hugepages (SPDK applications) and run --reset again`, { code: 'EBUSY', errno: 16, op: 'setup.reset' });
      }
      out.unmounted = mountpoint;
    }
    if (createdDir && host.exists(mountpoint) && host.list(mountpoint).length === 0) host.rmdir(mountpoint);
    state.hugetlbfs = undefined;
    saveState(host, state);
  }
  if (state.hugepages) {
    const { file, original } = state.hugepages;
    host.write(file, `${original}\n`, 'setup.reset');
    out.file = file;
    out.restoredTo = original;
    if (!host.dryRun) out.now = persistent(host, PAGE_KIB);
    state.hugepages = undefined;
    saveState(host, state);
  }
  return out;
}
