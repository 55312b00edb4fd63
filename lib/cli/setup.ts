/**
 * `spdk-node setup`: prepares a machine for SPDK, as SPDK's scripts/setup.sh does: hugepages
 * and a hugetlbfs mount, NVMe devices moved to vfio-pci or uio_pci_generic and back, a status
 * report, and --reset to undo what was done (recorded in a state file). docs/setup.md has the
 * details and the JSON shapes.
 *
 * Environment: SPDK_NODE_SETUP_STATE names the state file (default /var/lib/spdk-node/setup.json);
 * SPDK_NODE_SETUP_ROOT (tests only) resolves every /sys, /proc, /dev and /lib/modules path and
 * the state file under another directory.
 */
import * as path from 'node:path';
import { SpdkError } from '../errors';
import {
  bindDevice,
  describeUse,
  formatAction,
  Host,
  loadState,
  pagesForMiB,
  parseBdf,
  reset,
  setHugepages,
  SetupOptions,
  status,
  SetupStatus,
  unbindDevice,
} from '../setup';
import type { BindResult, HugepagesResult, ResetResult, SetupAction, UnbindResult } from '../setup';

export const setupUsage = `usage: spdk-node setup [--hugepages N | --hugemem MIB] [--bind BDF[,BDF...] [--driver NAME] [--force]]
                       [--unbind BDF[,BDF...]] [--status] [--json] [--dry-run]
       spdk-node setup --reset [--dry-run] [--json]

With no action: --status. Every action but --status needs root (or --dry-run).
  --status            hugepages, hugetlbfs mounts, IOMMU, drivers and NVMe devices
  --json              print the status (or the actions' results) as JSON
  --hugepages N       reserve N 2 MiB hugepages; mounts hugetlbfs at /dev/hugepages if none is
  --hugemem MIB       the same, given in MiB (rounded up to 2 MiB pages)
  --bind BDFS         move NVMe devices (0000:01:00.0 or 01:00.0, comma-separated) to a
                      user-space driver; refused while a disk of theirs is mounted, held or swap
  --driver NAME       vfio-pci or uio_pci_generic (default: vfio-pci with an IOMMU or vfio's
                      no-IOMMU mode, else uio_pci_generic)
  --force             --bind a device that is not an NVMe controller
  --unbind BDFS       give devices back to the driver they had (nvme if not recorded)
  --reset             undo everything recorded: devices, hugepages, the hugetlbfs mount
  --dry-run           print each change (sysfs/procfs write, mount, modprobe) and make none
State file: $SPDK_NODE_SETUP_STATE, default /var/lib/spdk-node/setup.json`;

export interface SetupArgs {
  /** 2 MiB pages to reserve (from --hugepages or --hugemem). */
  pages?: number;
  bind: string[];
  unbind: string[];
  driver?: string;
  force: boolean;
  status: boolean;
  json: boolean;
  reset: boolean;
  dryRun: boolean;
}

function usageError(msg: string): SpdkError {
  return new SpdkError(`${msg} (spdk-node setup --help)`, { code: 'ERR_USAGE' });
}

function bdfList(flag: string, v: string): string[] {
  return v.split(',').map((s) => {
    try {
      return parseBdf(s);
    } catch (e) {
      throw usageError(`${flag}: ${(e as Error).message}`);
    }
  });
}

function count(flag: string, v: string): number {
  if (!/^\d+$/.test(v) || Number(v) > 2 ** 31) throw usageError(`${flag} needs a whole number (0..${2 ** 31}), not '${v}'`);
  return Number(v);
}

