/**
 * A fake machine for `spdk-node setup`: a sysfs/procfs/dev tree in a temporary directory laid
 * out as Linux lays it out (devices under /sys/devices/pci0000:00, /sys/bus/pci/devices and
 * /sys/block as symlinks into it), plus a small "kernel" that reacts to the writes and commands
 * lib/setup makes: driver_override, driver/unbind, drivers_probe, nr_hugepages, modprobe, mount
 * and umount. Writing a plain file moves no driver, so without it nothing could be checked.
 *
 * The kernel's rules kept here: unbind only from the bound driver (else ENODEV); drivers_probe
 * binds an unbound device to its driver_override if that driver is registered, else to its
 * native driver (nvme for NVMe); the nvme driver's disks exist in /sys/block only while it is
 * bound; vfio-pci creates /dev/vfio/<group>, in no-IOMMU mode a new group and
 * /dev/vfio/noiommu-<group>; nr_hugepages is capped (fragmented memory).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { CommandResult, SetupOptions } from '../../lib/setup';

export interface FakeDisk {
  name: string;
  dev: string;
  partitions?: Array<{ name: string; dev: string }>;
}

export interface FakePciDevice {
  bdf: string;
  class: string;
  vendor: string;
  device: string;
  numaNode?: number;
  /** The driver bound now, and the one drivers_probe picks without an override. */
  driver: string | null;
  nativeDriver: string;
  disks?: FakeDisk[];
}

export interface FakeMachineOptions {
  devices: FakePciDevice[];
  iommu: boolean;
  /** vfio's enable_unsafe_noiommu_mode (only visible while vfio-pci is loaded). */
  noiommu?: boolean;
  /** PCI drivers registered at the start. */
  loaded: string[];
  /** Modules modprobe can load. */
  modules: string[];
  /** The most 2 MiB hugepages the kernel manages to reserve. */
  maxHugepages?: number;
  hugepages?: number;
}

const errno = (code: string, msg: string): NodeJS.ErrnoException => Object.assign(new Error(`${code}: ${msg}`), { code, errno: code === 'ENODEV' ? -19 : code === 'ENOENT' ? -2 : -22 });

export class FakeMachine {
  readonly writes: Array<{ path: string; data: string }> = [];
  readonly commands: string[][] = [];
  /** Make drivers_probe leave the device unbound (a driver whose probe fails). */
  failProbe = false;
  private nextGroup = 100;

  constructor(
    readonly root: string,
    readonly o: FakeMachineOptions,
  ) {
    this.build();
  }

  p(kernelPath: string): string {
    return path.join(this.root, kernelPath);
  }

  file(kernelPath: string, text: string): void {
    fs.mkdirSync(path.dirname(this.p(kernelPath)), { recursive: true });
    fs.writeFileSync(this.p(kernelPath), text);
  }

  link(kernelPath: string, target: string): void {
    fs.mkdirSync(path.dirname(this.p(kernelPath)), { recursive: true });
    fs.rmSync(this.p(kernelPath), { force: true });
    fs.symlinkSync(target, this.p(kernelPath));
  }

  read(kernelPath: string): string {
    return fs.readFileSync(this.p(kernelPath), 'utf8');
  }

  exists(kernelPath: string): boolean {
    return fs.existsSync(this.p(kernelPath));
  }

  /** The driver a device is bound to (from its driver link), or null. */
  driverOf(bdf: string): string | null {
    try {
      return path.basename(fs.readlinkSync(this.p(`/sys/bus/pci/devices/${bdf}/driver`)));
    } catch {
      return null;
    }
  }

  private devDir(bdf: string): string {
    return `/sys/devices/pci0000:00/${bdf}`;
  }

