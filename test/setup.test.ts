/**
 * `spdk-node setup` (lib/setup, lib/cli/setup.ts).
 *
 * Binding is checked against a fake machine (test/helpers/fake-sysfs.ts: a sysfs tree in a
 * temporary directory and a small fake kernel that moves driver links when lib/setup writes
 * unbind and drivers_probe): this machine has no NVMe PCIe device and no IOMMU. Hugepages are
 * checked for real on this machine (as root), through the CLI, and put back whatever happens.
 */
import { expect } from 'chai';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseBdf, setupBind, setupReset, setupStatus, setupUnbind, SetupStatus } from '../lib/setup';
import { parseSetupArgs, setup } from '../lib/cli/setup';
import { SpdkError } from '../lib/errors';
import { FakeMachine, FakeMachineOptions } from './helpers/fake-sysfs';
import { tempDir } from './helpers/env';

const MAIN = path.join(__dirname, '..', 'lib', 'cli', 'main.js');
const NVME0 = '0000:01:00.0';
const NVME1 = '0000:02:00.0';
const NIC = '0000:00:03.0';
const STATE = '/var/lib/spdk-node/setup.json';

function machineOptions(over: Partial<FakeMachineOptions> = {}): FakeMachineOptions {
  return {
    devices: [
      { bdf: NVME0, class: '0x010802', vendor: '8086', device: '0953', numaNode: 0, driver: 'nvme', nativeDriver: 'nvme', disks: [{ name: 'nvme0n1', dev: '259:0' }] },
      {
        bdf: NVME1,
        class: '0x010802',
        vendor: '144d',
        device: 'a808',
        numaNode: 1,
        driver: 'nvme',
        nativeDriver: 'nvme',
        disks: [{ name: 'nvme1n1', dev: '259:1', partitions: [{ name: 'nvme1n1p1', dev: '259:2' }, { name: 'nvme1n1p2', dev: '259:3' }] }],
      },
      { bdf: NIC, class: '0x020000', vendor: '1af4', device: '1041', driver: 'virtio-pci', nativeDriver: 'virtio-pci' },
    ],
    iommu: true,
    loaded: ['nvme', 'virtio-pci'],
    modules: ['vfio-pci', 'uio_pci_generic'],
    ...over,
  };
}

/** `spdk-node setup ARGS` in this process, against a fake machine. */
async function cli(m: FakeMachine, args: string[], extra: Parameters<FakeMachine['options']>[0] = {}): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await setup(args, { out: (l) => out.push(l), err: (l) => err.push(l), options: m.options(extra) });
  return { code, out, err };
}

function state(m: FakeMachine): { devices: Record<string, { driver: string; originalDriver: string | null }>; hugepages?: { original: number }; hugetlbfs?: { mountpoint: string } } {
  return JSON.parse(m.read(STATE));
}