export function parseSetupArgs(argv: string[]): SetupArgs {
  const a: SetupArgs = { bind: [], unbind: [], force: false, status: false, json: false, reset: false, dryRun: false };
  let hugepages: number | undefined;
  let hugemem: number | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw usageError(`${arg} needs a value`);
      return v;
    };
    switch (arg) {
      case '--hugepages':
        hugepages = count(arg, value());
        break;
      case '--hugemem':
        hugemem = count(arg, value());
        break;
      case '--bind':
        a.bind.push(...bdfList(arg, value()));
        break;
      case '--unbind':
        a.unbind.push(...bdfList(arg, value()));
        break;
      case '--driver': {
        const d = value();
        if (d !== 'vfio-pci' && d !== 'uio_pci_generic') throw usageError(`--driver must be vfio-pci or uio_pci_generic, not '${d}'`);
        a.driver = d;
        break;
      }
      case '--force':
        a.force = true;
        break;
      case '--status':
        a.status = true;
        break;
      case '--json':
        a.json = true;
        break;
      case '--reset':
        a.reset = true;
        break;
      case '--dry-run':
      case '-n':
        a.dryRun = true;
        break;
      case '--help':
      case '-h':
        throw new SpdkError(setupUsage, { code: 'ERR_HELP' });
      default:
        throw usageError(`unknown option '${arg}'`);
    }
  }
  if (hugepages !== undefined && hugemem !== undefined) throw usageError('give --hugepages or --hugemem, not both');
  a.pages = hugemem !== undefined ? pagesForMiB(hugemem) : hugepages;
  if ((a.driver !== undefined || a.force) && a.bind.length === 0) throw usageError('--driver and --force go with --bind');
  if (a.reset && (a.pages !== undefined || a.bind.length > 0 || a.unbind.length > 0)) throw usageError('--reset undoes everything; give it without --hugepages, --hugemem, --bind or --unbind');
  const both = a.bind.find((b) => a.unbind.includes(b));
  if (both !== undefined) throw usageError(`${both} is in both --bind and --unbind`);
  if (!a.reset && a.pages === undefined && a.bind.length === 0 && a.unbind.length === 0) a.status = true;
  return a;
}

export interface SetupIo {
  /** Standard output, one line per call (default process.stdout). */
  out?: (line: string) => void;
  /** Standard error (default process.stderr). */
  err?: (line: string) => void;
  /** Machine options (tests: a fake root, writer, runner, uid). Default: from the environment. */
  options?: SetupOptions;
}

/** Options from SPDK_NODE_SETUP_ROOT (tests only) and SPDK_NODE_SETUP_STATE. */
export function optionsFromEnv(env: NodeJS.ProcessEnv = process.env): SetupOptions {
  const o: SetupOptions = {};
  if (env.SPDK_NODE_SETUP_ROOT) o.root = env.SPDK_NODE_SETUP_ROOT;
  if (env.SPDK_NODE_SETUP_STATE) o.stateFile = path.resolve(env.SPDK_NODE_SETUP_STATE);
  return o;
}

interface Report {
  dryRun: boolean;
  actions: SetupAction[];
  hugepages?: HugepagesResult;
  unbound?: UnbindResult[];
  bound?: BindResult[];
  reset?: ResetResult;
  status?: SetupStatus;
}

/**
 * Runs `spdk-node setup ARGS` and returns the exit status: 0, 1 (a failure, or fewer hugepages
 * than asked for), 2 (a usage error). Errors are printed, never thrown.
 */
export async function setup(argv: string[], io: SetupIo = {}): Promise<number> {
  const out = io.out ?? ((l: string) => process.stdout.write(`${l}\n`));
  const err = io.err ?? ((l: string) => process.stderr.write(`${l}\n`));
  try {
    const a = parseSetupArgs(argv);
    const o = io.options ?? optionsFromEnv();
    const host = new Host({
      ...o,
      dryRun: a.dryRun,
      onAction: (act) => {
        o.onAction?.(act);
        if (a.dryRun && !a.json) out(formatAction(act));
      },
    });
    const changes = [a.pages !== undefined && '--hugepages', a.bind.length > 0 && '--bind', a.unbind.length > 0 && '--unbind', a.reset && '--reset'].filter((s) => s);
    if (changes.length > 0) host.requireRoot(`setup ${changes.join(' ')}`);
    const report: Report = { dryRun: a.dryRun, actions: host.actions };
    const say = a.json ? () => undefined : out;
    let code = 0;
    const state = loadState(host);
    if (a.reset) {
      report.reset = await reset(host, state);
      sayReset(say, report.reset, a.dryRun);
    }
    if (a.pages !== undefined) {
      report.hugepages = await setHugepages(host, state, a.pages);
      if (!sayHugepages(say, err, report.hugepages)) code = 1;
    }
    for (const bdf of a.unbind) {
      const r = await unbindDevice(host, state, bdf);
      (report.unbound ??= []).push(r);
      say(`${bdf}: ${moved(r, a.dryRun)}`);
    }
    for (const bdf of a.bind) {
      const r = await bindDevice(host, state, bdf, { driver: a.driver, force: a.force });
      (report.bound ??= []).push(r);
      sayBind(say, err, r, a.dryRun);
    }
    if (a.dryRun && !a.json) out(`dry run: ${host.actions.length} change(s) listed, none made`);
    if (a.status) report.status = status(host);
    if (a.json) {
      const { status: s, ...rest } = report;
      const onlyStatus = a.pages === undefined && !a.reset && a.bind.length === 0 && a.unbind.length === 0;
      out(JSON.stringify(onlyStatus ? s : { ...rest, ...(s ? { status: s } : {}) }, null, 2));
    } else if (report.status) {
      for (const line of formatStatus(report.status)) out(line);
    }
    return code;
  } catch (e) {
    if (e instanceof SpdkError && e.code === 'ERR_HELP') {
      out(setupUsage);
      return 0;
    }
    err(`spdk-node: ${e instanceof Error ? e.message : String(e)}`);
    return e instanceof SpdkError && e.code === 'ERR_USAGE' ? 2 : 1;
  }
}