  private build(): void {
    const o = this.o;
    fs.mkdirSync(this.p('/sys/kernel/iommu_groups'), { recursive: true });
    fs.mkdirSync(this.p('/sys/block'), { recursive: true });
    fs.mkdirSync(this.p('/dev'), { recursive: true });
    this.file('/sys/bus/pci/drivers_probe', '');
    for (const d of o.loaded) this.registerDriver(d);
    let group = 0;
    for (const d of o.devices) {
      const dir = this.devDir(d.bdf);
      this.file(`${dir}/class`, `${d.class}\n`);
      this.file(`${dir}/vendor`, `0x${d.vendor}\n`);
      this.file(`${dir}/device`, `0x${d.device}\n`);
      this.file(`${dir}/numa_node`, `${d.numaNode ?? -1}\n`);
      this.file(`${dir}/driver_override`, '(null)\n');
      this.link(`/sys/bus/pci/devices/${d.bdf}`, `../../../devices/pci0000:00/${d.bdf}`);
      if (o.iommu) this.addGroup(d.bdf, group++);
      if (d.driver !== null) this.bindTo(d.bdf, d.driver);
    }
    // Hugepages: 2 MiB is the default size; one NUMA node.
    this.file('/proc/meminfo', 'MemTotal:       24000000 kB\nHugePages_Total:       0\nHugepagesize:       2048 kB\n');
    for (const kib of [2048, 1048576]) {
      const dir = `/sys/kernel/mm/hugepages/hugepages-${kib}kB`;
      for (const f of ['nr_hugepages', 'free_hugepages', 'surplus_hugepages', 'resv_hugepages']) this.file(`${dir}/${f}`, '0\n');
      for (const f of ['nr_hugepages', 'free_hugepages', 'surplus_hugepages']) this.file(`/sys/devices/system/node/node0/hugepages/hugepages-${kib}kB/${f}`, '0\n');
    }
    this.file('/proc/sys/vm/nr_hugepages', '0\n');
    if (o.hugepages) this.setHugepages(o.hugepages);
    this.file('/proc/mounts', 'sysfs /sys sysfs rw,nosuid 0 0\nproc /proc proc rw 0 0\n/dev/vda / ext4 rw,relatime 0 0\n');
    this.file('/proc/swaps', 'Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n');
  }

  private addGroup(bdf: string, group: number): void {
    this.link(`/sys/kernel/iommu_groups/${group}/devices/${bdf}`, `../../../../devices/pci0000:00/${bdf}`);
    this.link(`${this.devDir(bdf)}/iommu_group`, `../../../kernel/iommu_groups/${group}`);
  }

  private registerDriver(name: string): void {
    for (const f of ['bind', 'unbind', 'new_id']) this.file(`/sys/bus/pci/drivers/${name}/${f}`, '');
    if (name === 'vfio-pci') {
      fs.mkdirSync(this.p('/dev/vfio'), { recursive: true });
      this.file('/sys/module/vfio/parameters/enable_unsafe_noiommu_mode', this.o.noiommu ? 'Y\n' : 'N\n');
    }
  }

  private device(bdf: string): FakePciDevice {
    const d = this.o.devices.find((x) => x.bdf === bdf);
    if (!d) throw errno('ENODEV', `no device ${bdf}`);
    return d;
  }

  private bindTo(bdf: string, driver: string): void {
    const d = this.device(bdf);
    this.link(`${this.devDir(bdf)}/driver`, `../../../bus/pci/drivers/${driver}`);
    if (driver === 'nvme') {
      d.disks?.forEach((disk, i) => {
        const base = `${this.devDir(bdf)}/nvme/nvme${i}/${disk.name}`;
        this.file(`${base}/dev`, `${disk.dev}\n`);
        fs.mkdirSync(this.p(`${base}/holders`), { recursive: true });
        for (const part of disk.partitions ?? []) {
          this.file(`${base}/${part.name}/dev`, `${part.dev}\n`);
          this.file(`${base}/${part.name}/partition`, '1\n');
          fs.mkdirSync(this.p(`${base}/${part.name}/holders`), { recursive: true });
        }
        this.link(`/sys/block/${disk.name}`, `../devices/pci0000:00/${bdf}/nvme/nvme${i}/${disk.name}`);
      });
    }
    if (driver === 'vfio-pci') {
      let group = this.linkTarget(`${this.devDir(bdf)}/iommu_group`);
      const noiommu = group === undefined;
      if (noiommu) {
        this.addGroup(bdf, this.nextGroup);
        this.file(`/sys/kernel/iommu_groups/${this.nextGroup}/name`, 'vfio-noiommu\n');
        group = String(this.nextGroup++);
      }
      this.file(`/dev/vfio/${noiommu ? 'noiommu-' : ''}${group}`, '');
    }
  }

  private unbindFrom(bdf: string): void {
    const d = this.device(bdf);
    const driver = this.driverOf(bdf);
    fs.rmSync(this.p(`${this.devDir(bdf)}/driver`));
    if (driver === 'nvme') {
      fs.rmSync(this.p(`${this.devDir(bdf)}/nvme`), { recursive: true, force: true });
      for (const disk of d.disks ?? []) fs.rmSync(this.p(`/sys/block/${disk.name}`), { force: true });
    }
    if (driver === 'vfio-pci') {
      const group = this.linkTarget(`${this.devDir(bdf)}/iommu_group`);
      fs.rmSync(this.p(`/dev/vfio/${group}`), { force: true });
      fs.rmSync(this.p(`/dev/vfio/noiommu-${group}`), { force: true });
    }
  }

  private linkTarget(kernelPath: string): string | undefined {
    try {
      return path.basename(fs.readlinkSync(this.p(kernelPath)));
    } catch {
      return undefined;
    }
  }

