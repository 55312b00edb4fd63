/**
 * Machine set-up for SPDK (the job of SPDK's scripts/setup.sh): hugepages, hugetlbfs, and NVMe
 * devices moved between the kernel's nvme driver and a user-space I/O driver (vfio-pci,
 * uio_pci_generic). `spdk-node setup` is the command; these functions are the same thing for
 * programs. Everything but the status needs root, unless `dryRun` is set.
 *
 * ```ts
 * import { setupStatus, setupHugepages } from 'spdk-node';
 * const s = await setupStatus();
 * if (s.hugepages.sizes.find((z) => z.sizeKiB === 2048)?.free === 0) await setupHugepages(1024);
 * ```
 */
import { SpdkError } from '../errors';
import { Host, SetupOptions } from './host';
import { HugepagesRestore, HugepagesResult, HugepagesStatus, hugepagesStatus, PAGE_KIB, restoreHugepages, setHugepages } from './hugepages';
import { DriverStatus, driverStatus, iommuStatus, IommuStatus, USERSPACE_DRIVERS } from './drivers';
import { nvmeDevices, parseBdf, PciDevice, usesOfDevice } from './pci';
import { bindDevice, BindOptions, BindResult, unbindDevice, UnbindResult } from './bind';
import { loadState, saveState, SetupState } from './state';

export { Host, formatAction, DEFAULT_STATE_FILE } from './host';
export type { SetupOptions, SetupAction, CommandResult, CommandRunner, FileWriter } from './host';
export type { HugepagesStatus, HugepageSize, HugepageCounts, HugetlbfsMount, HugepagesResult, HugepagesRestore } from './hugepages';
export type { IommuStatus, DriverStatus } from './drivers';
export type { PciDevice, BlockDevice, BlockUse } from './pci';
export type { BindOptions, BindResult, UnbindResult, VfioGroup } from './bind';
export type { SetupState } from './state';
export { parseBdf, describeUse } from './pci';
export { bindDevice, unbindDevice } from './bind';
export { setHugepages, restoreHugepages } from './hugepages';
export { loadState } from './state';

export interface NvmeDeviceStatus extends PciDevice {
  /** A disk or partition of it is mounted, held or used as swap. */
  inUse: boolean;
  /** The state file records it as bound by spdk-node. */
  boundBySpdkNode: boolean;
  /** Its driver before spdk-node bound it (when boundBySpdkNode). */
  originalDriver?: string | null;
}

export interface SetupStatus {
  hugepages: HugepagesStatus;
  iommu: IommuStatus;
  /** vfio-pci and uio_pci_generic. */
  drivers: DriverStatus[];
  nvme: NvmeDeviceStatus[];
  state: {
    file: string;
    /** What the state file records (null: no state file). */
    recorded: SetupState | null;
    /** Set when the file exists but cannot be read as spdk-node's state. */
    error?: string;
  };
}

export interface ResetResult {
  devices: UnbindResult[];
  hugepages: HugepagesRestore;
  /** Recorded devices that no longer exist (dropped from the state). */
  gone: string[];
}

/** 2 MiB pages needed for `mib` MiB (rounded up). */
export function pagesForMiB(mib: number): number {
  return Math.ceil(mib / (PAGE_KIB / 1024));
}

export function status(host: Host): SetupStatus {
  let recorded: SetupState | null = null;
  let error: string | undefined;
  if (host.readState() !== undefined) {
    try {
      recorded = loadState(host);
    } catch (e) {
      error = (e as Error).message;
    }
  }
  const nvme = nvmeDevices(host).map((d): NvmeDeviceStatus => {
    const rec = recorded?.devices[d.bdf];
    return { ...d, inUse: usesOfDevice(d).length > 0, boundBySpdkNode: rec !== undefined, ...(rec ? { originalDriver: rec.originalDriver } : {}) };
  });
  return {
    hugepages: hugepagesStatus(host),
    iommu: iommuStatus(host),
    drivers: USERSPACE_DRIVERS.map((n) => driverStatus(host, n)),
    nvme,
    state: { file: host.stateFile, recorded, ...(error ? { error } : {}) },
  };
}

/**
 * Undoes everything the state records: every device back on its original driver, hugetlbfs
 * unmounted if spdk-node mounted it, the original number of hugepages. What fails stays recorded
 * (so --reset can be run again) and the errors are thrown together at the end.
 */
export async function reset(host: Host, state: SetupState): Promise<ResetResult> {
  const out: ResetResult = { devices: [], hugepages: {}, gone: [] };
  const errors: string[] = [];
  for (const bdf of Object.keys(state.devices)) {
    try {
      out.devices.push(await unbindDevice(host, state, bdf));
    } catch (e) {
      if (e instanceof SpdkError && e.code === 'ENODEV') {
        out.gone.push(bdf);
        delete state.devices[bdf];
        saveState(host, state);
      } else {
        errors.push((e as Error).message);
      }
    }
  }
  try {
    out.hugepages = await restoreHugepages(host, state);
  } catch (e) {
    errors.push((e as Error).message);
  }
  if (errors.length > 0) throw new SpdkError(`--reset did not finish: ${errors.join('; ')}`, { code: 'ERR_RESET', op: 'setup.reset' });
  return out;
}

/** Hugepages, hugetlbfs mounts, IOMMU, drivers and NVMe devices; needs no root. */
export async function setupStatus(o: SetupOptions = {}): Promise<SetupStatus> {
  return status(new Host(o));
}

/** Sets the number of 2 MiB hugepages (and mounts hugetlbfs if none is mounted). Root. */
export async function setupHugepages(pages: number, o: SetupOptions = {}): Promise<HugepagesResult> {
  const host = new Host(o);
  host.requireRoot('setting hugepages');
  return setHugepages(host, loadState(host), pages);
}

/** Binds NVMe devices (BDFs) to vfio-pci or uio_pci_generic. Root. */
export async function setupBind(bdfs: string | string[], o: BindOptions & SetupOptions = {}): Promise<BindResult[]> {
  const host = new Host(o);
  const list = (Array.isArray(bdfs) ? bdfs : [bdfs]).map(parseBdf);
  host.requireRoot('binding devices');
  const state = loadState(host);
  const out: BindResult[] = [];
  for (const bdf of list) out.push(await bindDevice(host, state, bdf, o));
  return out;
}

/** Gives devices back to their original drivers. Root. */
export async function setupUnbind(bdfs: string | string[], o: SetupOptions = {}): Promise<UnbindResult[]> {
  const host = new Host(o);
  const list = (Array.isArray(bdfs) ? bdfs : [bdfs]).map(parseBdf);
  host.requireRoot('unbinding devices');
  const state = loadState(host);
  const out: UnbindResult[] = [];
  for (const bdf of list) out.push(await unbindDevice(host, state, bdf));
  return out;
}

/** Undoes everything spdk-node setup recorded. Root. */
export async function setupReset(o: SetupOptions = {}): Promise<ResetResult> {
  const host = new Host(o);
  host.requireRoot('--reset');
  return reset(host, loadState(host));
}
