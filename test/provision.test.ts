/**
 * The provisioning layer (lib/provision) against real engines: one builtin engine in this process
 * (and a second one for placement), and two `spdk-node target` processes reached over a Unix
 * socket and over HTTP with Basic auth, one of which is killed in the middle of an operation.
 * Data goes through the exports with the test's NVMe/TCP host.
 */
import { expect } from 'chai';
import * as crypto from 'node:crypto';
import {
  AlreadyExists,
  FailedPrecondition,
  grpcCodeOf,
  InternalError,
  InvalidArgument,
  NotFound,
  OutOfCapacity,
  ProvisionError,
  Provisioner,
  Unavailable,
} from '../lib/provision';
import type { ProvisionerOptions, Volume } from '../lib/provision';
import { decodeSnapshotName, encodeSnapshotName, parseLvolName, snapshotLvolName } from '../lib/provision/names';
import type { RpcCaller } from '../lib/lvol';
import { RpcHttpClient } from '../lib/rpc/http-client';
import { tempDir } from './helpers/env';
import { forEachEngine, startTarget, useTarget } from './helpers/engines';
import { requireLibspdk } from './helpers/spdk-install';
import { freePort, uuidHostNqn } from './helpers/nvme-tcp-host';
import { connectExport, never, pattern, TargetProcess, Tripwire } from './helpers/provision';

const MIB = 1024 * 1024;
const HOST_A = uuidHostNqn();

/** Resolves with the rejection of `p` (fails the test when it resolves). */
async function rejection(p: Promise<unknown>): Promise<ProvisionError> {
  try {
    await p;
  } catch (e) {
    return e as ProvisionError;
  }
  throw new Error('expected a rejection');
}

interface LvolRow {
  name: string;
  uuid: string;
  lvs: { name: string };
}

async function lvolNames(rpc: RpcCaller): Promise<string[]> {
  return ((await rpc.call('bdev_lvol_get_lvols')) as LvolRow[]).map((l) => `${l.lvs.name}/${l.name}`).sort();
}

async function freeClusters(rpc: RpcCaller): Promise<number[]> {
  return ((await rpc.call('bdev_lvol_get_lvstores')) as Array<{ free_clusters: number }>).map((s) => s.free_clusters);
}

async function subsystems(rpc: RpcCaller): Promise<string[]> {
  return ((await rpc.call('nvmf_get_subsystems')) as Array<{ nqn: string }>).map((s) => s.nqn).filter((n) => !n.includes('discovery'));
}

describe('provisioning: names in the storage, error classes', () => {
  it('snapshot names round-trip through their lvol names; UUIDs in them take 23 bytes; what does not fit is refused', () => {
    const src = crypto.randomUUID();
    const name = `snapshot-${crypto.randomUUID()}`;
    const at = new Date(1_700_000_123_000);
    const lvol = snapshotLvolName(name, src, at);
    expect(lvol.length).to.be.at.most(63);
    expect(encodeSnapshotName(name)).to.have.length(32);
    expect(parseLvolName(lvol, true)).to.deep.equal({ kind: 'snapshot', name, source: src, createdAt: at });
    expect(parseLvolName(lvol, false)).to.deep.equal({ kind: 'foreign' });
    expect(decodeSnapshotName(encodeSnapshotName('a-B.c_d'))).to.equal('a-B.c_d');
    // An upper-case UUID is kept as written (the encoding is lower-case only, so it is reversible).
    const upper = `s-${crypto.randomUUID().toUpperCase()}`;
    expect(encodeSnapshotName(upper)).to.equal(upper);
    expect(parseLvolName('pvc-1', false)).to.deep.equal({ kind: 'volume', name: 'pvc-1' });
    expect(parseLvolName('pvc-1', true)).to.deep.equal({ kind: 'foreign' });
    expect(parseLvolName('__spdk_node_provisioner.me.0123abcd', false)).to.deep.equal({ kind: 'marker', owner: 'me', epoch: '0123abcd' });
  });

  it('grpcCodeOf maps each error class to its gRPC code, anything else to INTERNAL', () => {
    expect(grpcCodeOf(new NotFound('op', 'x'))).to.equal(5);
    expect(grpcCodeOf(new AlreadyExists('op', 'x'))).to.equal(6);
    expect(grpcCodeOf(new OutOfCapacity('op', 'x'))).to.equal(8);
    expect(grpcCodeOf(new InvalidArgument('op', 'x'))).to.equal(3);
    expect(grpcCodeOf(new Unavailable('op', 'n', 'x'))).to.equal(14);
    expect(grpcCodeOf(new FailedPrecondition('op', 'x'))).to.equal(9);
    expect(grpcCodeOf(new InternalError('op', 'x'))).to.equal(13);
    expect(grpcCodeOf(new Error('x'))).to.equal(13);
    expect(grpcCodeOf('x')).to.equal(13);
    expect(new NotFound('op', 'x')).to.include({ code: 'NOT_FOUND', errno: 2, op: 'op' });
  });
});

/*
 * On both engines: the provisioner in the test's process, its node the engine's spdk.rpc
 * (builtin: in-process; libspdk: the engine's RpcForwarder to SPDK's socket in a child).
 */