/** Reports the hugepage change; false when the kernel reserved fewer pages than asked. */
function sayHugepages(say: (l: string) => void, err: (l: string) => void, r: HugepagesResult): boolean {
  if (r.reserved === undefined) {
    say(`hugepages: would set ${r.requested} x 2 MiB (now ${r.before}) through ${r.file}`);
  } else {
    say(`hugepages: ${r.reserved} x 2 MiB reserved (${r.reserved * 2} MiB; asked for ${r.requested}, was ${r.before})`);
  }
  if (r.mounted) say(`hugetlbfs: ${r.reserved === undefined ? 'would mount' : 'mounted'} at ${r.mounted} (pagesize=2M)`);
  else say(`hugetlbfs: already mounted at ${r.mounts.join(', ')}`);
  if (r.reserved !== undefined && r.reserved < r.requested) {
    err(
      `spdk-node: asked for ${r.requested} hugepages of 2 MiB but the kernel reserved only ${r.reserved}: free memory is short or too fragmented. ` +
        'Stop memory-hungry programs, drop caches (echo 3 > /proc/sys/vm/drop_caches) and compact memory (echo 1 > /proc/sys/vm/compact_memory), then run again, ' +
        `or reserve them at boot (hugepages=${r.requested} on the kernel command line)`,
    );
    return false;
  }
  return true;
}

/** "nvme -> vfio-pci", "would move nvme -> vfio-pci" (dry run) or "already on vfio-pci". */
function moved(r: { previousDriver: string | null; driver: string | null; changed: boolean }, dryRun: boolean): string {
  if (!r.changed) return `already on ${r.driver ?? 'no driver'}`;
  return `${dryRun ? 'would move ' : ''}${r.previousDriver ?? 'no driver'} -> ${r.driver ?? 'no driver'}`;
}

function sayBind(say: (l: string) => void, err: (l: string) => void, r: BindResult, dryRun: boolean): void {
  say(`${r.bdf}: ${moved(r, dryRun)} (${r.reason})`);
  if (r.vfio) {
    say(`${r.bdf}: SPDK opens it through ${r.vfio.node} (IOMMU group ${r.vfio.group})`);
    if (r.vfio.blockers.length > 0) {
      err(`spdk-node: warning: IOMMU group ${r.vfio.group} also holds ${r.vfio.blockers.join(', ')} on kernel drivers: vfio will not open the group until they are unbound too`);
    }
  }
}

function sayReset(say: (l: string) => void, r: ResetResult, dryRun: boolean): void {
  for (const d of r.devices) say(`${d.bdf}: ${moved(d, dryRun)}`);
  for (const b of r.gone) say(`${b}: no longer on the PCI bus; dropped from the state`);
  if (r.hugepages.unmounted) say(`hugetlbfs: ${dryRun ? 'would unmount' : 'unmounted'} ${r.hugepages.unmounted}`);
  if (r.hugepages.restoredTo !== undefined) {
    say(dryRun ? `hugepages: would restore ${r.hugepages.restoredTo} x 2 MiB` : `hugepages: ${r.hugepages.now} x 2 MiB (restored to ${r.hugepages.restoredTo})`);
  }
  if (r.devices.length === 0 && r.gone.length === 0 && r.hugepages.file === undefined && r.hugepages.unmounted === undefined) say('nothing recorded: nothing to reset');
}

