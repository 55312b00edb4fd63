/**
 * The builtin NVMe/TCP target's own properties (the protocol itself is test/nvmf-tcp.test.ts):
 * zero-copy data paths (the native copy counter), I/O queues spread over the reactors, keep-alive
 * expiry, namespace changes seen by connected hosts (AER + changed namespace list), subsystem
 * deletion and controller reset with hosts connected, and a host vanishing mid-transfer.
 */
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import * as net from 'node:net';
import * as path from 'node:path';
import { Spdk } from '../lib';
import { parseTargetArgs } from '../lib/cli/main';
import { fillPattern, uniqueSocketPath } from './helpers/env';
import { forEachEngine, startTarget, useTarget } from './helpers/engines';
import { freePort, NvmeTcpController, LogId, FeatureId } from './helpers/nvme-tcp-host';

const NQN = 'nqn.2016-06.io.spdk:target-test';
const KIB = 1024;

function pattern(len: number, seed: number): Buffer {
  const b = Buffer.alloc(len);
  fillPattern(b, seed);
  return b;
}

async function waitFor(what: string, fn: () => Promise<boolean> | boolean, ms = 10000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await fn()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/*
 * On both engines. libspdk: SPDK's nvmf target in a child (one reactor: SPDK's reactors busy-poll
 * their cores, and the test's host needs the machine's other core; a test that needs two reactors
 * restarts it on two), the same NVMe/TCP host in this process. What reads the builtin target's
 * own counters (the native copy counter) is builtin-only.
 */
forEachEngine((engine) =>
describe(`NVMe/TCP target (${engine} engine)`, function () {
  this.timeout(60000);
  const builtin = engine === 'builtin';
  let port = 0;
  const open: NvmeTcpController[] = [];
  // Before the target's hooks: the hosts go before the target is reset or stopped.
  afterEach(async () => {
    for (const c of open.splice(0)) await c.close().catch(() => undefined);
  });
  const t = useTarget(engine, { tag: 'nvmf-target', cores: builtin ? [0, 1] : [0] });
  /** A test of the builtin target's own counters. */
  const builtinIt = (title: string, fn: () => Promise<void>): void => {
    if (builtin) it(title, fn);
  };

  const stats = async (): Promise<{ poll_groups: Array<Record<string, number>> }> =>
    (await t.client.call('nvmf_get_stats', {})) as never;
  const copies = (): number => t.spdk!.nativeEngine.nvmfStats().dataCopies;
  const connect = async (o: Partial<Parameters<typeof NvmeTcpController.connect>[0]> = {}): Promise<NvmeTcpController> => {
    const c = await NvmeTcpController.connect({ host: '127.0.0.1', port, subnqn: NQN, ...o } as never);
    open.push(c);
    if (o.enable ?? true) await c.identifyNamespace(1);
    return c;
  };
  const controllers = async (): Promise<unknown[]> => (await t.client.call('nvmf_subsystem_get_controllers', { nqn: NQN })) as unknown[];

  beforeEach(async () => {
    port = await freePort();
    await setUp();
  });

  /** The target of every test: M0 exported (allow any host) on `port`, M1 spare. */
  async function setUp(): Promise<void> {
    await t.client.call('bdev_malloc_create', { name: 'M0', num_blocks: 32768, block_size: 512 });
    // 8 MiB: room for SPDK's lvstore metadata too (on 4 MiB, SPDK's blobstore has too few
    // metadata pages for the snapshot and clone below: docs/differences.md, "total_data_clusters").
    await t.client.call('bdev_malloc_create', { name: 'M1', num_blocks: 16384, block_size: 512 });
    // SPDK rounds a host's KATO up to the transport's keep-alive granularity (kas, in 100 ms:
    // default 100) and at least to min_kato (default 10 s); the keep-alive tests use 1 s. (The
    // builtin target takes kas and min_kato and does not apply them: docs/differences.md.)
    await t.client.call('nvmf_create_transport', { trtype: 'TCP', ...(builtin ? {} : { kas: 10, min_kato: 1000 }) });
    await t.client.call('nvmf_create_subsystem', { nqn: NQN, allow_any_host: true, serial_number: 'SN0001', model_number: 'target-test' });
    await t.client.call('nvmf_subsystem_add_ns', { nqn: NQN, namespace: { bdev_name: 'M0' } });
    await t.client.call('nvmf_subsystem_add_listener', { nqn: NQN, listen_address: { trtype: 'TCP', adrfam: 'IPv4', traddr: '127.0.0.1', trsvcid: String(port) } });
  }

  builtinIt('reads are sent from the buffer the bdev read into, and R2T data lands in the buffer the bdev writes from: the native copy counter stays near zero', async () => {
    const c = await connect();
    const data = pattern(128 * KIB, 1);
    const before = copies();
    for (let i = 0; i < 32; i++) {
      const w = await c.write(1, i * 256, data);
      expect(w.cqe.status).to.equal(0);
    }
    const afterWrites = copies();
    for (let i = 0; i < 32; i++) {
      const r = await c.read(1, i * 256, 256);
      expect(r.equals(data)).to.equal(true);
    }
    const afterReads = copies();
    const written = 32 * data.length;
    // What arrived together with an H2CData header in one receive is copied from staging; the
    // rest is read into place. Reads copy nothing.
    expect(afterWrites - before, 'bytes copied for 4 MiB of R2T writes').to.be.below(written * 0.02);
    expect(afterReads - afterWrites, 'bytes copied for 4 MiB of reads').to.equal(0);
  });

  it('a small shared-buffer budget: 32 large writes and reads queued at once wait for buffers and all complete with the right data', async () => {
    // Another target whose transport has 4 shared buffers of 128 KiB (256 KiB per poll group).
    const small = await startTarget(engine, { tag: 'nvmf-small' });
    try {
      const p2 = await freePort();
      await small.client.call('bdev_malloc_create', { name: 'S0', num_blocks: 65536, block_size: 512 });
      await small.client.call('nvmf_create_transport', { trtype: 'TCP', num_shared_buffers: 4, buf_cache_size: 0 });
      await small.client.call('nvmf_create_subsystem', { nqn: NQN, allow_any_host: true });
      await small.client.call('nvmf_subsystem_add_ns', { nqn: NQN, namespace: { bdev_name: 'S0' } });
      await small.client.call('nvmf_subsystem_add_listener', { nqn: NQN, listen_address: { trtype: 'TCP', adrfam: 'IPv4', traddr: '127.0.0.1', trsvcid: String(p2) } });
      const c = await NvmeTcpController.connect({ host: '127.0.0.1', port: p2, subnqn: NQN, ioQueues: 2 } as never);
      try {
        await c.identifyNamespace(1);
        const chunks = Array.from({ length: 32 }, (_, i) => pattern(128 * KIB, 100 + i));
        const w = await Promise.all(chunks.map((d, i) => c.write(1, i * 256, d, { queue: c.io[i % 2] } as never)));
        for (const x of w) expect(x.cqe.status).to.equal(0);
        const r = await Promise.all(chunks.map((_, i) => c.read(1, i * 256, 256, { queue: c.io[i % 2] } as never)));
        r.forEach((b, i) => expect(b.equals(chunks[i]), `chunk ${i}`).to.equal(true));
      } finally {
        await c.close();
      }
    } finally {
      await small.stop();
    }
  });

  builtinIt('in-capsule writes are copied once out of the receive buffer (counted)', async () => {
    const c = await connect();
    const before = copies();
    for (let i = 0; i < 16; i++) await c.write(1, i * 8, pattern(4 * KIB, i));
    expect(copies() - before).to.equal(16 * 4 * KIB);
  });

  it('I/O queues of one controller are spread over the reactors', async () => {
    if (!builtin) {
      // Two reactors for this test only (SPDK then polls both cores while it runs).
      await t.restart({ cores: [0, 1] });
      await setUp();
    }
    const c = await connect({ ioQueues: 4 });
    const s = await stats();
    const perGroup = s.poll_groups.map((g) => g.current_io_qpairs);
    expect(perGroup.length).to.equal(2);
    expect(perGroup.reduce((a, b) => a + b, 0)).to.equal(4);
    for (const n of perGroup) expect(n).to.be.greaterThan(0);
    // I/O on every queue.
    await Promise.all(c.io.map((q, i) => c.write(1, i * 8, pattern(4 * KIB, i), { queue: q } as never)));
  });

  it('keep-alive: a controller whose host stops sending Keep Alive is torn down after KATO', async () => {
    const c = await connect({ kato: 1000 });
    expect(await controllers()).to.have.length(1);
    await waitFor('the controller to go', async () => (await controllers()).length === 0, 8000);
    await c.admin.whenClosed();
  });

  it('keep-alive: a host that sends Keep Alive keeps its controller', async () => {
    const c = await connect({ kato: 1000 });
    for (let i = 0; i < 8; i++) {
      await new Promise((r) => setTimeout(r, 300));
      await c.keepAlive();
    }
    expect(await controllers()).to.have.length(1);
  });

  it('namespace added and removed while connected: AER with log page 04h, changed list, then I/O to the removed namespace fails Invalid Namespace', async () => {
    const c = await connect();
    await c.setFeatures(FeatureId.AsyncEventConfig, 1 << 8);
    let aer = c.asyncEventRequest();
    const nsid = (await t.client.call('nvmf_subsystem_add_ns', { nqn: NQN, namespace: { bdev_name: 'M1' } })) as number;
    let ev = await aer;
    expect(ev.cqe.dw0 & 0x7).to.equal(2);
    expect((ev.cqe.dw0 >> 16) & 0xff).to.equal(LogId.ChangedNsList);
    expect(await c.changedNsList()).to.deep.equal([nsid]);
    expect(await c.activeNamespaces()).to.deep.equal([1, nsid]);
    await c.identifyNamespace(nsid);
    await c.write(nsid, 0, pattern(512, 9));
    aer = c.asyncEventRequest();
    await t.client.call('nvmf_subsystem_remove_ns', { nqn: NQN, nsid });
    ev = await aer;
    expect((ev.cqe.dw0 >> 16) & 0xff).to.equal(LogId.ChangedNsList);
    expect(await c.changedNsList()).to.deep.equal([nsid]);
    const r = await c.readCmd(nsid, 0, 1);
    expect({ sct: r.cqe.sct, sc: r.cqe.sc }).to.deep.equal({ sct: 0, sc: 0x0b });
    // The bdev is free again: another subsystem could export it, and it can be deleted.
    await t.client.call('bdev_malloc_delete', { name: 'M1' });
  });

  it('an exported lvol grown with bdev_lvol_resize: its hosts get the namespace changed notice (SPDK\'s resize event) and use the new size', async () => {
    await t.client.call('bdev_lvol_create_lvstore', { bdev_name: 'M1', lvs_name: 'lvs', cluster_sz: 1024 * KIB });
    await t.client.call('bdev_lvol_create', { lvol_name: 'grow', size_in_mib: 1, lvs_name: 'lvs' });
    const nsid = (await t.client.call('nvmf_subsystem_add_ns', { nqn: NQN, namespace: { bdev_name: 'lvs/grow' } })) as number;
    const c = await connect();
    await c.setFeatures(FeatureId.AsyncEventConfig, 1 << 8);
    expect((await c.identifyNamespace(nsid)).nsze).to.equal(2048n);
    const aer = c.asyncEventRequest();
    await t.client.call('bdev_lvol_resize', { name: 'lvs/grow', size_in_mib: 3 });
    const ev = await Promise.race([aer, new Promise<never>((_, no) => setTimeout(() => no(new Error('no namespace changed notice after the resize')), 10000).unref())]);
    expect(ev.cqe.dw0 & 0x7).to.equal(2);
    expect((ev.cqe.dw0 >> 8) & 0xff).to.equal(0); // namespace attribute changed
    expect((ev.cqe.dw0 >> 16) & 0xff).to.equal(LogId.ChangedNsList);
    expect(await c.changedNsList()).to.deep.equal([nsid]);
    expect((await c.identifyNamespace(nsid)).nsze).to.equal(6144n);
    await c.write(nsid, 6143, pattern(512, 7));
    expect((await c.read(nsid, 6143, 1)).equals(pattern(512, 7))).to.equal(true);
    // A resize to the same size changes nothing and tells nobody (as spdk_bdev_notify_blockcnt_change).
    const quiet = c.asyncEventRequest();
    let fired = false;
    void quiet.then(() => (fired = true), () => undefined);
    await t.client.call('bdev_lvol_resize', { name: 'lvs/grow', size_in_mib: 3 });
    await new Promise((r) => setTimeout(r, 200));
    expect(fired).to.equal(false);
  });

  it('an exported bdev is claimed exclusive_write; deleting it hot-removes its namespace (AER, then Invalid Namespace)', async () => {
    const bdevs = (await t.client.call('bdev_get_bdevs', { name: 'M0' })) as Array<{ claimed: boolean; claim_type: string }>;
    expect(bdevs[0]).to.include({ claimed: true, claim_type: 'exclusive_write' });
    // Through the target's own spdk.bdev (in the child on libspdk).
    const opened = await t.run(async (spdk) => spdk.bdev.open('M0').then(() => 'opened a claimed bdev', (e: Error) => e.message));
    // The libspdk engine's queue does not know which module holds the claim.
    expect(opened).to.match(builtin ? /claimed \(an NVMe-oF subsystem exports it\)/ : /is claimed \(an lvstore lives on it, or an NVMe-oF subsystem exports it\)/);
    const c = await connect();
    await c.setFeatures(FeatureId.AsyncEventConfig, 1 << 8);
    const aer = c.asyncEventRequest();
    await t.client.call('bdev_malloc_delete', { name: 'M0' });
    const ev = await aer;
    expect((ev.cqe.dw0 >> 16) & 0xff).to.equal(LogId.ChangedNsList);
    expect(await c.changedNsList()).to.deep.equal([1]);
    const r = await c.readCmd(1, 0, 1);
    expect({ sct: r.cqe.sct, sc: r.cqe.sc }).to.deep.equal({ sct: 0, sc: 0x0b });
    const subs = (await t.client.call('nvmf_get_subsystems', { nqn: NQN })) as Array<{ namespaces: unknown[] }>;
    expect(subs[0].namespaces).to.deep.equal([]);
  });

  it('bdev_lvol_delete of an exported lvol hot-removes its namespace (AER, then Invalid Namespace) and deletes it, as SPDK does', async () => {
    await t.client.call('bdev_lvol_create_lvstore', { bdev_name: 'M1', lvs_name: 'lvs', cluster_sz: 1024 * KIB });
    const free = ((await t.client.call('bdev_lvol_get_lvstores')) as Array<{ free_clusters: number }>)[0].free_clusters;
    await t.client.call('bdev_lvol_create', { lvol_name: 'gone', size_in_mib: 1, lvs_name: 'lvs' });
    const nsid = (await t.client.call('nvmf_subsystem_add_ns', { nqn: NQN, namespace: { bdev_name: 'lvs/gone' } })) as number;
    // A snapshot with two clones, exported: refused (EPERM) before anything is removed.
    await t.client.call('bdev_lvol_create', { lvol_name: 'base', size_in_mib: 1, lvs_name: 'lvs', thin_provision: true });
    await t.client.call('bdev_lvol_snapshot', { lvol_name: 'lvs/base', snapshot_name: 'snap' });
    await t.client.call('bdev_lvol_clone', { snapshot_name: 'lvs/snap', clone_name: 'clone2' });
    const snapNsid = (await t.client.call('nvmf_subsystem_add_ns', { nqn: NQN, namespace: { bdev_name: 'lvs/snap' } })) as number;
    const c = await connect();
    await c.setFeatures(FeatureId.AsyncEventConfig, 1 << 8);
    await c.identifyNamespace(nsid);
    await c.write(nsid, 0, pattern(512, 3));
    const refused = await t.client.call('bdev_lvol_delete', { name: 'lvs/snap' }).then(
      () => 'deleted',
      (e: { code: number; message: string }) => `${e.code} ${e.message}`,
    );
    expect(refused).to.equal('-32603 Operation not permitted');
    expect(await c.activeNamespaces()).to.deep.equal([1, nsid, snapNsid]);
    const aer = c.asyncEventRequest();
    expect(await t.client.call('bdev_lvol_delete', { name: 'lvs/gone' })).to.equal(true);
    const ev = await Promise.race([aer, new Promise<never>((_, no) => setTimeout(() => no(new Error('no namespace changed notice')), 10000).unref())]);
    expect((ev.cqe.dw0 >> 16) & 0xff).to.equal(LogId.ChangedNsList);
    expect(await c.changedNsList()).to.deep.equal([nsid]);
    const r = await c.readCmd(nsid, 0, 1);
    expect({ sct: r.cqe.sct, sc: r.cqe.sc }).to.deep.equal({ sct: 0, sc: 0x0b });
    const subs = (await t.client.call('nvmf_get_subsystems', { nqn: NQN })) as Array<{ namespaces: Array<{ nsid: number }> }>;
    expect(subs[0].namespaces.map((n) => n.nsid)).to.deep.equal([1, snapNsid]);
    expect(await t.client.call('bdev_get_bdevs', { name: 'lvs/gone' }).catch((e: { code: number }) => e.code)).to.equal(-19);
    // Its clusters are free again (the snapshot and its clones keep theirs).
    await t.client.call('nvmf_subsystem_remove_ns', { nqn: NQN, nsid: snapNsid });
    for (const name of ['lvs/clone2', 'lvs/base', 'lvs/snap']) await t.client.call('bdev_lvol_delete', { name });
    expect(((await t.client.call('bdev_lvol_get_lvstores')) as Array<{ free_clusters: number }>)[0].free_clusters).to.equal(free);
  });

  it('Abort: an outstanding AER is aborted (Aborted by Request); a command that is not queued is "not aborted", on either reactor', async () => {
    const c = await connect({ ioQueues: 2 });
    const abort = (sqid: number, cid: number) => {
      const s = Buffer.alloc(64);
      s[0] = 0x08;
      s.writeUInt32LE(sqid | (cid << 16), 40);
      return c.exec(c.admin, s);
    };
    const aer = c.asyncEventRequest();
    const aerCid = (c.admin as unknown as { nextCid: number }).nextCid - 1;
    const a = await abort(0, aerCid);
    expect(a.cqe.status).to.equal(0);
    expect(a.cqe.dw0 & 1, 'aborted').to.equal(0);
    const ev = await aer;
    expect({ sct: ev.cqe.sct, sc: ev.cqe.sc }).to.deep.equal({ sct: 0, sc: 0x07 });
    for (const sqid of [1, 2]) {
      const n = await abort(sqid, 0x1234);
      expect(n.cqe.status).to.equal(0);
      expect(n.cqe.dw0 & 1, `not aborted on qid ${sqid}`).to.equal(1);
    }
  });

  it('hot removal under load: a namespace removed while two queues keep I/O in flight fails their commands with Invalid Namespace, and the target keeps serving', async () => {
    const c = await connect({ ioQueues: 2 });
    const seen = new Map<string, number>();
    let stop = false;
    const load = async (q: number): Promise<void> => {
      for (let i = 0; !stop; i++) {
        const lba = (q * 4096 + (i % 512) * 8) % 32000;
        const r = await c.writeCmd(1, lba, pattern(4 * KIB, i), { queue: c.io[q] } as never);
        const key = `${r.cqe.sct}/${r.cqe.sc}`;
        seen.set(key, (seen.get(key) ?? 0) + 1);
        if (r.cqe.status !== 0) stop = true;
      }
    };
    const loads = [load(0), load(1)];
    await new Promise((r) => setTimeout(r, 150));
    await t.client.call('nvmf_subsystem_remove_ns', { nqn: NQN, nsid: 1 });
    await Promise.all(loads);
    expect(seen.get('0/0'), 'writes succeeded before the removal').to.be.greaterThan(0);
    const failures = [...seen.keys()].filter((k) => k !== '0/0');
    expect(failures, `statuses seen: ${JSON.stringify([...seen])}`).to.deep.equal(['0/11']);
    // Still serving: the bdev exported again, I/O works on both queues.
    await t.client.call('nvmf_subsystem_add_ns', { nqn: NQN, namespace: { bdev_name: 'M0', nsid: 1 } });
    for (const q of c.io) {
      const d = pattern(4 * KIB, 7);
      expect((await c.write(1, 100, d, { queue: q } as never)).cqe.status).to.equal(0);
      expect((await c.read(1, 100, 8, { queue: q } as never)).equals(d)).to.equal(true);
    }
  });

  it('deleting the subsystem disconnects its hosts and frees the queues', async () => {
    const c = await connect({ ioQueues: 2 });
    await t.client.call('nvmf_delete_subsystem', { nqn: NQN });
    await c.admin.whenClosed();
    await waitFor('no qpairs left', async () => (await stats()).poll_groups.every((g) => g.current_io_qpairs === 0 && g.current_admin_qpairs === 0));
    // The bdev is released.
    await t.client.call('bdev_malloc_delete', { name: 'M0' });
  });

  it('hot removal of a whole subsystem under load: its hosts lose their connections (every command completes or fails with the connection), a host of another subsystem keeps its verified I/O', async () => {
    const OTHER = 'nqn.2016-06.io.spdk:other';
    await t.client.call('nvmf_create_subsystem', { nqn: OTHER, allow_any_host: true });
    await t.client.call('nvmf_subsystem_add_ns', { nqn: OTHER, namespace: { bdev_name: 'M1' } });
    await t.client.call('nvmf_subsystem_add_listener', { nqn: OTHER, listen_address: { trtype: 'TCP', adrfam: 'IPv4', traddr: '127.0.0.1', trsvcid: String(port) } });
    const c = await connect({ ioQueues: 2 });
    const w = await connect({ subnqn: OTHER, ioQueues: 1 });
    let ok = 0;
    let closed = 0;
    const load = async (q: number): Promise<void> => {
      for (let i = 0; ; i++) {
        const lba = (q * 4096 + (i % 512) * 8) % 32000;
        const io = i % 2 ? c.readCmd(1, lba, 64, { queue: c.io[q] } as never) : c.writeCmd(1, lba, pattern(32 * KIB, i), { queue: c.io[q] } as never);
        try {
          const r = await io;
          expect(r.cqe.status, 'a command that completes before the removal succeeds').to.equal(0);
          ok++;
        } catch (e) {
          expect(String(e)).to.match(/closed|terminated|ended|reset/i);
          closed++;
          return;
        }
      }
    };
    let witnessRounds = 0;
    let stopWitness = false;
    const witness = async (): Promise<void> => {
      for (let i = 0; !stopWitness; i++) {
        const d = pattern(4 * KIB, 1000 + i);
        await w.write(1, (i % 64) * 8, d);
        expect((await w.read(1, (i % 64) * 8, 8)).equals(d), 'witness data').to.equal(true);
        witnessRounds++;
      }
    };
    const loads = [load(0), load(1)];
    const wit = witness();
    await new Promise((r) => setTimeout(r, 200));
    await t.client.call('nvmf_delete_subsystem', { nqn: NQN });
    await Promise.all(loads);
    const before = witnessRounds;
    await waitFor('the witness going on after the removal', () => witnessRounds > before + 20);
    stopWitness = true;
    await wit;
    expect(ok, 'I/O completed before the removal').to.be.greaterThan(0);
    expect(closed, 'both loaded queues lost their connection').to.equal(2);
    await waitFor('only the witness\'s queues left', async () => {
      const g = (await stats()).poll_groups;
      return g.reduce((n, x) => n + x.current_io_qpairs + x.current_admin_qpairs, 0) === 2;
    });
    // The removed subsystem's bdev is released.
    await t.client.call('bdev_malloc_delete', { name: 'M0' });
  });

  it('removing the listener a host came in through disconnects it; removing a host from the allow list disconnects that host', async () => {
    const c = await connect();
    await t.client.call('nvmf_subsystem_remove_listener', { nqn: NQN, listen_address: { trtype: 'TCP', adrfam: 'IPv4', traddr: '127.0.0.1', trsvcid: String(port) } });
    await c.admin.whenClosed();
    await waitFor('the controller to go', async () => (await controllers()).length === 0);
    await t.client.call('nvmf_subsystem_add_listener', { nqn: NQN, listen_address: { trtype: 'TCP', adrfam: 'IPv4', traddr: '127.0.0.1', trsvcid: String(port) } });
    await t.client.call('nvmf_subsystem_allow_any_host', { nqn: NQN, allow_any_host: false });
    const hostnqn = 'nqn.2014-08.org.nvmexpress:uuid:3f6f4a36-2b0e-4b8e-9d39-5f0c1f1f0a01';
    await t.client.call('nvmf_subsystem_add_host', { nqn: NQN, host: hostnqn });
    const d = await connect({ hostnqn });
    await t.client.call('nvmf_subsystem_remove_host', { nqn: NQN, host: hostnqn });
    await d.admin.whenClosed();
  });

  it('controller reset (CC.EN 1 -> 0): its I/O queues are closed; re-enabled, new I/O queues connect', async () => {
    const c = await connect({ ioQueues: 2 });
    await c.disable();
    await Promise.all(c.io.map((q) => q.whenClosed()));
    await waitFor('I/O qpairs gone', async () => (await stats()).poll_groups.every((g) => g.current_io_qpairs === 0));
    await c.enable();
    c.io.splice(0);
    await c.connectIoQueue({ qid: 1 } as never);
    const w = await c.write(1, 0, pattern(4 * KIB, 3));
    expect(w.cqe.status).to.equal(0);
  });

  it('a host that vanishes in the middle of an R2T transfer leaves nothing behind', async () => {
    const c = await connect();
    const q = c.io[0];
    // A write that needs R2T; the host closes its socket as soon as the capsule is out.
    const pending = c.writeCmd(1, 0, pattern(128 * KIB, 5)).catch(() => undefined);
    q.destroy();
    c.admin.destroy();
    await pending;
    await waitFor('no qpairs left', async () => (await stats()).poll_groups.every((g) => g.current_io_qpairs === 0 && g.current_admin_qpairs === 0));
    expect(await controllers()).to.have.length(0);
  });
}),
);

describe('NVMe/TCP target limits (builtin engine)', function () {
  this.timeout(60000);
  let spdk: Spdk;
  let port = 0;
  const sockets: net.Socket[] = [];
  const open: NvmeTcpController[] = [];

  /** A TCP connection that sends nothing; resolves once connected. */
  const idle = (): Promise<net.Socket> =>
    new Promise((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => resolve(s));
      s.on('error', reject);
      sockets.push(s);
    });
  /** Resolves when the target closes the socket (with the bytes it sent before). */
  const closedByTarget = (s: net.Socket): Promise<number> =>
    new Promise((resolve) => {
      let n = 0;
      s.on('data', (d) => (n += d.length));
      s.on('close', () => resolve(n));
      s.on('end', () => resolve(n));
    });
  const stats = (): ReturnType<Spdk['nativeEngine']['nvmfStats']> => spdk.nativeEngine.nvmfStats();

  beforeEach(async () => {
    spdk = await Spdk.start({ engine: 'builtin', cores: [0, 1] });
    port = await freePort();
    await spdk.rpc.call('bdev_malloc_create', { name: 'M0', num_blocks: 8192, block_size: 512 });
    await spdk.rpc.call('nvmf_create_transport', { trtype: 'TCP', max_connections: 4 });
    await spdk.rpc.call('nvmf_create_subsystem', { nqn: NQN, allow_any_host: true });
    await spdk.rpc.call('nvmf_subsystem_add_ns', { nqn: NQN, namespace: { bdev_name: 'M0' } });
    await spdk.rpc.call('nvmf_subsystem_add_listener', { nqn: NQN, listen_address: { trtype: 'TCP', adrfam: 'IPv4', traddr: '127.0.0.1', trsvcid: String(port) } });
  });

  afterEach(async () => {
    for (const s of sockets.splice(0)) s.destroy();
    for (const c of open.splice(0)) await c.close().catch(() => undefined);
    await spdk.stop();
  });

  it('max_connections: shown by nvmf_get_transports and in save_config; 0 is refused', async () => {
    const [t] = (await spdk.rpc.call('nvmf_get_transports', {})) as Array<Record<string, unknown>>;
    expect(t.max_connections).to.equal(4);
    const cfg = JSON.stringify(spdk.saveConfig());
    expect(cfg).to.include('"max_connections":4');
    const other = await Spdk.start({ engine: 'builtin', cores: [0] });
    try {
      const err = await other.rpc.call('nvmf_create_transport', { trtype: 'TCP', max_connections: 0 }).then(() => undefined, (e: { code: number; message: string }) => e);
      expect(err).to.include({ code: -32603, message: 'Failed to create transport.' });
      expect(await other.rpc.call('nvmf_get_transports', {})).to.deep.equal([]);
    } finally {
      await other.stop();
    }
  });

  it('max_connections: connections beyond the limit are closed at once and counted; a freed slot serves a host again', async () => {
    const held = [];
    for (let i = 0; i < 4; i++) held.push(await idle());
    await waitFor('4 connections accepted', () => stats().connections === 4);
    const extra = await idle();
    expect(await closedByTarget(extra), 'bytes before the close').to.equal(0);
    expect(stats().refusedConnections).to.equal(1);
    expect(stats().connections).to.equal(4);
    held[0].destroy();
    await waitFor('a slot freed', () => stats().connections === 3);
    const c = await NvmeTcpController.connect({ host: '127.0.0.1', port, subnqn: NQN, ioQueues: 0 } as never);
    open.push(c);
    expect(c.cntlid).to.be.greaterThan(0);
  });

  it('a connection that completes no Connect within 10 s is closed (it cannot hold a slot); connected hosts stay', async function () {
    this.timeout(30000);
    const c = await NvmeTcpController.connect({ host: '127.0.0.1', port, subnqn: NQN, ioQueues: 1, kato: 0 } as never);
    open.push(c);
    const s = await idle();
    const t0 = Date.now();
    await closedByTarget(s);
    const waited = Date.now() - t0;
    expect(waited, 'closed after the deadline').to.be.at.least(9500);
    expect(stats().connectTimeouts).to.equal(1);
    await waitFor('the idle connection gone', () => stats().connections === 2);
    await c.keepAlive();
    await c.identifyNamespace(1);
    const d = pattern(4096, 9);
    await c.write(1, 0, d);
    expect((await c.read(1, 0, 8)).equals(d)).to.equal(true);
  });
});