forEachEngine((engine) =>
describe(`provisioning: one engine (${engine} engine)`, function () {
  this.timeout(30000);
  let port: number;
  const open: Array<{ close(): Promise<void> }> = [];
  // Before the target's hooks: provisioners and hosts go before the target is reset or stopped.
  afterEach(async () => {
    for (const o of open.splice(0).reverse()) await o.close().catch(() => undefined);
  });
  const t = useTarget(engine, { tag: 'provision' });

  const options = (over: Partial<ProvisionerOptions> = {}, rpc: RpcCaller = t.rpc): ProvisionerOptions => ({
    owner: 'test',
    nodes: [{ name: 'local', rpc, listen: [{ traddr: '127.0.0.1', trsvcid: port }] }],
    ...over,
  });
  const start = async (over: Partial<ProvisionerOptions> = {}, rpc?: RpcCaller): Promise<Provisioner> => {
    const p = await Provisioner.start(options(over, rpc));
    open.push(p);
    return p;
  };

  beforeEach(async () => {
    port = await freePort();
    // 256 MiB, 1 MiB clusters: 255 data clusters.
    await t.rpc.call('bdev_malloc_create', { name: 'M0', num_blocks: 65536, block_size: 4096 });
    await t.rpc.call('bdev_lvol_create_lvstore', { bdev_name: 'M0', lvs_name: 'lvs0', cluster_sz: MIB });
  });


  it('creates by name: the same request gives the same volume, other parameters AlreadyExists, bad input InvalidArgument with nothing changed', async () => {
    const p = await start();
    const before = await lvolNames(t.rpc);
    expect(before).to.deep.equal(['lvs0/__spdk_node_provisioner.test.' + before[0].split('.').pop()]);
    const v = await p.createVolume({ name: 'pvc-a', sizeBytes: 10 * MIB + 1 });
    expect(v).to.include({ name: 'pvc-a', node: 'local', pool: 'lvs0', sizeBytes: 11 * MIB, thin: true, allocatedBytes: 0 });
    expect(v.id).to.equal(`local:${v.uuid}`);
    expect(await p.createVolume({ name: 'pvc-a', sizeBytes: 10 * MIB + 1 })).to.deep.equal(v);
    expect(await p.createVolume({ name: 'pvc-a', sizeBytes: 11 * MIB })).to.deep.equal(v);
    expect(await p.createVolume({ name: 'pvc-a', sizeBytes: 5 * MIB, limitBytes: 20 * MIB })).to.deep.equal(v);
    const other = await rejection(p.createVolume({ name: 'pvc-a', sizeBytes: 12 * MIB }));
    expect(other).to.be.instanceOf(AlreadyExists);
    expect(other.message).to.match(/already exists with other parameters.*11534336 bytes, asked 12582912/);
    expect(await rejection(p.createVolume({ name: 'pvc-a', sizeBytes: 11 * MIB, thin: false }))).to.be.instanceOf(AlreadyExists);
    expect(await p.getVolume(v.id)).to.deep.equal(v);
    expect(await p.findVolume('pvc-a')).to.deep.equal(v);
    expect(await p.findVolume('pvc-b')).to.equal(undefined);

    const after = await lvolNames(t.rpc);
    for (const bad of [
      { name: '', sizeBytes: MIB },
      { name: '__x', sizeBytes: MIB },
      { name: 'a/b', sizeBytes: MIB },
      { name: 'x'.repeat(64), sizeBytes: MIB },
      { name: 'ok', sizeBytes: 0 },
      { name: 'ok', sizeBytes: 1.5 },
      { name: 'ok', sizeBytes: MIB, thin: 'yes' },
      { name: 'ok', sizeBytes: MIB, limitBytes: 1 },
      { name: 'ok', sizeBytes: MIB, source: {} },
      { name: 'ok', sizeBytes: MIB, source: { snapshotId: 'nope' } },
      { name: 'ok', sizeBytes: MIB, topology: [{ zone: 1 }] },
      null,
    ]) {
      const e = await rejection(p.createVolume(bad as never));
      expect(e, JSON.stringify(bad)).to.be.instanceOf(InvalidArgument);
      expect(grpcCodeOf(e)).to.equal(3);
    }
    expect(await rejection(p.createVolume({ name: 'ok', sizeBytes: MIB, node: 'elsewhere' }))).to.be.instanceOf(NotFound);
    expect(await rejection(p.getVolume('local:not-a-uuid'))).to.be.instanceOf(InvalidArgument);
    expect(await rejection(p.getVolume(`local:${crypto.randomUUID()}`))).to.be.instanceOf(NotFound);
    expect(await rejection(p.getVolume(`other:${v.uuid}`))).to.be.instanceOf(NotFound);
    expect(await lvolNames(t.rpc)).to.deep.equal(after);
  });

  it('50 parallel identical creates end in one volume, 50 parallel deletes in none, and free space returns exactly to its start', async () => {
    const p = await start();
    const free0 = await freeClusters(t.rpc);
    const lvols0 = await lvolNames(t.rpc);
    const vols = await Promise.all(Array.from({ length: 50 }, () => p.createVolume({ name: 'pvc-par', sizeBytes: 16 * MIB, thin: false })));
    expect(new Set(vols.map((v) => v.id)).size).to.equal(1);
    expect(await lvolNames(t.rpc)).to.deep.equal([...lvols0, 'lvs0/pvc-par'].sort());
    expect((await freeClusters(t.rpc))[0]).to.equal(free0[0] - 16);
    // 20 different volumes in parallel, as spdk-csi's test does.
    const many = await Promise.all(Array.from({ length: 20 }, (_, i) => p.createVolume({ name: `pvc-${i}`, sizeBytes: 4 * MIB, thin: i % 2 === 0 })));
    expect(new Set(many.map((v) => v.id)).size).to.equal(20);
    await Promise.all([...Array.from({ length: 50 }, () => p.deleteVolume(vols[0].id)), ...many.map((v) => p.deleteVolume(v.id))]);
    expect(await lvolNames(t.rpc)).to.deep.equal(lvols0);
    expect(await freeClusters(t.rpc)).to.deep.equal(free0);
  });

  it('thin volumes within the over-commit limit, thick ones within free clusters (OutOfCapacity otherwise); capacity per pool and node', async () => {
    const p = await start({ nodes: [{ name: 'local', rpc: t.rpc, overcommit: { lvs0: 2 } }] });
    // The store's data clusters: 255 of the 256 MiB on builtin, 254 on SPDK, whose metadata takes
    // one cluster more (docs/differences.md, "total_data_clusters").
    const n = ((await t.rpc.call('bdev_lvol_get_lvstores')) as Array<{ total_data_clusters: number }>)[0].total_data_clusters;
    expect(n).to.equal(engine === 'builtin' ? 255 : 254);
    const cap0 = await p.capacityReport();
    const pool0 = cap0.nodes[0].pools[0];
    expect(pool0).to.include({ node: 'local', pool: 'lvs0', clusterSize: MIB, totalBytes: n * MIB, freeBytes: n * MIB, provisionedBytes: 0, overcommit: 2 });
    expect(pool0.maxProvisionedBytes).to.equal(2 * n * MIB);
    expect(pool0.availableThinBytes).to.equal(2 * n * MIB);
    expect(pool0.availableThickBytes).to.equal(n * MIB);

    const thick = await p.createVolume({ name: 'thick', sizeBytes: 100 * MIB, thin: false });
    expect(thick.allocatedBytes).to.equal(100 * MIB);
    const thin = await p.createVolume({ name: 'thin', sizeBytes: 300 * MIB });
    expect(thin.allocatedBytes).to.equal(0);
    // Free: n - 100 clusters; thin room: 2n - 400 (builtin: 155 and 110 MiB).
    const free = n - 100;
    const room = 2 * n - 400;
    const cap = (await p.capacityReport()).nodes[0];
    expect(cap).to.include({ freeBytes: free * MIB, provisionedBytes: 400 * MIB, availableThinBytes: room * MIB, availableThickBytes: room * MIB });
    // Thick beyond the free clusters; thin beyond the limit: refused, nothing made.
    const lvols = await lvolNames(t.rpc);
    const e1 = await rejection(p.createVolume({ name: 'big-thick', sizeBytes: (free + 1) * MIB, thin: false }));
    expect(e1).to.be.instanceOf(OutOfCapacity);
    expect(grpcCodeOf(e1)).to.equal(8);
    expect(await rejection(p.createVolume({ name: 'big-thin', sizeBytes: (room + 1) * MIB }))).to.be.instanceOf(OutOfCapacity);
    expect(await lvolNames(t.rpc)).to.deep.equal(lvols);
    expect((await p.createVolume({ name: 'fits', sizeBytes: room * MIB })).sizeBytes).to.equal(room * MIB);
    expect((await p.capacityReport({ node: 'local', pool: 'lvs0' })).availableThinBytes).to.equal(0);
    expect(await rejection(p.capacityReport({ node: 'nowhere' }))).to.be.instanceOf(NotFound);
  });

  it('expands a volume (rounded up, never shrinks), within the over-commit limit', async () => {
    const p = await start();
    const v = await p.createVolume({ name: 'grow', sizeBytes: 8 * MIB });
    expect((await p.expandVolume(v.id, 20 * MIB + 5)).sizeBytes).to.equal(21 * MIB);
    expect((await p.expandVolume(v.id, 4 * MIB)).sizeBytes).to.equal(21 * MIB);
    expect(await rejection(p.expandVolume(v.id, 300 * MIB))).to.be.instanceOf(OutOfCapacity);
    expect(await rejection(p.expandVolume(v.id, -1))).to.be.instanceOf(InvalidArgument);
    expect(await rejection(p.expandVolume(`local:${crypto.randomUUID()}`, MIB))).to.be.instanceOf(NotFound);
    expect((await p.getVolume(v.id)).sizeBytes).to.equal(21 * MIB);
  });

  it('lists volumes by id a page at a time; tokens survive creates and deletes between pages', async () => {
    const p = await start();
    const vols = await Promise.all(['a', 'b', 'c', 'd', 'e'].map((n) => p.createVolume({ name: `list-${n}`, sizeBytes: MIB })));
    const ids = vols.map((v) => v.id).sort();
    const page1 = await p.listVolumes({ maxEntries: 2 });
    expect(page1.entries.map((v) => v.id)).to.deep.equal(ids.slice(0, 2));
    await p.deleteVolume(ids[2]);
    const page2 = await p.listVolumes({ maxEntries: 2, startingToken: page1.nextToken });
    expect(page2.entries.map((v) => v.id)).to.deep.equal(ids.slice(3, 5));
    expect(page2.nextToken).to.equal(undefined);
    expect((await p.listVolumes()).entries).to.have.length(4);
    expect((await p.listVolumes({ maxEntries: 0 })).entries).to.have.length(4);
    expect(await rejection(p.listVolumes({ startingToken: 'garbage!' }))).to.be.instanceOf(InvalidArgument);
    expect(await rejection(p.listVolumes({ maxEntries: -1 }))).to.be.instanceOf(InvalidArgument);
    const snapTok = (await p.listSnapshots({ maxEntries: 1 })).nextToken;
    expect(snapTok).to.equal(undefined);
  });

  it('snapshots: idempotent by name, AlreadyExists for another volume, listed by volume a page at a time (also after it is gone), deleted', async () => {
    const p = await start();
    const v1 = await p.createVolume({ name: 'v1', sizeBytes: 8 * MIB });
    const v2 = await p.createVolume({ name: 'v2', sizeBytes: 8 * MIB });
    const name = `snapshot-${crypto.randomUUID()}`;
    const s = await p.createSnapshot({ name, volumeId: v1.id });
    expect(s).to.include({ name, node: 'local', pool: 'lvs0', sourceVolumeId: v1.id, sizeBytes: 8 * MIB, readyToUse: true });
    expect(Math.abs(s.createdAt.getTime() - Date.now())).to.be.below(60000);
    expect(await p.createSnapshot({ name, volumeId: v1.id })).to.deep.equal(s);
    expect(await rejection(p.createSnapshot({ name, volumeId: v2.id }))).to.be.instanceOf(AlreadyExists);
    expect(await rejection(p.createSnapshot({ name: 'x', volumeId: `local:${crypto.randomUUID()}` }))).to.be.instanceOf(NotFound);
    expect(await rejection(p.createSnapshot({ name: 'y'.repeat(34), volumeId: v1.id }))).to.be.instanceOf(InvalidArgument);
    const more = [await p.createSnapshot({ name: 's-2', volumeId: v1.id }), await p.createSnapshot({ name: 's-3', volumeId: v1.id })];
    await p.createSnapshot({ name: 's-other', volumeId: v2.id });
    const ofV1 = [s, ...more].map((x) => x.id).sort();
    const pg1 = await p.listSnapshots({ volumeId: v1.id, maxEntries: 2 });
    const pg2 = await p.listSnapshots({ volumeId: v1.id, maxEntries: 2, startingToken: pg1.nextToken });
    expect([...pg1.entries, ...pg2.entries].map((x) => x.id)).to.deep.equal(ofV1);
    expect(pg2.nextToken).to.equal(undefined);
    expect((await p.listSnapshots()).entries).to.have.length(4);
    expect(await p.getSnapshot(s.id)).to.deep.equal(s);
    expect(await p.findSnapshot(name)).to.deep.equal(s);
    expect(await rejection(p.getVolume(s.id))).to.be.instanceOf(NotFound);
    expect(await rejection(p.getSnapshot(v1.id))).to.be.instanceOf(NotFound);
    // The source volume goes; its snapshots stay, still listed by its id.
    await p.deleteVolume(v1.id);
    expect((await p.listSnapshots({ volumeId: v1.id })).entries.map((x) => x.id)).to.deep.equal(ofV1);
    for (const x of [s, ...more]) await p.deleteSnapshot(x.id);
    await p.deleteSnapshot(s.id);
    expect((await p.listSnapshots({ volumeId: v1.id })).entries).to.deep.equal([]);
  });

  it('exports one subsystem per volume (NQN from the id, model number = UUID, stable serial, host allow-list); data written through it reads back, and a restored snapshot and a clone carry it', async () => {
    const p = await start();
    const v = await p.createVolume({ name: 'data', sizeBytes: 16 * MIB });
    const e = await p.exportVolume(v.id, { hosts: [HOST_A.hostnqn] });
    expect(e).to.deep.include({ volumeId: v.id, nqn: `nqn.2016-06.io.spdk-node:vol:${v.uuid}`, nsid: 1, modelNumber: v.uuid, allowAnyHost: false, hosts: [HOST_A.hostnqn] });
    expect(e.serialNumber).to.equal(v.uuid.replace(/-/g, '').slice(0, 20));
    expect(e.addresses).to.deep.equal([
      {
        trtype: 'TCP',
        adrfam: 'IPv4',
        traddr: '127.0.0.1',
        trsvcid: String(port),
        transportId: `trtype:TCP adrfam:IPv4 traddr:127.0.0.1 trsvcid:${port} subnqn:${e.nqn}`,
        nvmeConnectArgs: ['-t', 'tcp', '-a', '127.0.0.1', '-s', String(port), '-n', e.nqn],
      },
    ]);
    expect(await p.exportVolume(v.id, { hosts: [HOST_A.hostnqn] })).to.deep.equal(e);
    expect(await p.getExport(v.id)).to.deep.equal(e);
    expect(await rejection(p.exportVolume(v.id, { hosts: ['not an nqn'] }))).to.be.instanceOf(InvalidArgument);

    // Another host is refused; the allowed one writes.
    expect(await rejection(connectExport(e, uuidHostNqn().hostnqn) as never)).to.be.an('error');
    const c = await connectExport(e, HOST_A.hostnqn);
    open.push(c);
    expect(c.identity?.mn.trim()).to.equal(v.uuid);
    expect(c.identity?.sn.trim()).to.equal(e.serialNumber);
    const data = pattern(64 * 1024, 7);
    await c.write(1, 0, data);
    await c.write(1, 2048, data);
    expect((await c.read(1, 0, 16)).equals(data)).to.equal(true);

    const snap = await p.createSnapshot({ name: 'data-snap', volumeId: v.id });
    await c.write(1, 0, pattern(64 * 1024, 8)); // after the snapshot: not in it
    const restored = await p.restoreSnapshot(snap.id, { name: 'data-restored', sizeBytes: 32 * MIB });
    expect(restored).to.include({ sizeBytes: 32 * MIB, thin: true });
    expect(restored.source).to.deep.equal({ snapshotId: snap.id });
    const clone = await p.createVolume({ name: 'data-clone', sizeBytes: 16 * MIB, thin: false, source: { volumeId: v.id } });
    expect(clone).to.include({ thin: false, allocatedBytes: 16 * MIB });
    for (const [vol, first] of [
      [restored, data],
      [clone, pattern(64 * 1024, 8)],
    ] as Array<[Volume, Buffer]>) {
      const ex = await p.exportVolume(vol.id);
      expect(ex.allowAnyHost).to.equal(true);
      const cc = await connectExport(ex);
      open.push(cc);
      expect((await cc.read(1, 0, 16)).equals(first), `${vol.name} block 0`).to.equal(true);
      expect((await cc.read(1, 2048, 16)).equals(data), `${vol.name} block 2048`).to.equal(true);
    }
    // Opening the export to any host and closing it again.
    expect((await p.exportVolume(v.id)).allowAnyHost).to.equal(true);
    expect((await p.exportVolume(v.id, { hosts: [HOST_A.hostnqn] })).hosts).to.deep.equal([HOST_A.hostnqn]);

    // Deleting an exported volume removes its export first (the namespace claims the bdev).
    await p.deleteVolume(restored.id);
    expect(await subsystems(t.rpc)).to.not.include(`nqn.2016-06.io.spdk-node:vol:${restored.uuid}`);
    await p.unexportVolume(clone.id);
    await p.unexportVolume(clone.id);
    expect(await p.getExport(clone.id)).to.equal(undefined);
    expect(await subsystems(t.rpc)).to.deep.equal([e.nqn]);
  });

  it('deleting a snapshot with several clones detaches all but one first: every clone keeps its data and the space returns', async () => {
    const p = await start();
    const free0 = await freeClusters(t.rpc);
    const lvols0 = await lvolNames(t.rpc);
    const v = await p.createVolume({ name: 'src', sizeBytes: 8 * MIB });
    const ev = await p.exportVolume(v.id);
    const c = await connectExport(ev);
    const data = pattern(512 * 1024, 21);
    for (let off = 0; off < data.length; off += 65536) await c.write(1, off / 4096, data.subarray(off, off + 65536));
    await c.close();
    const s = await p.createSnapshot({ name: 'shared', volumeId: v.id });
    const r1 = await p.restoreSnapshot(s.id, { name: 'r1' });
    const r2 = await p.restoreSnapshot(s.id, { name: 'r2' });
    // v, r1 and r2 are all clones of s: SPDK alone refuses to delete it.
    const direct = await t.rpc.call('bdev_lvol_delete', { name: s.uuid }).catch((e: Error) => e);
    expect(direct).to.be.an('error');
    await p.deleteSnapshot(s.id);
    expect(await rejection(p.getSnapshot(s.id))).to.be.instanceOf(NotFound);
    for (const vol of [v, r1, r2]) {
      const ex = await p.exportVolume(vol.id);
      const cc = await connectExport(ex);
      for (let off = 0; off < data.length; off += 65536) {
        expect((await cc.read(1, off / 4096, 16)).equals(data.subarray(off, off + 65536)), `${vol.name} at ${off}`).to.equal(true);
      }
      await cc.close();
    }
    for (const vol of [v, r1, r2]) await p.deleteVolume(vol.id);
    expect(await lvolNames(t.rpc)).to.deep.equal(lvols0);
    expect(await freeClusters(t.rpc)).to.deep.equal(free0);
  });

  it('a volume cloned from a volume outlives its source; the hidden snapshot goes with the last of them', async () => {
    const p = await start();
    const lvols0 = await lvolNames(t.rpc);
    const free0 = await freeClusters(t.rpc);
    const v = await p.createVolume({ name: 'orig', sizeBytes: 4 * MIB, thin: false });
    const snap = await p.createSnapshot({ name: 'orig-snap', volumeId: v.id });
    const c1 = await p.createVolume({ name: 'copy-1', sizeBytes: 4 * MIB, source: { volumeId: v.id } });
    const c2 = await p.createVolume({ name: 'copy-2', sizeBytes: 8 * MIB, source: { volumeId: v.id } });
    expect(c1.source).to.deep.equal({ volumeId: v.id });
    expect(c2).to.include({ sizeBytes: 8 * MIB });
    expect((await p.getVolume(v.id)).source).to.equal(undefined);
    // The same request again is the same volume; from another source it is not.
    expect((await p.createVolume({ name: 'copy-1', sizeBytes: 4 * MIB, source: { volumeId: v.id } })).id).to.equal(c1.id);
    expect(await rejection(p.createVolume({ name: 'copy-1', sizeBytes: 4 * MIB, source: { snapshotId: snap.id } }))).to.be.instanceOf(AlreadyExists);
    expect(await rejection(p.createVolume({ name: 'copy-1', sizeBytes: 4 * MIB }))).to.be.instanceOf(AlreadyExists);
    expect(await rejection(p.createVolume({ name: 'copy-3', sizeBytes: 2 * MIB, source: { volumeId: v.id } }))).to.be.instanceOf(InvalidArgument);
    expect(await rejection(p.createVolume({ name: 'copy-3', sizeBytes: 4 * MIB, source: { volumeId: `local:${crypto.randomUUID()}` } }))).to.be.instanceOf(NotFound);
    expect((await p.listVolumes()).entries.map((x) => x.name).sort()).to.deep.equal(['copy-1', 'copy-2', 'orig']);
    await p.deleteVolume(v.id);
    expect((await p.getVolume(c1.id)).source).to.deep.equal({ volumeId: v.id });
    await p.deleteSnapshot(snap.id);
    await p.deleteVolume(c1.id);
    expect((await lvolNames(t.rpc)).some((n) => n.includes('__clone-'))).to.equal(true);
    await p.deleteVolume(c2.id);
    expect(await lvolNames(t.rpc)).to.deep.equal(lvols0);
    expect(await freeClusters(t.rpc)).to.deep.equal(free0);
  });

  it('a restarted provisioner finds every volume, snapshot and export; one that stopped mid-create leaves nothing once the next one sweeps', async () => {
    const wire = new Tripwire(t.rpc);
    const p1 = await start({}, wire);
    const v = await p1.createVolume({ name: 'keep', sizeBytes: 8 * MIB });
    const s = await p1.createSnapshot({ name: 'keep-snap', volumeId: v.id });
    const e = await p1.exportVolume(v.id, { hosts: [HOST_A.hostnqn] });
    const lvols = await lvolNames(t.rpc);
    const free = await freeClusters(t.rpc);
    // p1 stops for good just before renaming the volume it built from the snapshot.
    wire.arm('bdev_lvol_rename', never);
    void p1.restoreSnapshot(s.id, { name: 'half', thin: false });
    while (!(await lvolNames(t.rpc)).some((n) => n.includes('__tmp-'))) await new Promise((r) => setTimeout(r, 10));
    expect((await freeClusters(t.rpc))[0]).to.equal(free[0] - 8);

    const p2 = await start();
    // The same lvols as before p1 stopped (the marker renamed to p2's run): the temporary one is gone.
    const epochless = (names: string[]): string[] => names.map((n) => n.replace(/(__spdk_node_provisioner\.test)\.[0-9a-f]{8}$/, '$1'));
    expect(epochless(await lvolNames(t.rpc))).to.deep.equal(epochless(lvols));
    expect(await freeClusters(t.rpc)).to.deep.equal(free);
    expect(await p2.getVolume(v.id)).to.deep.equal(v);
    expect(await p2.findVolume('keep')).to.deep.equal(v);
    expect(await p2.getSnapshot(s.id)).to.deep.equal(s);
    expect(await p2.getExport(v.id)).to.deep.equal(e);
    expect((await p2.listVolumes()).entries.map((x) => x.id)).to.deep.equal([v.id]);
    expect(await p2.findVolume('half')).to.equal(undefined);
    const half = await p2.restoreSnapshot(s.id, { name: 'half', thin: false });
    expect(half).to.include({ name: 'half', thin: false, sizeBytes: 8 * MIB });
    // Another run of the same owner takes the pools over from p2: p2 fails loudly instead of
    // writing (p1 cannot even try: it is stuck holding its locks).
    const p3 = await start();
    const lost = await rejection(p2.createVolume({ name: 'late', sizeBytes: MIB }));
    expect(lost).to.be.instanceOf(FailedPrecondition);
    expect(lost.message).to.match(/no longer owns pool lvs0/);
    expect(await p3.findVolume('late')).to.equal(undefined);
  });

  it('a second provisioner with another owner is refused; told to take over, it does and the first one fails its next change', async () => {
    const p1 = await start();
    await p1.createVolume({ name: 'mine', sizeBytes: MIB });
    const refused = await rejection(Provisioner.start(options({ owner: 'intruder' })));
    expect(refused).to.be.instanceOf(FailedPrecondition);
    expect(refused.message).to.match(/owned by provisioner 'test'.*takeOver/);
    expect(grpcCodeOf(refused)).to.equal(9);
    const p2 = await start({ owner: 'intruder', takeOver: true });
    expect((await lvolNames(t.rpc)).filter((n) => n.includes('__spdk_node_provisioner'))).to.have.length(1);
    expect((await lvolNames(t.rpc)).find((n) => n.includes('__spdk_node_provisioner'))).to.match(/\.intruder\./);
    expect(await rejection(p1.createVolume({ name: 'dup', sizeBytes: MIB }))).to.be.instanceOf(FailedPrecondition);
    expect(await rejection(p1.deleteVolume((await p2.findVolume('mine'))!.id))).to.be.instanceOf(FailedPrecondition);
    expect((await p2.createVolume({ name: 'dup', sizeBytes: MIB })).name).to.equal('dup');
    expect((await p2.listVolumes()).entries.map((v) => v.name).sort()).to.deep.equal(['dup', 'mine']);
  });

  it('places each volume in the pool with the most free space that satisfies it; equal candidates by node, then pool name; labels as topology', async () => {
    const other = await startTarget(engine, { tag: 'provision-other' });
    open.push({ close: () => other.stop() });
    await other.rpc.call('bdev_malloc_create', { name: 'M0', num_blocks: 65536, block_size: 4096 });
    await other.rpc.call('bdev_lvol_create_lvstore', { bdev_name: 'M0', lvs_name: 'big', cluster_sz: MIB });
    await t.rpc.call('bdev_malloc_create', { name: 'M1', num_blocks: 65536, block_size: 4096 });
    await t.rpc.call('bdev_lvol_create_lvstore', { bdev_name: 'M1', lvs_name: 'lvs1', cluster_sz: MIB });
    const p = await start({
      nodes: [
        { name: 'b-node', rpc: other.rpc, labels: { zone: 'z2' } },
        { name: 'a-node', rpc: t.rpc, labels: { zone: 'z1' } },
      ],
    });
    // Three pools of 255 MiB free: a-node/lvs0 wins (node name first, then pool name).
    const v1 = await p.createVolume({ name: 'p1', sizeBytes: 10 * MIB, thin: false });
    expect([v1.node, v1.pool]).to.deep.equal(['a-node', 'lvs0']);
    const v2 = await p.createVolume({ name: 'p2', sizeBytes: 10 * MIB, thin: false });
    expect([v2.node, v2.pool]).to.deep.equal(['a-node', 'lvs1']);
    const v3 = await p.createVolume({ name: 'p3', sizeBytes: 10 * MIB, thin: false });
    expect([v3.node, v3.pool]).to.deep.equal(['b-node', 'big']);
    // All three have 245 MiB free again: a-node/lvs0 first...
    const v4 = await p.createVolume({ name: 'p4', sizeBytes: 20 * MIB, thin: false });
    expect([v4.node, v4.pool]).to.deep.equal(['a-node', 'lvs0']);
    // ...and now it has the least (225): the next goes to a-node/lvs1 (245, tied with b-node/big).
    expect((await p.createVolume({ name: 'p5', sizeBytes: MIB })).pool).to.equal('lvs1');
    const z2 = await p.createVolume({ name: 'p6', sizeBytes: MIB, topology: [{ zone: 'z2' }] });
    expect(z2).to.deep.include({ node: 'b-node', topology: { zone: 'z2' } });
    expect((await p.createVolume({ name: 'p7', sizeBytes: MIB, pool: 'lvs0' })).pool).to.equal('lvs0');
    expect(await rejection(p.createVolume({ name: 'p8', sizeBytes: MIB, topology: [{ zone: 'z9' }] }))).to.be.instanceOf(OutOfCapacity);
    expect(await rejection(p.createVolume({ name: 'p6', sizeBytes: MIB, topology: [{ zone: 'z1' }] }))).to.be.instanceOf(AlreadyExists);
    // A clone stays with its source.
    expect((await p.createVolume({ name: 'p9', sizeBytes: MIB, source: { volumeId: z2.id } })).node).to.equal('b-node');
    expect(await rejection(p.createVolume({ name: 'p10', sizeBytes: MIB, node: 'a-node', source: { volumeId: z2.id } }))).to.be.instanceOf(InvalidArgument);
    const cap = await p.capacityReport({ topology: [{ zone: 'z1' }] });
    expect(cap.nodes.map((n) => n.node)).to.deep.equal(['a-node']);
    expect(cap.nodes[0].pools.map((x) => x.pool)).to.deep.equal(['lvs0', 'lvs1']);
  });

}),
);

