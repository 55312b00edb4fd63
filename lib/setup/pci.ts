/**
 * PCI devices as sysfs shows them: addresses (BDFs), NVMe controllers (class 0x010802), their
 * block devices and whether anything uses those: a mount, a holder (device mapper, md, bcache)
 * or swap. Unbinding the nvme driver from a device in use pulls the disk out from under it.
 */
import { SpdkError } from '../errors';
import type { Host } from './host';
import { readMounts, readMountsByDevice, readSwaps } from './mounts';

/** PCI class code of an NVMe controller: mass storage (01), non-volatile memory (08), NVMe (02). */
export const NVME_CLASS = '0x010802';

/**
 * Checks a PCI address and returns it in sysfs's form, `dddd:bb:dd.f` in lower case. The domain
 * may be left out (`01:00.0` is `0000:01:00.0`) or be longer than four digits (VMD domains).
 */
export function parseBdf(text: string): string {
  const m = /^(?:([0-9a-fA-F]{1,8}):)?([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2})\.([0-7])$/.exec(text.trim());
  if (!m || parseInt(m[3], 16) > 0x1f) {
    throw SpdkError.invalidArg('setup', `'${text}' is not a PCI address: write it as domain:bus:device.function (0000:01:00.0) or bus:device.function (01:00.0)`);
  }
  const hex = (s: string, width: number): string => s.toLowerCase().padStart(width, '0');
  return `${hex(m[1] ?? '0', 4)}:${hex(m[2], 2)}:${hex(m[3], 2)}.${m[4]}`;
}

export interface BlockUse {
  /** The disk or partition that is used (nvme0n1p1). */
  device: string;
  kind: 'mount' | 'holder' | 'swap';
  /** The mount point, the holder's name (dm-0) or the swap area. */
  what: string;
}

export interface BlockDevice {
  name: string;
  /** major:minor from sysfs. */
  dev: string | null;
  partitions: string[];
  uses: BlockUse[];
}

export interface PciDevice {
  bdf: string;
  /** Vendor and device ID, four hex digits each (8086, 0953). */
  vendor: string;
  device: string;
  class: string;
  isNvme: boolean;
  /** The kernel's NUMA node (-1: none). */
  numaNode: number;
  /** The bound driver's name, or null. */
  driver: string | null;
  /** driver_override, or null when unset. */
  driverOverride: string | null;
  iommuGroup: number | null;
  blockDevices: BlockDevice[];
}

const devDir = (bdf: string): string => `/sys/bus/pci/devices/${bdf}`;

const hexId = (v: string | undefined): string => (v ?? '').replace(/^0x/, '').padStart(4, '0');

/** A device's sysfs view, or undefined when there is no such device. */
export function pciDevice(host: Host, bdf: string): PciDevice | undefined {
  const dir = devDir(bdf);
  if (!host.exists(dir)) return undefined;
  const cls = host.read(`${dir}/class`)?.trim() ?? '';
  const override = host.read(`${dir}/driver_override`)?.trim();
  const group = host.linkName(`${dir}/iommu_group`);
  const isNvme = cls.toLowerCase() === NVME_CLASS;
  return {
    bdf,
    vendor: hexId(host.read(`${dir}/vendor`)?.trim()),
    device: hexId(host.read(`${dir}/device`)?.trim()),
    class: cls,
    isNvme,
    numaNode: host.readInt(`${dir}/numa_node`) ?? -1,
    driver: host.linkName(`${dir}/driver`) ?? null,
    driverOverride: override === undefined || override === '' || override === '(null)' ? null : override,
    iommuGroup: group === undefined || !/^\d+$/.test(group) ? null : Number(group),
    blockDevices: isNvme ? blockDevices(host, bdf) : [],
  };
}

/** Every NVMe controller on the PCI bus, by address. */
export function nvmeDevices(host: Host): PciDevice[] {
  return host
    .list('/sys/bus/pci/devices')
    .filter((bdf) => host.read(`${devDir(bdf)}/class`)?.trim().toLowerCase() === NVME_CLASS)
    .map((bdf) => pciDevice(host, bdf) as PciDevice);
}

/**
 * The disks under a PCI device: every /sys/block entry whose sysfs directory lies below the
 * device's, plus NVMe multipath heads (nvme0n1 over the hidden path nvme0c0n1) whose
 * multipath/ links lead below it.
 */
function blockDevices(host: Host, bdf: string): BlockDevice[] {
  const base = host.realpath(devDir(bdf));
  if (base === undefined) return [];
  const under = (p: string | undefined): boolean => p !== undefined && p.startsWith(`${base}/`);
  const names = host.list('/sys/block').filter((name) => {
    if (under(host.realpath(`/sys/block/${name}`))) return true;
    return host.list(`/sys/block/${name}/multipath`).some((p) => under(host.realpath(`/sys/block/${name}/multipath/${p}`)));
  });
  if (names.length === 0) return [];
  const ctx = usageContext(host);
  return names.map((name) => {
    const partitions = host.list(`/sys/block/${name}`).filter((p) => p.startsWith(name) && host.exists(`/sys/block/${name}/${p}/partition`));
    const uses = [name, ...partitions].flatMap((d) => usesOf(host, ctx, d, d === name ? `/sys/block/${name}` : `/sys/block/${name}/${d}`));
    return { name, dev: host.read(`/sys/block/${name}/dev`)?.trim() ?? null, partitions, uses };
  });
}

interface UsageContext {
  /** Mount sources resolved to a device name, with their mount points. */
  mounts: Array<{ name: string | undefined; mountpoint: string }>;
  byDevice: Map<string, string[]>;
  swaps: Array<{ name: string | undefined; path: string }>;
}

/** The device name a /dev path stands for (following /dev/disk/by-* links), or undefined. */
function devName(host: Host, p: string): string | undefined {
  if (!p.startsWith('/dev/')) return undefined;
  const real = host.realpath(p) ?? p;
  return real.slice(real.lastIndexOf('/') + 1);
}

function usageContext(host: Host): UsageContext {
  return {
    mounts: readMounts(host).map((m) => ({ name: devName(host, m.source), mountpoint: m.mountpoint })),
    byDevice: readMountsByDevice(host),
    swaps: readSwaps(host).map((s) => ({ name: devName(host, s), path: s })),
  };
}

function usesOf(host: Host, ctx: UsageContext, name: string, sysDir: string): BlockUse[] {
  const uses: BlockUse[] = [];
  const points = new Set(ctx.mounts.filter((m) => m.name === name).map((m) => m.mountpoint));
  const dev = host.read(`${sysDir}/dev`)?.trim();
  if (dev !== undefined) for (const p of ctx.byDevice.get(dev) ?? []) points.add(p);
  for (const p of points) uses.push({ device: name, kind: 'mount', what: p });
  for (const h of host.list(`${sysDir}/holders`)) uses.push({ device: name, kind: 'holder', what: h });
  for (const s of ctx.swaps) if (s.name === name) uses.push({ device: name, kind: 'swap', what: s.path });
  return uses;
}

/** One line per use: "nvme0n1p1 is mounted at /data". */
export function describeUse(u: BlockUse): string {
  switch (u.kind) {
    case 'mount':
      return `${u.device} is mounted at ${u.what}`;
    case 'holder':
      return `${u.device} is held by ${u.what} (device mapper, md or similar)`;
    case 'swap':
      return `${u.device} is in use as swap (${u.what})`;
  }
}

export function usesOfDevice(d: PciDevice): BlockUse[] {
  return d.blockDevices.flatMap((b) => b.uses);
}
