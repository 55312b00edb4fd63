/**
 * Moving a PCI device between kernel drivers through sysfs:
 *
 *   1. driver_override = the wanted driver (only that driver may then claim the device)
 *   2. BDF > devices/BDF/driver/unbind, if a driver has it
 *   3. BDF > /sys/bus/pci/drivers_probe (the kernel offers the device to its drivers again)
 *   4. devices/BDF/driver must now lead to the wanted driver
 *
 * Giving a device back uses the same steps with its original driver and then clears
 * driver_override, so the device is left as the kernel would have it. The state file is written
 * before the first change, so an interrupted bind can still be undone.
 */
import { SpdkError } from '../errors';
import { Host, sleep } from './host';
import { chooseDriver, ensureDriver } from './drivers';
import { describeUse, pciDevice, PciDevice, usesOfDevice } from './pci';
import { saveState, SetupState } from './state';

export interface BindOptions {
  /** vfio-pci or uio_pci_generic (default: chosen from the IOMMU, see chooseDriver). */
  driver?: string;
  /** Allow a device that is not an NVMe controller. */
  force?: boolean;
}

export interface VfioGroup {
  group: number;
  /** /dev/vfio/<group>, or /dev/vfio/noiommu-<group> in no-IOMMU mode. */
  node: string;
  /** Other devices in the group still on a kernel driver: SPDK cannot open the group until they leave it. */
  blockers: string[];
}

export interface BindResult {
  bdf: string;
  driver: string;
  /** Why that driver. */
  reason: string;
  previousDriver: string | null;
  /** False when the device was on that driver already. */
  changed: boolean;
  vfio?: VfioGroup;
}

export interface UnbindResult {
  bdf: string;
  /** The driver the device went back to (null: left without a driver, as it was found). */
  driver: string | null;
  previousDriver: string | null;
  changed: boolean;
}

const devDir = (bdf: string): string => `/sys/bus/pci/devices/${bdf}`;

function device(host: Host, bdf: string, op: string): PciDevice {
  const d = pciDevice(host, bdf);
  if (d === undefined) {
    throw new SpdkError(`no PCI device ${bdf} (${devDir(bdf)} does not exist): spdk-node setup --status lists the NVMe devices`, { code: 'ENODEV', errno: 19, op });
  }
  return d;
}

/** Waits for the kernel to finish probing: the driver link settles shortly after drivers_probe. */
async function waitForDriver(host: Host, bdf: string, want: string | null): Promise<string | null> {
  const deadline = Date.now() + host.probeTimeoutMs;
  for (;;) {
    const now = host.linkName(`${devDir(bdf)}/driver`) ?? null;
    if (now === want || Date.now() >= deadline) return now;
    await sleep(50);
  }
}

/** Steps 1-4 above. */
async function moveTo(host: Host, d: PciDevice, driver: string | null, op: string): Promise<void> {
  const dir = devDir(d.bdf);
  host.write(`${dir}/driver_override`, driver === null ? '\n' : driver, op);
  if (d.driver !== null) host.write(`${dir}/driver/unbind`, d.bdf, op);
  if (driver !== null) host.write('/sys/bus/pci/drivers_probe', d.bdf, op);
  if (host.dryRun) return;
  const now = await waitForDriver(host, d.bdf, driver);
  if (now !== driver) {
    throw new SpdkError(
      `${d.bdf} did not bind to ${driver ?? 'no driver'} (its driver is now ${now ?? 'none'}): the kernel log (dmesg) says why; spdk-node setup --reset puts recorded devices back`,
      { code: 'ERR_BIND', op },
    );
  }
}