/*
 * `spdk-node target --engine <engine>` processes (libspdk: SPDK in each, without hugepages),
 * reached over a Unix socket and over HTTP; one is killed by pid in the middle of an operation.
 */
forEachEngine((engine) =>
describe(`provisioning: two target processes (Unix socket and HTTP) (${engine} engine)`, function () {
  this.timeout(60000);
  const tmp = tempDir('spdk-node-prov-');
  let a: TargetProcess;
  let b: TargetProcess;
  let wireB: Tripwire;
  let httpB: RpcHttpClient;
  let prov: Provisioner;
  let portA: number;
  let portB: number;
  const creds = { user: 'csi', password: 'pw-7f3a' };

  before(async function () {
    if (engine === 'libspdk') requireLibspdk(this, `${this.test?.parent?.fullTitle()}`);
    const started = await Promise.allSettled([
      TargetProcess.start({ dir: tmp.dir, tag: 'a', sizeMiB: 64, lvsName: 'lvs-a', engine }),
      TargetProcess.start({ dir: tmp.dir, tag: 'b', sizeMiB: 96, lvsName: 'lvs-b', http: creds, engine }),
    ]);
    // Whichever started is stopped in after(), even when the other did not.
    [a, b] = started.map((r) => (r.status === 'fulfilled' ? r.value : undefined)) as [TargetProcess, TargetProcess];
    for (const r of started) if (r.status === 'rejected') throw r.reason;
    portA = await freePort();
    portB = await freePort();
    httpB = new RpcHttpClient(b.httpUrl as string, { ...creds, timeoutMs: 10000 });
    wireB = new Tripwire(httpB);
    prov = await Provisioner.start({
      owner: 'two-nodes',
      nodes: [
        { name: 'node-a', rpc: { socket: a.socket }, listen: [{ traddr: '127.0.0.1', trsvcid: portA }], labels: { zone: 'za' } },
        { name: 'node-b', rpc: wireB, listen: [{ traddr: '127.0.0.1', trsvcid: portB }], labels: { zone: 'zb' } },
      ],
    });
  });

  after(async () => {
    await prov?.close();
    httpB?.close();
    const codes = await Promise.all([a?.stop(), b?.stop()]);
    tmp.cleanup();
    if (a && b) expect(codes).to.deep.equal([0, 0]);
  });

  it('places by free space across the nodes, reaches the remote one over HTTP, and data goes through its export', async () => {
    // node-b's pool is the larger one: it takes the first volume; a topology asks for node-a.
    const vb = await prov.createVolume({ name: 'two-b', sizeBytes: 8 * MIB, thin: false });
    expect([vb.node, vb.pool]).to.deep.equal(['node-b', 'lvs-b']);
    const va = await prov.createVolume({ name: 'two-a', sizeBytes: 8 * MIB, topology: [{ zone: 'za' }] });
    expect([va.node, va.pool]).to.deep.equal(['node-a', 'lvs-a']);
    expect((await prov.listVolumes()).entries.map((v) => v.id)).to.deep.equal([va.id, vb.id]);
    const cap = await prov.capacityReport();
    expect(cap.nodes.map((n) => [n.node, n.totalBytes])).to.deep.equal([
      ['node-a', 63 * MIB],
      ['node-b', 95 * MIB],
    ]);
    expect(cap.freeBytes).to.equal((63 + 95 - 8) * MIB);

    const e = await prov.exportVolume(vb.id, { hosts: [HOST_A.hostnqn] });
    expect(e.addresses[0].trsvcid).to.equal(String(portB));
    const c = await connectExport(e, HOST_A.hostnqn);
    const data = pattern(128 * 1024, 99);
    try {
      expect(c.identity?.mn.trim()).to.equal(vb.uuid);
      await c.write(1, 100, data);
      expect((await c.read(1, 100, 32)).equals(data)).to.equal(true);
    } finally {
      await c.close();
    }
    const s = await prov.createSnapshot({ name: 'two-b-snap', volumeId: vb.id });
    const r = await prov.restoreSnapshot(s.id, { name: 'two-b-restored' });
    expect(r.node).to.equal('node-b');
    const er = await prov.exportVolume(r.id);
    const cr = await connectExport(er);
    try {
      expect((await cr.read(1, 100, 32)).equals(data)).to.equal(true);
    } finally {
      await cr.close();
    }
  });

  it('a node killed in the middle of an operation: Unavailable, nothing made on the survivor; back again, the retry completes and the leftovers are swept', async () => {
    const ca = a.client();
    try {
      const v = await prov.createVolume({ name: 'mid-src', sizeBytes: 8 * MIB, topology: [{ zone: 'zb' }] });
      const s = await prov.createSnapshot({ name: 'mid-snap', volumeId: v.id });
      await prov.exportVolume(v.id);
      const lvolsA = await lvolNames(ca);
      const subsA = await subsystems(ca);
      const freeB = await freeClusters(httpB);

      // node-b, the roomier node, is chosen for a new volume and dies as it is asked to create
      // it: Unavailable, and the volume is not made on node-a instead.
      wireB.arm('bdev_lvol_create', () => b.kill());
      const e0 = await rejection(prov.createVolume({ name: 'mid-new', sizeBytes: 4 * MIB, thin: false }));
      expect(e0).to.be.instanceOf(Unavailable);
      expect(await lvolNames(ca)).to.deep.equal(lvolsA);
      await b.restart();

      // node-b dies just before the thick restored volume, built and copied, gets its name.
      wireB.arm('bdev_lvol_rename', () => b.kill());
      const e = await rejection(prov.restoreSnapshot(s.id, { name: 'mid-restored', thin: false }));
      expect(e).to.be.instanceOf(Unavailable);
      expect(e).to.include({ node: 'node-b' });
      expect(grpcCodeOf(e)).to.equal(14);
      // While it is away: a create cannot know the name is free there; reads of node-a work.
      expect(await rejection(prov.createVolume({ name: 'while-down', sizeBytes: MIB, topology: [{ zone: 'za' }] }))).to.be.instanceOf(Unavailable);
      expect(await rejection(prov.listVolumes())).to.be.instanceOf(Unavailable);
      expect((await prov.listVolumes({ node: 'node-a' })).entries.map((x) => x.name)).to.deep.equal(['two-a']);
      expect(await lvolNames(ca)).to.deep.equal(lvolsA);
      expect(await subsystems(ca)).to.deep.equal(subsA);

      await b.restart();
      // The half-built volume survived in node-b's lvstore, under its temporary name.
      expect((await lvolNames(httpB)).filter((n) => n.includes('__tmp-'))).to.have.length(1);
      const r = await prov.restoreSnapshot(s.id, { name: 'mid-restored', thin: false });
      expect(r).to.include({ node: 'node-b', thin: false, sizeBytes: 8 * MIB });
      expect((await lvolNames(httpB)).filter((n) => n.includes('__tmp-'))).to.deep.equal([]);
      expect((await freeClusters(httpB))[0]).to.equal(freeB[0] - 8);
      // Exports do not survive a target restart (SPDK keeps no nvmf config): export again.
      expect(await prov.getExport(v.id)).to.equal(undefined);
      const ex = await prov.exportVolume(v.id);
      const c = await connectExport(ex);
      await c.close();
      expect(await lvolNames(ca)).to.deep.equal(lvolsA);
      expect((await prov.createVolume({ name: 'mid-new', sizeBytes: 4 * MIB, thin: false })).node).to.equal('node-b');
    } finally {
      await ca.close();
    }
  });

  it('refused HTTP credentials make the node Unavailable, saying why', async () => {
    const p = new Provisioner({ owner: 'x', nodes: [{ name: 'node-b', rpc: { url: b.httpUrl as string, user: creds.user, password: 'wrong' } }] });
    try {
      const e = await rejection(p.createVolume({ name: 'nope', sizeBytes: MIB }));
      expect(e).to.be.instanceOf(Unavailable);
      expect(e.message).to.match(/HTTP 401/);
    } finally {
      await p.close();
    }
  });
}),
);