  private setHugepages(n: number): void {
    const got = Math.min(n, this.o.maxHugepages ?? Infinity);
    for (const f of ['/sys/kernel/mm/hugepages/hugepages-2048kB', '/sys/devices/system/node/node0/hugepages/hugepages-2048kB']) {
      this.file(`${f}/nr_hugepages`, `${got}\n`);
      this.file(`${f}/free_hugepages`, `${got}\n`);
    }
    this.file('/proc/sys/vm/nr_hugepages', `${got}\n`);
  }

  /** The writer lib/setup calls: sysfs semantics for the files the kernel owns. */
  readonly writeFile = (file: string, data: string): void => {
    const rel = `/${path.relative(this.root, file)}`;
    // Writes through the driver link land in the driver's directory, as in sysfs.
    const real = `/${path.relative(this.root, path.join(fs.realpathSync(path.dirname(file)), path.basename(file)))}`;
    this.writes.push({ path: rel, data });
    let m: RegExpExecArray | null;
    if ((m = /^\/sys\/devices\/pci0000:00\/([^/]+)\/driver_override$/.exec(real))) {
      const v = data.replace(/\n.*$/s, '');
      this.file(`${this.devDir(m[1])}/driver_override`, `${v === '' ? '(null)' : v}\n`);
    } else if ((m = /^\/sys\/bus\/pci\/drivers\/([^/]+)\/unbind$/.exec(real))) {
      const bdf = data.trim();
      if (this.driverOf(bdf) !== m[1]) throw errno('ENODEV', `${bdf} is not bound to ${m[1]}`);
      this.unbindFrom(bdf);
    } else if (real === '/sys/bus/pci/drivers_probe') {
      const bdf = data.trim();
      const d = this.device(bdf);
      if (this.driverOf(bdf) !== null || this.failProbe) return;
      const override = this.read(`${this.devDir(bdf)}/driver_override`).trim();
      const want = override === '(null)' ? d.nativeDriver : override;
      if (this.exists(`/sys/bus/pci/drivers/${want}`)) this.bindTo(bdf, want);
    } else if (real === '/proc/sys/vm/nr_hugepages' || real === '/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages') {
      if (!/^\d+\n?$/.test(data)) throw errno('EINVAL', data);
      this.setHugepages(Number(data));
    } else if (fs.existsSync(file) && fs.statSync(file).isFile()) {
      fs.writeFileSync(file, data);
    } else {
      throw errno('ENOENT', rel);
    }
  };

  /** The command runner lib/setup calls: modprobe, mount and umount act on the tree. */
  readonly run = async (cmd: string, args: string[]): Promise<CommandResult> => {
    this.commands.push([cmd, ...args]);
    if (cmd === 'modprobe') {
      const name = args[args.length - 1];
      if (!this.o.modules.includes(name)) return { status: 1, stdout: '', stderr: `modprobe: FATAL: Module ${name} not found in directory /lib/modules/fake\n` };
      this.registerDriver(name);
      return { status: 0, stdout: '', stderr: '' };
    }
    if (cmd === 'mount') {
      const target = `/${path.relative(this.root, args[args.length - 1])}`;
      fs.appendFileSync(this.p('/proc/mounts'), `nodev ${target} hugetlbfs rw,relatime,pagesize=2M 0 0\n`);
      return { status: 0, stdout: '', stderr: '' };
    }
    if (cmd === 'umount') {
      const target = `/${path.relative(this.root, args[0])}`;
      const lines = this.read('/proc/mounts').split('\n');
      const kept = lines.filter((l) => l.split(' ')[1] !== target);
      if (kept.length === lines.length) return { status: 32, stdout: '', stderr: `umount: ${target}: not mounted.\n` };
      this.file('/proc/mounts', kept.join('\n'));
      return { status: 0, stdout: '', stderr: '' };
    }
    return { status: null, stdout: '', stderr: '', error: errno('ENOENT', `spawn ${cmd}`) };
  };

  /** Options that point lib/setup at this machine. */
  options(extra: SetupOptions = {}): SetupOptions {
    return { root: this.root, writeFile: this.writeFile, run: this.run, uid: 0, kernelRelease: 'fake', probeTimeoutMs: 200, ...extra };
  }

  /** Every file, directory and link in the tree with its content or target, for before/after comparisons. */
  snapshot(): Map<string, string> {
    const out = new Map<string, string>();
    const walk = (dir: string): void => {
      for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
        const full = path.join(dir, e.name);
        const rel = path.relative(this.root, full);
        if (e.isSymbolicLink()) out.set(rel, `-> ${fs.readlinkSync(full)}`);
        else if (e.isDirectory()) {
          out.set(rel, 'dir');
          walk(full);
        } else out.set(rel, fs.readFileSync(full, 'utf8'));
      }
    };
    walk(this.root);
    return out;
  }
}