function vfioGroup(host: Host, d: PciDevice, op: string): VfioGroup {
  const group = host.linkName(`${devDir(d.bdf)}/iommu_group`);
  if (group === undefined) throw new SpdkError(`${d.bdf} is on vfio-pci but has no iommu_group link: vfio cannot hand it to SPDK`, { code: 'ERR_BIND', op });
  const noiommu = host.read('/sys/module/vfio/parameters/enable_unsafe_noiommu_mode')?.trim() === 'Y';
  const node = noiommu && !host.exists(`/dev/vfio/${group}`) ? `/dev/vfio/noiommu-${group}` : `/dev/vfio/${group}`;
  if (!host.exists(node)) {
    throw new SpdkError(`${d.bdf} is on vfio-pci but ${node} does not exist: is devtmpfs mounted on /dev (and the vfio module loaded)?`, { code: 'ENOENT', errno: 2, op });
  }
  const blockers = host
    .list(`/sys/kernel/iommu_groups/${group}/devices`)
    .filter((b) => b !== d.bdf)
    .filter((b) => {
      const drv = host.linkName(`${devDir(b)}/driver`);
      return drv !== undefined && drv !== 'vfio-pci' && drv !== 'pcieport';
    });
  return { group: Number(group), node, blockers };
}

/**
 * Binds one device to a user-space driver. Refuses a device whose disks are mounted, held or
 * used as swap, and (without `force`) a device that is not an NVMe controller.
 */
export async function bindDevice(host: Host, state: SetupState, bdf: string, o: BindOptions = {}): Promise<BindResult> {
  const op = 'setup.bind';
  const d = device(host, bdf, op);
  if (!d.isNvme) {
    if (/^0x060[04]/.test(d.class)) throw new SpdkError(`${bdf} is a PCI bridge (class ${d.class}): spdk-node never unbinds bridges`, { code: 'ERR_NOT_NVME', errno: 22, op });
    if (!o.force) throw new SpdkError(`${bdf} is not an NVMe device (class ${d.class}, not ${'0x010802'}): pass --force to bind it anyway`, { code: 'ERR_NOT_NVME', errno: 22, op });
  }
  const uses = usesOfDevice(d);
  if (uses.length > 0) {
    throw new SpdkError(`${bdf} is in use: ${uses.map(describeUse).join('; ')}. Unmount it, stop what holds it or swapoff, then bind again`, { code: 'EBUSY', errno: 16, op });
  }
  const { driver, reason } = chooseDriver(host, o.driver);
  const result: BindResult = { bdf, driver, reason, previousDriver: d.driver, changed: d.driver !== driver };
  if (result.changed) {
    await ensureDriver(host, driver, op);
    const rec = state.devices[bdf];
    state.devices[bdf] = { driver, originalDriver: rec ? rec.originalDriver : d.driver };
    saveState(host, state);
    await moveTo(host, d, driver, op);
  }
  if (driver === 'vfio-pci' && !host.dryRun) result.vfio = vfioGroup(host, d, op);
  return result;
}

/**
 * Gives a device back to the driver it had before spdk-node bound it (from the state file), or
 * to nvme when the state has no record of it.
 */
export async function unbindDevice(host: Host, state: SetupState, bdf: string): Promise<UnbindResult> {
  const op = 'setup.unbind';
  const d = device(host, bdf, op);
  const rec = state.devices[bdf];
  if (rec === undefined && !d.isNvme) {
    throw new SpdkError(`${bdf} was not bound by spdk-node (no record in ${host.stateFile}) and is not an NVMe device: there is no driver to give it back to`, { code: 'ERR_NOT_NVME', errno: 22, op });
  }
  const target = rec ? rec.originalDriver : 'nvme';
  const result: UnbindResult = { bdf, driver: target, previousDriver: d.driver, changed: d.driver !== target || d.driverOverride !== null };
  if (result.changed) {
    if (target !== null) await ensureDriver(host, target, op);
    if (d.driver === target) {
      host.write(`${devDir(bdf)}/driver_override`, '\n', op);
    } else {
      await moveTo(host, d, target, op);
      if (target !== null) host.write(`${devDir(bdf)}/driver_override`, '\n', op);
    }
  }
  if (rec !== undefined) {
    delete state.devices[bdf];
    saveState(host, state);
  }
  return result;
}