const size = (kib: number): string => (kib % 1048576 === 0 ? `${kib / 1048576} GiB` : kib % 1024 === 0 ? `${kib / 1024} MiB` : `${kib} KiB`);

function table(rows: string[][]): string[] {
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => `  ${r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(w[i]))).join('  ')}`.trimEnd());
}

/** The human report of `spdk-node setup --status`. */
export function formatStatus(s: SetupStatus): string[] {
  const lines: string[] = [];
  const hp = s.hugepages;
  lines.push(`Hugepages${hp.defaultSizeKiB === null ? ': this kernel has no hugetlb support' : ` (default size ${size(hp.defaultSizeKiB)})`}`);
  if (hp.sizes.length > 0) {
    const rows = [['size', 'node', 'total', 'free', 'surplus']];
    for (const z of hp.sizes) {
      rows.push([size(z.sizeKiB), 'all', String(z.total), String(z.free), String(z.surplus)]);
      for (const n of z.nodes) rows.push([size(z.sizeKiB), String(n.node), String(n.total), String(n.free), String(n.surplus)]);
    }
    lines.push(...table(rows));
  }
  if (hp.mounts.length === 0) lines.push('hugetlbfs: not mounted (spdk-node setup --hugepages N mounts one at /dev/hugepages)');
  for (const m of hp.mounts) lines.push(`hugetlbfs: ${m.mountpoint} (pagesize ${m.pagesizeKiB === null ? 'unknown' : size(m.pagesizeKiB)})`);
  const io = s.iommu;
  const noiommu = io.noiommu === null ? 'unknown (vfio not loaded)' : io.noiommu ? 'on' : 'off';
  lines.push(`IOMMU: ${io.present ? `on (${io.groups} groups)` : 'none (/sys/kernel/iommu_groups is empty)'}; vfio no-IOMMU mode: ${noiommu}`);
  lines.push(
    `Drivers: ${s.drivers
      .map((d) => `${d.name} ${d.loaded ? 'loaded' : d.module === 'module' ? 'available (module, not loaded)' : d.module === 'builtin' ? 'built in' : 'not available'}`)
      .join('; ')}`,
  );
  if (s.nvme.length === 0) {
    lines.push('NVMe devices: none on the PCI bus');
  } else {
    lines.push('NVMe devices');
    const rows = [['BDF', 'vendor:device', 'node', 'driver', 'spdk-node', 'block devices']];
    for (const d of s.nvme) {
      const disks = d.blockDevices.map((b) => [b.name, ...b.partitions].join(' ')).join(', ') || '-';
      const uses = d.blockDevices.flatMap((b) => b.uses).map(describeUse);
      rows.push([
        d.bdf,
        `${d.vendor}:${d.device}`,
        String(d.numaNode),
        d.driver ?? '-',
        d.boundBySpdkNode ? `bound (was ${d.originalDriver ?? 'no driver'})` : '-',
        uses.length > 0 ? `${disks}; in use: ${uses.join('; ')}` : disks,
      ]);
    }
    lines.push(...table(rows));
  }
  const r = s.state.recorded;
  if (s.state.error) lines.push(`State: ${s.state.error}`);
  else if (r === null) lines.push(`State: ${s.state.file}: nothing recorded`);
  else {
    const parts = [
      r.hugepages && `hugepages (originally ${r.hugepages.original})`,
      r.hugetlbfs && `hugetlbfs mounted at ${r.hugetlbfs.mountpoint}`,
      Object.keys(r.devices).length > 0 && `devices ${Object.keys(r.devices).join(', ')}`,
    ].filter((p) => p);
    lines.push(`State: ${s.state.file}: ${parts.join('; ') || 'nothing recorded'} (--reset undoes it)`);
  }
  return lines;
}