describe('spdk-node setup against a fake sysfs', () => {
  let dir: { dir: string; cleanup: () => void };
  let m: FakeMachine;

  beforeEach(() => {
    dir = tempDir('spdk-node-setup-');
    m = new FakeMachine(dir.dir, machineOptions());
  });
  afterEach(() => dir.cleanup());

  it('BDFs: long and short forms are checked and normalised', () => {
    expect(parseBdf('0000:01:00.0')).to.equal('0000:01:00.0');
    expect(parseBdf('01:00.0')).to.equal('0000:01:00.0');
    expect(parseBdf('0000:AF:1f.7')).to.equal('0000:af:1f.7');
    expect(parseBdf('10000:01:00.0')).to.equal('10000:01:00.0');
    for (const bad of ['', '1:2:3', '0000:01:00', '0000:01:00.8', '0000:01:20.0', '0000:001:00.0', 'zz:00.0', '0000:01:00.0,']) {
      expect(() => parseBdf(bad), bad).to.throw(SpdkError, /not a PCI address/);
    }
  });

  it('--status: NVMe devices only, with ids, NUMA node, driver and disks; hugepages, IOMMU, drivers', async () => {
    const s = await setupStatus(m.options());
    expect(s.nvme.map((d) => d.bdf)).to.deep.equal([NVME0, NVME1]);
    const [a, b] = s.nvme;
    expect(a).to.include({ vendor: '8086', device: '0953', numaNode: 0, driver: 'nvme', inUse: false, boundBySpdkNode: false, iommuGroup: 0 });
    expect(b.blockDevices).to.deep.equal([{ name: 'nvme1n1', dev: '259:1', partitions: ['nvme1n1p1', 'nvme1n1p2'], uses: [] }]);
    expect(s.iommu).to.deep.equal({ present: true, groups: 3, noiommu: null });
    expect(s.drivers.map((d) => [d.name, d.loaded])).to.deep.equal([
      ['vfio-pci', false],
      ['uio_pci_generic', false],
    ]);
    expect(s.hugepages.defaultSizeKiB).to.equal(2048);
    expect(s.hugepages.sizes.map((z) => [z.sizeKiB, z.total, z.nodes.length])).to.deep.equal([
      [2048, 0, 1],
      [1048576, 0, 1],
    ]);
    expect(s.state.recorded).to.equal(null);

    const r = await cli(m, []);
    expect(r.code).to.equal(0);
    const text = r.out.join('\n');
    expect(text).to.match(/0000:01:00\.0 +8086:0953 +0 +nvme +- +nvme0n1/);
    expect(text).to.match(/0000:02:00\.0 +144d:a808 +1 +nvme +- +nvme1n1 nvme1n1p1 nvme1n1p2/);
    expect(text).to.not.include(NIC);
    expect(text).to.include('IOMMU: on (3 groups)');
    const j = await cli(m, ['--status', '--json']);
    expect(j.code).to.equal(0);
    expect((JSON.parse(j.out.join('\n')) as SetupStatus).nvme.map((d) => d.bdf)).to.deep.equal([NVME0, NVME1]);
  });

  it('--bind: vfio-pci with an IOMMU (modprobe first), the driver link moved, /dev/vfio/<group>, state recorded; --unbind: back to nvme', async () => {
    const r = await cli(m, ['--bind', '01:00.0']);
    expect(r.code, r.err.join('\n')).to.equal(0);
    expect(m.commands).to.deep.equal([['modprobe', 'vfio-pci']]);
    expect(m.writes).to.deep.equal([
      { path: `/sys/bus/pci/devices/${NVME0}/driver_override`, data: 'vfio-pci' },
      { path: `/sys/bus/pci/devices/${NVME0}/driver/unbind`, data: NVME0 },
      { path: '/sys/bus/pci/drivers_probe', data: NVME0 },
    ]);
    expect(m.driverOf(NVME0)).to.equal('vfio-pci');
    expect(m.driverOf(NVME1)).to.equal('nvme');
    expect(m.exists('/sys/block/nvme0n1')).to.equal(false);
    expect(r.out).to.include(`${NVME0}: nvme -> vfio-pci (the IOMMU is on (3 groups))`);
    expect(r.out).to.include(`${NVME0}: SPDK opens it through /dev/vfio/0 (IOMMU group 0)`);
    expect(state(m).devices).to.deep.equal({ [NVME0]: { driver: 'vfio-pci', originalDriver: 'nvme' } });
    const s = await setupStatus(m.options());
    expect(s.nvme[0]).to.include({ driver: 'vfio-pci', boundBySpdkNode: true, originalDriver: 'nvme' });
    expect((await cli(m, ['--status'])).out.join('\n')).to.match(/0000:01:00\.0 .* vfio-pci +bound \(was nvme\) +-/);

    // Binding again changes nothing.
    m.writes.length = 0;
    const again = await setupBind(NVME0, m.options());
    expect(again[0]).to.include({ changed: false, driver: 'vfio-pci' });
    expect(m.writes).to.deep.equal([]);

    const u = await cli(m, ['--unbind', NVME0]);
    expect(u.code, u.err.join('\n')).to.equal(0);
    expect(m.driverOf(NVME0)).to.equal('nvme');
    expect(m.read(`/sys/bus/pci/devices/${NVME0}/driver_override`)).to.equal('(null)\n');
    expect(m.exists('/sys/block/nvme0n1')).to.equal(true);
    expect(m.exists('/dev/vfio/0')).to.equal(false);
    expect(m.exists(STATE)).to.equal(false);
    expect((await setupStatus(m.options())).nvme[0]).to.include({ driver: 'nvme', boundBySpdkNode: false });
  });

  it('--reset: every bound device back, hugepages back, hugetlbfs unmounted, state cleared', async () => {
    m = new FakeMachine(dir.dir + '-b', machineOptions({ loaded: ['nvme', 'virtio-pci', 'vfio-pci'], modules: [], hugepages: 8 }));
    try {
      const r = await cli(m, ['--bind', `${NVME0},${NVME1}`, '--hugepages', '100']);
      expect(r.code, r.err.join('\n')).to.equal(0);
      expect(m.commands).to.deep.equal([['mount', '-t', 'hugetlbfs', '-o', 'pagesize=2M', 'nodev', m.p('/dev/hugepages')]]);
      expect([m.driverOf(NVME0), m.driverOf(NVME1)]).to.deep.equal(['vfio-pci', 'vfio-pci']);
      expect(m.read('/proc/sys/vm/nr_hugepages')).to.equal('100\n');
      expect(state(m)).to.deep.include({ hugepages: { file: '/proc/sys/vm/nr_hugepages', original: 8 }, hugetlbfs: { mountpoint: '/dev/hugepages', createdDir: true } });
      expect(Object.keys(state(m).devices)).to.deep.equal([NVME0, NVME1]);

      const z = await cli(m, ['--reset']);
      expect(z.code, z.err.join('\n')).to.equal(0);
      expect([m.driverOf(NVME0), m.driverOf(NVME1)]).to.deep.equal(['nvme', 'nvme']);
      expect(m.read('/proc/sys/vm/nr_hugepages')).to.equal('8\n');
      expect(m.read('/proc/mounts')).to.not.include('hugetlbfs');
      expect(m.exists('/dev/hugepages')).to.equal(false);
      expect(m.exists(STATE)).to.equal(false);
      expect(z.out).to.include('hugepages: 8 x 2 MiB (restored to 8)');
      expect((await cli(m, ['--reset'])).out).to.deep.equal(['nothing recorded: nothing to reset']);
    } finally {
      fs.rmSync(dir.dir + '-b', { recursive: true, force: true });
    }
  });

  it('--hugepages: fewer pages than asked (fragmented memory) is said clearly, exit 1; --hugemem rounds up to 2 MiB pages', async () => {
    m = new FakeMachine(dir.dir + '-c', machineOptions({ maxHugepages: 100 }));
    try {
      fs.mkdirSync(m.p('/mnt/huge'), { recursive: true });
      fs.appendFileSync(m.p('/proc/mounts'), 'hugetlbfs /mnt/huge hugetlbfs rw,relatime,pagesize=2M 0 0\n');
      const r = await cli(m, ['--hugepages', '200']);
      expect(r.code).to.equal(1);
      expect(r.err.join('\n')).to.match(/asked for 200 hugepages of 2 MiB but the kernel reserved only 100/);
      expect(r.out).to.include('hugepages: 100 x 2 MiB reserved (200 MiB; asked for 200, was 0)');
      expect(r.out).to.include('hugetlbfs: already mounted at /mnt/huge');
      expect(m.commands).to.deep.equal([]);
      expect(state(m).hugepages).to.deep.equal({ file: '/proc/sys/vm/nr_hugepages', original: 0 });
      const h = await cli(m, ['--hugemem', '61']);
      expect(h.code).to.equal(0);
      expect(m.read('/proc/sys/vm/nr_hugepages')).to.equal('31\n');
      expect(state(m).hugepages?.original, 'the first original is kept').to.equal(0);
    } finally {
      fs.rmSync(dir.dir + '-c', { recursive: true, force: true });
    }
  });

  it('refuses a device whose disk is mounted, held or swap, naming it; nothing changes', async () => {
    const before = m.snapshot();
    fs.appendFileSync(m.p('/proc/mounts'), '/dev/nvme1n1p1 /data ext4 rw,relatime 0 0\n');
    let r = await cli(m, ['--bind', NVME1]);
    expect(r.code).to.equal(1);
    expect(r.err).to.have.length(1);
    expect(r.err[0]).to.match(/0000:02:00\.0 is in use: nvme1n1p1 is mounted at \/data\. Unmount it/);
    expect(m.driverOf(NVME1)).to.equal('nvme');
    expect(m.writes).to.deep.equal([]);
    expect((await setupStatus(m.options())).nvme[1]).to.include({ inUse: true });

    // A mount through a /dev/disk/by-uuid link, and one only /proc/self/mountinfo's device number shows.
    m.file('/proc/mounts', 'UUID=1234 /srv xfs rw 0 0\n/dev/disk/by-uuid/abcd /home ext4 rw 0 0\n');
    m.link('/dev/disk/by-uuid/abcd', '../../nvme1n1');
    m.file('/dev/nvme1n1', '');
    m.file('/proc/self/mountinfo', '40 1 259:3 / /srv rw,relatime - xfs UUID=1234 rw\n');
    r = await cli(m, ['--bind', NVME1]);
    expect(r.err[0]).to.include('nvme1n1 is mounted at /home');
    expect(r.err[0]).to.include('nvme1n1p2 is mounted at /srv');

    m.file('/proc/mounts', '');
    m.file('/proc/self/mountinfo', '');
    fs.mkdirSync(m.p(`/sys/devices/pci0000:00/${NVME1}/nvme/nvme0/nvme1n1/holders/dm-0`));
    m.file('/proc/swaps', 'Filename\tType\tSize\tUsed\tPriority\n/dev/nvme1n1p2                          partition\t1024\t0\t-2\n');
    r = await cli(m, ['--bind', NVME1]);
    expect(r.err[0]).to.include('nvme1n1 is held by dm-0');
    expect(r.err[0]).to.include('nvme1n1p2 is in use as swap (/dev/nvme1n1p2)');
    expect(m.writes).to.deep.equal([]);
    expect(m.exists(STATE)).to.equal(false);
    expect(before.get(`sys/devices/pci0000:00/${NVME1}/driver`)).to.equal(m.snapshot().get(`sys/devices/pci0000:00/${NVME1}/driver`));
  });

  it('no IOMMU: --driver vfio-pci is refused with the no-IOMMU / uio explanation; by default uio_pci_generic is chosen', async () => {
    m = new FakeMachine(dir.dir + '-d', machineOptions({ iommu: false }));
    try {
      const r = await cli(m, ['--bind', NVME0, '--driver', 'vfio-pci']);
      expect(r.code).to.equal(1);
      expect(r.err.join('\n')).to.match(/vfio-pci needs an IOMMU and this machine has none.*enable_unsafe_noiommu_mode=1.*--driver uio_pci_generic/);
      expect(m.driverOf(NVME0)).to.equal('nvme');
      expect(m.writes).to.deep.equal([]);

      const ok = await cli(m, ['--bind', NVME0]);
      expect(ok.code, ok.err.join('\n')).to.equal(0);
      expect(m.driverOf(NVME0)).to.equal('uio_pci_generic');
      expect(m.commands).to.deep.equal([['modprobe', 'uio_pci_generic']]);
      expect(ok.out).to.include(`${NVME0}: nvme -> uio_pci_generic (no IOMMU and vfio's no-IOMMU mode is off)`);
      expect((await setupReset(m.options())).devices.map((d) => d.driver)).to.deep.equal(['nvme']);
      expect(m.driverOf(NVME0)).to.equal('nvme');
    } finally {
      fs.rmSync(dir.dir + '-d', { recursive: true, force: true });
    }
  });

  it("no IOMMU with vfio's no-IOMMU mode on: vfio-pci, reached through /dev/vfio/noiommu-<group>", async () => {
    m = new FakeMachine(dir.dir + '-e', machineOptions({ iommu: false, noiommu: true, loaded: ['nvme', 'virtio-pci', 'vfio-pci'] }));
    try {
      const r = await setupBind(NVME1, m.options());
      expect(r[0]).to.deep.include({ driver: 'vfio-pci', reason: "no IOMMU, but vfio's no-IOMMU mode is on", vfio: { group: 100, node: '/dev/vfio/noiommu-100', blockers: [] } });
      expect(m.driverOf(NVME1)).to.equal('vfio-pci');
      expect((await setupStatus(m.options())).iommu).to.deep.equal({ present: false, groups: 0, noiommu: true });
      await setupUnbind(NVME1, m.options());
      expect(m.driverOf(NVME1)).to.equal('nvme');
    } finally {
      fs.rmSync(dir.dir + '-e', { recursive: true, force: true });
    }
  });

  it('bad, unknown and non-NVMe devices; --force binds any device and --unbind returns it to its own driver', async () => {
    let r = await cli(m, ['--bind', '0000:01:00']);
    expect(r.code).to.equal(2);
    expect(r.err[0]).to.match(/--bind: '0000:01:00' is not a PCI address/);
    r = await cli(m, ['--bind', '0000:09:00.0']);
    expect(r.code).to.equal(1);
    expect(r.err[0]).to.equal('spdk-node: no PCI device 0000:09:00.0 (/sys/bus/pci/devices/0000:09:00.0 does not exist): spdk-node setup --status lists the NVMe devices');
    r = await cli(m, ['--bind', NIC]);
    expect(r.code).to.equal(1);
    expect(r.err[0]).to.match(/0000:00:03\.0 is not an NVMe device \(class 0x020000, not 0x010802\): pass --force/);
    r = await cli(m, ['--unbind', NIC]);
    expect(r.code).to.equal(1);
    expect(r.err[0]).to.match(/not bound by spdk-node .* and is not an NVMe device/);
    expect(m.writes).to.deep.equal([]);

    r = await cli(m, ['--bind', NIC, '--force', '--driver', 'uio_pci_generic']);
    expect(r.code, r.err.join('\n')).to.equal(0);
    expect(m.driverOf(NIC)).to.equal('uio_pci_generic');
    r = await cli(m, ['--unbind', NIC]);
    expect(r.code, r.err.join('\n')).to.equal(0);
    expect(m.driverOf(NIC)).to.equal('virtio-pci');
    expect(m.read(`/sys/bus/pci/devices/${NIC}/driver_override`)).to.equal('(null)\n');
  });

  it('a driver that does not take the device: an error, the state kept so --reset can undo it', async () => {
    m.failProbe = true;
    const r = await cli(m, ['--bind', NVME0]);
    expect(r.code).to.equal(1);
    expect(r.err[0]).to.match(/0000:01:00\.0 did not bind to vfio-pci \(its driver is now none\)/);
    expect(state(m).devices[NVME0]).to.deep.equal({ driver: 'vfio-pci', originalDriver: 'nvme' });
    m.failProbe = false;
    expect((await cli(m, ['--reset'])).code).to.equal(0);
    expect(m.driverOf(NVME0)).to.equal('nvme');
    expect(m.exists(STATE)).to.equal(false);
  });

  it('modprobe failing or missing: a clear error and no change', async () => {
    m = new FakeMachine(dir.dir + '-f', machineOptions({ modules: [] }));
    try {
      const r = await cli(m, ['--bind', NVME0]);
      expect(r.code).to.equal(1);
      expect(r.err[0]).to.match(/modprobe vfio-pci failed: modprobe: FATAL: Module vfio-pci not found.*install the kernel's modules package or pick another --driver/);
      const missing = await cli(m, ['--bind', NVME0], { run: async () => ({ status: null, stdout: '', stderr: '', error: Object.assign(new Error('spawn modprobe ENOENT'), { code: 'ENOENT' }) }) });
      expect(missing.err[0]).to.match(/the vfio-pci driver is not loaded and modprobe cannot be run .*install kmod/);
      expect(m.driverOf(NVME0)).to.equal('nvme');
      expect(m.writes).to.deep.equal([]);
    } finally {
      fs.rmSync(dir.dir + '-f', { recursive: true, force: true });
    }
  });

  it('--dry-run prints every change and makes none (the tree is byte for byte the same), also without root', async () => {
    const before = m.snapshot();
    const r = await cli(m, ['--dry-run', '--bind', `${NVME0},${NVME1}`, '--hugepages', '64'], { uid: 1000 });
    expect(r.code, r.err.join('\n')).to.equal(0);
    expect(r.out).to.include.members([
      'record state in /var/lib/spdk-node/setup.json',
      'write "64\\n" > /proc/sys/vm/nr_hugepages',
      'mkdir -p /dev/hugepages',
      `run mount -t hugetlbfs -o pagesize=2M nodev ${m.p('/dev/hugepages')}`,
      'run modprobe vfio-pci',
      `write "vfio-pci" > /sys/bus/pci/devices/${NVME0}/driver_override`,
      `write "${NVME0}" > /sys/bus/pci/devices/${NVME0}/driver/unbind`,
      `write "${NVME1}" > /sys/bus/pci/drivers_probe`,
      `${NVME0}: would move nvme -> vfio-pci (the IOMMU is on (3 groups))`,
      'hugepages: would set 64 x 2 MiB (now 0) through /proc/sys/vm/nr_hugepages',
    ]);
    expect(r.out[r.out.length - 1]).to.match(/^dry run: \d+ change\(s\) listed, none made$/);
    expect(m.writes).to.deep.equal([]);
    expect(m.commands).to.deep.equal([]);
    expect(m.snapshot()).to.deep.equal(before);

    // A dry --reset of a real bind lists the way back and leaves it bound.
    expect((await cli(m, ['--bind', NVME0])).code).to.equal(0);
    const bound = m.snapshot();
    const z = await cli(m, ['--reset', '--dry-run', '--json']);
    expect(z.code).to.equal(0);
    const j = JSON.parse(z.out.join('\n'));
    expect(j.dryRun).to.equal(true);
    expect(j.actions).to.deep.include({ op: 'write', path: '/sys/bus/pci/drivers_probe', data: NVME0 });
    expect(m.snapshot()).to.deep.equal(bound);
  });

  it('not root: one line saying so, exit 1; --status still works', async () => {
    for (const args of [['--bind', NVME0], ['--hugepages', '4'], ['--reset'], ['--unbind', NVME0]]) {
      const r = await cli(m, args, { uid: 1000 });
      expect(r.code, args.join(' ')).to.equal(1);
      expect(r.err).to.have.length(1);
      expect(r.err[0]).to.match(/^spdk-node: setup --\w+ needs root: run it as root/);
    }
    expect(m.writes).to.deep.equal([]);
    expect((await cli(m, ['--status'], { uid: 1000 })).code).to.equal(0);
    let thrown: unknown;
    await setupBind(NVME0, m.options({ uid: 1000 })).catch((e) => (thrown = e));
    expect(thrown).to.be.instanceOf(SpdkError).with.property('code', 'EPERM');
  });

  it('usage errors: exit 2 with what is wrong', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['--hugepages', '-1'], /--hugepages needs a whole number/],
      [['--hugepages', '4', '--hugemem', '8'], /--hugepages or --hugemem, not both/],
      [['--driver', 'vfio-pci'], /--driver and --force go with --bind/],
      [['--bind', NVME0, '--driver', 'igb_uio'], /--driver must be vfio-pci or uio_pci_generic/],
      [['--reset', '--bind', NVME0], /--reset undoes everything/],
      [['--bind', NVME0, '--unbind', '01:00.0'], /0000:01:00\.0 is in both --bind and --unbind/],
      [['--frobnicate'], /unknown option '--frobnicate'/],
      [['--bind'], /--bind needs a value/],
    ];
    for (const [args, re] of cases) {
      const r = await cli(m, args);
      expect(r.code, args.join(' ')).to.equal(2);
      expect(r.err.join('\n'), args.join(' ')).to.match(re);
    }
    expect(parseSetupArgs([])).to.include({ status: true });
    expect(parseSetupArgs(['--hugemem', '1025'])).to.include({ pages: 513, status: false });
  });
});