describe('spdk-node target: the default NVMe/TCP export (what npm start runs)', function () {
  this.timeout(30000);

  it('parses --nvmf / --no-nvmf, default 127.0.0.1:4420', () => {
    expect(parseTargetArgs([]).nvmf).to.equal('127.0.0.1:4420');
    expect(parseTargetArgs(['--nvmf', '0.0.0.0:4421']).nvmf).to.equal('0.0.0.0:4421');
    expect(parseTargetArgs(['--no-nvmf']).nvmf).to.equal(undefined);
    expect(() => parseTargetArgs(['--nvmf', 'nope'])).to.throw(/invalid --nvmf address 'nope'/);
  });

  it('a host connects to Malloc0 as nqn.2016-06.io.spdk:cnode1 and does I/O; SIGTERM stops it', async () => {
    const port = await freePort();
    const sock = uniqueSocketPath('cli-nvmf');
    const main = path.join(__dirname, '..', 'lib', 'cli', 'main.js');
    const child = spawn(process.execPath, [main, 'target', '--engine', 'builtin', '--rpc-socket', sock, '--nvmf', `127.0.0.1:${port}`], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      await waitFor('the target to serve', () => out.includes('serving SPDK JSON-RPC'));
      expect(out).to.include(`NVMe/TCP: nqn.2016-06.io.spdk:cnode1 (Malloc0) on 127.0.0.1:${port}`);
      const c = await NvmeTcpController.connect({ host: '127.0.0.1', port, subnqn: 'nqn.2016-06.io.spdk:cnode1' } as never);
      try {
        expect(c.identity?.mn.trim()).to.equal('SPDK bdev Controller');
        const ns = await c.identifyNamespace(1);
        expect(Number(ns.nsze)).to.equal(16384);
        const data = pattern(8 * KIB, 11);
        await c.write(1, 10, data);
        expect((await c.read(1, 10, 2)).equals(data)).to.equal(true);
      } finally {
        await c.close();
      }
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).to.equal(0);
  });
});
