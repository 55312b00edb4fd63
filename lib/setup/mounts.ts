/**
 * What procfs says is mounted and swapped on: /proc/mounts (source, mount point, type, options),
 * /proc/self/mountinfo (the device number of each mount, which catches a mount made through a
 * /dev/disk/by-* link or any other name) and /proc/swaps.
 */
import type { Host } from './host';

export interface MountEntry {
  source: string;
  mountpoint: string;
  fstype: string;
  options: string[];
}

/** /proc/mounts escapes space, tab, newline and backslash as octal (\040). */
function unescape(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

export function readMounts(host: Host): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of (host.read('/proc/mounts') ?? '').split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 4) continue;
    out.push({ source: unescape(f[0]), mountpoint: unescape(f[1]), fstype: f[2], options: f[3].split(',') });
  }
  return out;
}

/** Mount points by device number ('259:1'), from /proc/self/mountinfo when it exists. */
export function readMountsByDevice(host: Host): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const line of (host.read('/proc/self/mountinfo') ?? '').split('\n')) {
    // 36 35 259:1 / /data rw,relatime shared:1 - ext4 /dev/nvme0n1p1 rw
    const f = line.trim().split(/\s+/);
    if (f.length < 5 || !/^\d+:\d+$/.test(f[2])) continue;
    const list = out.get(f[2]) ?? [];
    list.push(unescape(f[4]));
    out.set(f[2], list);
  }
  return out;
}

/** Swap areas (device or file paths) from /proc/swaps. */
export function readSwaps(host: Host): string[] {
  const lines = (host.read('/proc/swaps') ?? '').split('\n').slice(1);
  return lines.map((l) => l.trim().split(/\s+/)[0]).filter((s) => s).map(unescape);
}

/** A size with an optional K/M/G suffix (hugetlbfs's pagesize=2M), in KiB. */
export function parseSizeKiB(v: string): number | undefined {
  const m = /^(\d+)([kKmMgG]?)[bB]?$/.exec(v.trim());
  if (!m) return undefined;
  const n = Number(m[1]);
  switch (m[2].toUpperCase()) {
    case 'K':
      return n;
    case 'M':
      return n * 1024;
    case 'G':
      return n * 1024 * 1024;
    default:
      return n / 1024;
  }
}