function meminfo(): { total: number; surp: number } {
  const t = fs.readFileSync('/proc/meminfo', 'utf8');
  const get = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(t)?.[1]);
  return { total: get('HugePages_Total'), surp: get('HugePages_Surp') };
}

const hugetlbfsMountpoints = (): string[] =>
  fs
    .readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .filter((l) => l.split(' ')[2] === 'hugetlbfs')
    .map((l) => l.split(' ')[1]);

function run(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [MAIN, 'setup', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('spdk-node setup on this machine: hugepages for real', function () {
  this.timeout(60000);
  const nr = '/proc/sys/vm/nr_hugepages';
  let original = 0;
  let mountsBefore: string[] = [];
  let dir: { dir: string; cleanup: () => void } | undefined;
  let env: NodeJS.ProcessEnv = {};

  before(function () {
    if (process.getuid?.() !== 0 || !fs.existsSync(nr)) {
      console.log('      skipped: needs root and a kernel with hugetlb (/proc/sys/vm/nr_hugepages)');
      this.skip();
    }
    original = Number(fs.readFileSync(nr, 'utf8'));
    mountsBefore = hugetlbfsMountpoints();
    dir = tempDir('spdk-node-setup-real-');
    env = { SPDK_NODE_SETUP_STATE: path.join(dir.dir, 'state.json'), SPDK_NODE_SETUP_ROOT: '' };
  });

  // Whatever happened, the machine leaves as it came: the pool size and the hugetlbfs mounts.
  after(() => {
    if (!dir) return;
    for (const mp of hugetlbfsMountpoints()) {
      if (!mountsBefore.includes(mp)) spawnSync('umount', [mp], { stdio: 'ignore' });
    }
    if (Number(fs.readFileSync(nr, 'utf8')) !== original) fs.writeFileSync(nr, `${original}\n`);
    dir.cleanup();
  });

  it('--hugepages current+64 through the CLI reserves them (meminfo), mounts hugetlbfs if none; --reset puts both back', async () => {
    const want = original + 64;
    const r = await run(['--hugepages', String(want)], env);
    expect(r.code, r.stderr).to.equal(0);
    expect(Number(fs.readFileSync(nr, 'utf8'))).to.equal(want);
    const mi = meminfo();
    expect(mi.total - mi.surp).to.equal(want);
    expect(r.stdout).to.include(`hugepages: ${want} x 2 MiB reserved (${want * 2} MiB; asked for ${want}, was ${original})`);
    if (mountsBefore.length === 0) {
      expect(hugetlbfsMountpoints()).to.deep.equal(['/dev/hugepages']);
      expect(fs.readFileSync('/proc/mounts', 'utf8')).to.match(/^\S+ \/dev\/hugepages hugetlbfs \S*pagesize=2M/m);
    } else {
      expect(hugetlbfsMountpoints()).to.deep.equal(mountsBefore);
    }
    const recorded = JSON.parse(fs.readFileSync(env.SPDK_NODE_SETUP_STATE as string, 'utf8'));
    expect(recorded.hugepages).to.deep.equal({ file: nr, original });

    const s = await run(['--status', '--json'], env);
    expect(s.code, s.stderr).to.equal(0);
    const st = JSON.parse(s.stdout) as SetupStatus;
    const two = st.hugepages.sizes.find((z) => z.sizeKiB === 2048);
    expect(two?.total).to.be.at.least(want);
    expect(two?.nodes.reduce((n, x) => n + x.total, 0)).to.equal(two?.total);
    expect(st.hugepages.mounts.map((m) => m.mountpoint)).to.include(mountsBefore[0] ?? '/dev/hugepages');
    expect(st.state.recorded?.hugepages?.original).to.equal(original);
    expect(st.iommu.present).to.equal(fs.readdirSync('/sys/kernel/iommu_groups').length > 0);

    const z = await run(['--reset'], env);
    expect(z.code, z.stderr).to.equal(0);
    expect(Number(fs.readFileSync(nr, 'utf8'))).to.equal(original);
    const after = meminfo();
    expect(after.total - after.surp).to.equal(original);
    expect(hugetlbfsMountpoints()).to.deep.equal(mountsBefore);
    expect(fs.existsSync(env.SPDK_NODE_SETUP_STATE as string)).to.equal(false);
  });

  it('--dry-run --hugepages changes nothing on the real machine', async () => {
    const r = await run(['--dry-run', '--hugepages', String(original + 64)], env);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.include(`write "${original + 64}\\n" > ${nr}`);
    expect(Number(fs.readFileSync(nr, 'utf8'))).to.equal(original);
    expect(hugetlbfsMountpoints()).to.deep.equal(mountsBefore);
    expect(fs.existsSync(env.SPDK_NODE_SETUP_STATE as string)).to.equal(false);
  });
});
