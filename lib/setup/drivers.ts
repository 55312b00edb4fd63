/**
 * The user-space I/O drivers SPDK's NVMe driver needs under it, and the IOMMU that decides
 * between them: vfio-pci when the device can be isolated by an IOMMU (or vfio's no-IOMMU mode
 * was switched on knowingly), uio_pci_generic otherwise.
 */
import { SpdkError } from '../errors';
import type { Host } from './host';

export type UserspaceDriver = 'vfio-pci' | 'uio_pci_generic';
export const USERSPACE_DRIVERS: readonly UserspaceDriver[] = ['vfio-pci', 'uio_pci_generic'];

export interface IommuStatus {
  /** /sys/kernel/iommu_groups has groups (other than the ones vfio's no-IOMMU mode makes). */
  present: boolean;
  groups: number;
  /** vfio's enable_unsafe_noiommu_mode; null when vfio is not loaded (the parameter is absent). */
  noiommu: boolean | null;
}

export interface DriverStatus {
  name: string;
  /** /sys/bus/pci/drivers/<name> exists: the driver is registered (loaded or built in). */
  loaded: boolean;
  /** How this kernel has it: built in, a loadable module, or not at all (null: not found). */
  module: 'builtin' | 'module' | null;
  /** loaded, or loadable with modprobe. */
  available: boolean;
}

const NOIOMMU = '/sys/module/vfio/parameters/enable_unsafe_noiommu_mode';

export function iommuStatus(host: Host): IommuStatus {
  // vfio's no-IOMMU mode makes a group per device it takes, named so: those are no IOMMU.
  const groups = host.list('/sys/kernel/iommu_groups').filter((g) => host.read(`/sys/kernel/iommu_groups/${g}/name`)?.trim() !== 'vfio-noiommu').length;
  const p = host.read(NOIOMMU)?.trim();
  return { present: groups > 0, groups, noiommu: p === undefined ? null : p === 'Y' || p === '1' };
}

/** Module names compare with '-' and '_' as one (modprobe's rule). */
const modName = (s: string): string => s.replace(/-/g, '_');

function moduleKind(host: Host, name: string): 'builtin' | 'module' | null {
  const dir = `/lib/modules/${host.kernelRelease}`;
  const has = (list: string | undefined): boolean =>
    (list ?? '').split('\n').some((line) => {
      const file = line.split(':')[0].trim();
      const base = file.slice(file.lastIndexOf('/') + 1).replace(/\.ko(\.[a-z]+)?$/, '');
      return file !== '' && modName(base) === modName(name);
    });
  if (has(host.read(`${dir}/modules.builtin`))) return 'builtin';
  if (has(host.read(`${dir}/modules.dep`))) return 'module';
  return null;
}

export function driverStatus(host: Host, name: string): DriverStatus {
  const loaded = host.exists(`/sys/bus/pci/drivers/${name}`);
  const module = moduleKind(host, name);
  return { name, loaded, module, available: loaded || module !== null };
}

/**
 * The driver to bind: `requested` when it can work here, else vfio-pci with an IOMMU or with
 * no-IOMMU mode on, else uio_pci_generic.
 */
export function chooseDriver(host: Host, requested?: string): { driver: string; reason: string } {
  const io = iommuStatus(host);
  if (requested !== undefined) {
    if (!(USERSPACE_DRIVERS as readonly string[]).includes(requested)) {
      throw SpdkError.invalidArg('setup.bind', `unknown driver '${requested}': use ${USERSPACE_DRIVERS.join(' or ')}`);
    }
    if (requested === 'vfio-pci' && !io.present && io.noiommu !== true) {
      throw new SpdkError(
        'vfio-pci needs an IOMMU and this machine has none (/sys/kernel/iommu_groups is empty). Either enable the IOMMU ' +
          '(intel_iommu=on or amd_iommu=on on the kernel command line, VT-d/AMD-Vi in the firmware), or switch on vfio\'s ' +
          'no-IOMMU mode (modprobe vfio enable_unsafe_noiommu_mode=1; unsafe: the device can DMA anywhere), or use ' +
          '--driver uio_pci_generic (also without DMA isolation)',
        { code: 'ERR_NO_IOMMU', errno: 19, op: 'setup.bind' },
      );
    }
    return { driver: requested, reason: 'asked for with --driver' };
  }
  if (io.present) return { driver: 'vfio-pci', reason: `the IOMMU is on (${io.groups} groups)` };
  if (io.noiommu === true) return { driver: 'vfio-pci', reason: "no IOMMU, but vfio's no-IOMMU mode is on" };
  return { driver: 'uio_pci_generic', reason: "no IOMMU and vfio's no-IOMMU mode is off" };
}

/** Loads a driver with modprobe unless it is registered already. */
export async function ensureDriver(host: Host, name: string, op: string): Promise<void> {
  if (host.exists(`/sys/bus/pci/drivers/${name}`)) return;
  const r = await host.run('modprobe', [name]);
  if (r.error) {
    throw new SpdkError(`the ${name} driver is not loaded and modprobe cannot be run (${r.error.message}): install kmod, or load ${name} some other way`, { code: 'ENOENT', errno: 2, op });
  }
  const has = moduleKind(host, name) === null ? ` (this kernel, ${host.kernelRelease}, does not list ${name} in /lib/modules/${host.kernelRelease})` : '';
  if (r.status !== 0) {
    throw new SpdkError(`modprobe ${name} failed: ${r.stderr.trim() || `exit status ${r.status}`}${has}: install the kernel's modules package or pick another --driver`, { code: 'ERR_MODPROBE', op });
  }
  if (!host.dryRun && !host.exists(`/sys/bus/pci/drivers/${name}`)) {
    throw new SpdkError(`modprobe ${name} succeeded but /sys/bus/pci/drivers/${name} does not exist`, { code: 'ERR_MODPROBE', op });
  }
}
