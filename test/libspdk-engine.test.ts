/**
 * The libspdk engine: the installed SPDK (v25.09) started inside Node. Every start runs in its own
 * child process (test/helpers/libspdk-child.ts): DPDK's environment starts once per process, and
 * SPDK's reactors busy-poll their cores, so each child is stopped (or killed, by pid) at the end.
 *
 * Skipped, with one line saying why, where the libspdk addon is not built; with CI=true and an
 * SPDK installed, a missing addon fails instead.
 */
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { Spdk, SpdkOptions } from '../lib';
import { RpcClient } from '../lib/rpc/client';
import { JsonRpcError } from '../lib/rpc/errors';
import type { SpdkJsonConfig } from '../lib/config/subsystems';
import { tempDir, uniqueSocketPath, fillPattern } from './helpers/env';
import { freePort } from './helpers/nvme-tcp-host';
import { requireLibspdk } from './helpers/spdk-install';
import { Report, SpdkChild } from './helpers/spdk-child';

const CLI = path.join(__dirname, '..', 'lib', 'cli', 'main.js');

/** The default start options of these tests: one core, no hugepages (1 GiB of ordinary memory). */
const BASE: SpdkOptions = { engine: 'libspdk', cores: [0], noHuge: true };

function post(url: string, body: unknown, auth: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const data = Buffer.from(JSON.stringify(body));
    const req = http.request(url, { method: 'POST', headers: { Authorization: `Basic ${Buffer.from(auth).toString('base64')}`, 'Content-Length': data.length } }, (res) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on('error', reject);
    req.end(data);
  });
}

describe('libspdk engine (SPDK in child processes)', function () {
  this.timeout(120000);
  const children: SpdkChild[] = [];
  const child = (mode: string, start: SpdkOptions = BASE): SpdkChild => {
    const c = new SpdkChild(mode, start);
    children.push(c);
    return c;
  };

  before(function () {
    requireLibspdk(this, 'libspdk suite');
  });

  afterEach(() => {
    for (const c of children.splice(0)) c.kill();
  });

  // The first process's configuration, restarted from in 'starting and stopping', and the
  // file its lvol store lives on (an aio bdev: a malloc bdev comes back empty).
  let savedConfig: SpdkJsonConfig | undefined;
  const files = tempDir('spdk-node-libspdk-');
  const aioFile = path.join(files.dir, 'aio0.img');
  after(() => files.cleanup());
  /** Lvols by their alias, other bdevs by name. */
  const BDEV_NAMES = "(await spdk.rpc.call('bdev_get_bdevs')).map((b) => b.driver_specific?.lvol ? b.aliases[0] : b.name).sort()";

  describe('one SPDK serving the tests below', () => {
    let c: SpdkChild;
    let started: Report;

    before(async () => {
      // Not in `children`: it lives across the tests of this block.
      // Two reactors: bdev queues on either.
      c = new SpdkChild('serve', { ...BASE, cores: [0, 1], logLevel: 'error' });
      started = await c.started();
    });

    after(async () => {
      if (!c) return;
      try {
        const exit = await Promise.race([c.finish(), new Promise<undefined>((r) => setTimeout(() => r(undefined), 30000))]);
        const stopped = c.reports.find((r) => r.stopped);
        // stop() joined SPDK's thread (DPDK's main lcore, reactor_0); the loop ended by itself.
        expect(exit?.code, c.output).to.equal(0);
        expect(stopped?.threads as string[]).to.not.include('reactor_0');
      } finally {
        c.kill();
      }
    });

    it('starts on its own thread and serves SPDK v25.09 through spdk.rpc.call', async () => {
      expect(started.engine).to.equal('libspdk');
      expect(started.reason).to.equal('requested');
      // Our native thread is DPDK's main lcore, which SPDK names after its reactor.
      expect(started.threads as string[]).to.include('reactor_0');
      expect(started.rpcSocket).to.match(/spdk-node-.*\/spdk\.sock$/);
      const v = (await c.run("return spdk.rpc.call('spdk_get_version')")) as { version: string; fields: { major: number; minor: number } };
      expect(v.version).to.equal('SPDK v25.09');
      expect(v.fields).to.include({ major: 25, minor: 9 });
      // The private socket is SPDK's own: rpc.py-style clients reach it too.
      const client = await RpcClient.connect(started.rpcSocket as string);
      try {
        expect(((await client.call('spdk_get_version')) as { version: string }).version).to.equal('SPDK v25.09');
      } finally {
        await client.close();
      }
    });

    it('bdev_malloc_create, then bdev_get_bdevs shows it as SPDK describes it', async () => {
      const name = await c.run("return spdk.rpc.call('bdev_malloc_create', { name: 'Malloc0', num_blocks: 32768, block_size: 4096 })");
      expect(name).to.equal('Malloc0');
      const [b] = (await c.run("return spdk.rpc.call('bdev_get_bdevs', { name: 'Malloc0' })")) as Array<Record<string, unknown>>;
      expect(b).to.include({ name: 'Malloc0', product_name: 'Malloc disk', block_size: 4096, num_blocks: 32768, claimed: false });
    });

    it("SPDK's error objects pass through unchanged (code, message, JsonRpcError)", async () => {
      const err = (await c.run(`
        try { await spdk.rpc.call('bdev_get_bdevs', { name: 'Nope0' }); return null; }
        catch (e) { return { name: e.name, code: e.code, message: e.message, isRpcError: e instanceof require(${JSON.stringify(path.join(__dirname, '..', 'lib', 'rpc', 'errors.js'))}).JsonRpcError }; }
      `)) as Record<string, unknown>;
      expect(err).to.deep.equal({ name: 'JsonRpcError', code: -19, message: 'No such device', isRpcError: true });
      const bad = (await c.run("try { await spdk.rpc.call('bdev_malloc_create', { num_blocks: 'x' }); } catch (e) { return { code: e.code, message: e.message }; }")) as Record<string, unknown>;
      expect(bad).to.deep.equal({ code: -32603, message: 'spdk_json_decode_object failed' });
      const missing = (await c.run("try { await spdk.rpc.call('no_such_method'); } catch (e) { return { code: e.code, message: e.message }; }")) as Record<string, unknown>;
      expect(missing).to.deep.equal({ code: -32601, message: 'Method not found' });
    });

    it('spdk.lvol: store, lvol, snapshot, clone, resize (on SPDK\'s bdev_lvol_* RPCs)', async () => {
      fs.writeFileSync(aioFile, Buffer.alloc(0));
      fs.truncateSync(aioFile, 128 * 1024 * 1024);
      const r = (await c.run(`
        await spdk.rpc.call('bdev_aio_create', { name: 'Aio0', filename: ${JSON.stringify(aioFile)}, block_size: 4096 });
        const store = await spdk.lvol.createStore({ bdev: 'Aio0', name: 'lvs0', clusterSize: 1048576 });
        const vol = await store.create('vol0', { sizeMiB: 8, thin: true });
        const snap = await vol.snapshot('snap0');
        const clone = await snap.clone('clone0');
        const grown = await clone.resize({ sizeMiB: 16 });
        const again = await spdk.lvol.store('lvs0');
        return { store: again.name, clusters: again.totalDataClusters, vol: vol.name, snap: snap.isSnapshot, cloneParent: clone.baseSnapshot,
                 grown: grown.sizeBytes, bdevs: ${BDEV_NAMES} };
      `)) as Record<string, unknown>;
      expect(r).to.deep.include({ store: 'lvs0', vol: 'vol0', snap: true, cloneParent: 'snap0', grown: 16 * 1048576 });
      expect(r.clusters).to.be.within(120, 127);
      expect(r.bdevs).to.deep.equal(['Aio0', 'Malloc0', 'lvs0/clone0', 'lvs0/snap0', 'lvs0/vol0']);
    });

    it('allocBuffer gives zeroed SPDK DMA memory as an external ArrayBuffer; free() and use after free throw', async () => {
      const r = (await c.run(`
        const b = spdk.allocBuffer(3 * 4096 + 5);
        const zero = b.bytes.every((x) => x === 0);
        b.bytes.fill(0xa5);
        const ok = b.bytes[3 * 4096 + 4] === 0xa5 && b.bytes.length === 3 * 4096 + 5;
        b.free();
        let after; try { b.bytes; } catch (e) { after = e.message; }
        let twice; try { b.free(); } catch (e) { twice = e.code; }
        ctx.kept = spdk.allocBuffer(65536);       // checked after stop, in the next test
        let big; try { spdk.allocBuffer(4 * 1024 * 1024 * 1024); } catch (e) { big = e.code; }
        return { zero, ok, hugepage: b.hugepage, freed: b.freed, after, twice, big };
      `)) as Record<string, unknown>;
      expect(r).to.deep.equal({ zero: true, ok: true, hugepage: false, freed: true, after: 'buffer is no longer usable: it was freed', twice: 'EBADF', big: 'ENOMEM' });
    });

    it("spdk.bdev on SPDK's bdevs: promise I/O and a batch queue verified with random data, vectored I/O, errors, a queue per reactor thread", async () => {
      const r = (await c.run(`
        const crypto = require('node:crypto');
        const out = {};
        const h = await spdk.bdev.open('Malloc0');
        out.info = { name: h.name, blockSize: h.blockSize, numBlocks: h.numBlocks };
        const w = spdk.allocBuffer(8 * 4096), back = spdk.allocBuffer(8 * 4096);
        crypto.randomFillSync(w.bytes);
        await h.write(w, { offsetBlocks: 100, numBlocks: 8 });
        await h.read(back, { offsetBlocks: 100, numBlocks: 8 });
        out.promise = Buffer.from(back.bytes).equals(Buffer.from(w.bytes));
        // Vectored: two buffers for one 3-block write, read back into one.
        const a = spdk.allocBuffer(4096), b = spdk.allocBuffer(2 * 4096);
        crypto.randomFillSync(a.bytes); crypto.randomFillSync(b.bytes);
        await h.writev([{ buffer: a }, { buffer: b }], { offsetBlocks: 7, numBlocks: 3 });
        await h.read(back, { offsetBlocks: 7, numBlocks: 3 });
        out.vectored = Buffer.from(back.bytes.subarray(0, 4096)).equals(Buffer.from(a.bytes)) && Buffer.from(back.bytes.subarray(4096, 3 * 4096)).equals(Buffer.from(b.bytes));
        await h.writeZeroes({ offsetBlocks: 7, numBlocks: 3 });
        await h.read(back, { offsetBlocks: 7, numBlocks: 3 });
        out.zeroes = back.bytes.subarray(0, 3 * 4096).every((x) => x === 0);
        await h.flush();
        try { await h.read(back, { offsetBlocks: h.numBlocks - 1, numBlocks: 2 }); out.range = 'ok'; } catch (e) { out.range = e.code; }
        const pending = h.write(w, { offsetBlocks: 200, numBlocks: 8 });
        await Promise.resolve(); // the handle submits its batch in a microtask
        try { w.free(); out.inFlightFree = 'ok'; } catch (e) { out.inFlightFree = e.code; }
        await pending;
        // The batch path: 256 random 4 KiB writes at depth 32, then read back and compared.
        const q = await h.openQueue({ depth: 32 });
        const bufs = Array.from({ length: 32 }, () => spdk.allocBuffer(4096));
        const want = new Map();
        let lba = 0, done = 0, errors = 0;
        const run = (write) => new Promise((resolve) => {
          let next = 0, inflight = 0;
          const issue = () => {
            while (next < 256 && q.available > 0) {
              const i = next++;
              const buf = bufs[i % 32];
              if (write) { crypto.randomFillSync(buf.bytes); want.set(i, Buffer.from(buf.bytes)); q.prepWrite(buf, 1000 + i, 1); }
              else { q.prepRead(buf, 1000 + i, 1); }
              inflight++;
            }
            q.submit();
          };
          q.onComplete = (tag, status) => { if (status) errors++; inflight--; done++; };
          q.onBatchEnd = () => { if (next < 256) issue(); else if (inflight === 0) resolve(); };
          issue();
        });
        await run(true);
        const readBack = spdk.allocBuffer(256 * 4096);
        await h.read(readBack, { offsetBlocks: 1000, numBlocks: 256 });
        let same = 0;
        for (const [i, data] of want) if (Buffer.from(readBack.bytes.subarray(i * 4096, (i + 1) * 4096)).equals(data)) same++;
        out.batch = { same, errors, done };
        // A queue on the second reactor (its own SPDK thread on core 1) sees the same data.
        const q1 = await h.openQueue({ depth: 4, reactor: 1 });
        const one = spdk.allocBuffer(4096);
        await new Promise((resolve) => { q1.onComplete = (tag, status) => { out.reactor1 = status; resolve(); }; q1.prepRead(one, 1000 + 255, 1); q1.submit(); });
        out.reactor1Data = Buffer.from(one.bytes).equals(want.get(255));
        try { await spdk.bdev.open('Nope0'); } catch (e) { out.missing = e.code; }
        try { await spdk.bdev.open('Malloc0', { reactor: 'js' }); } catch (e) { out.jsReactor = e.code; }
        // Deleted under an open queue: I/O is refused with ENODEV, nothing hangs.
        await spdk.rpc.call('bdev_malloc_create', { name: 'Gone0', num_blocks: 1024, block_size: 4096 });
        const g = await spdk.bdev.open('Gone0');
        await g.write(one, { offsetBlocks: 1, numBlocks: 1 });
        await spdk.rpc.call('bdev_malloc_delete', { name: 'Gone0' });
        try { await g.read(one, { offsetBlocks: 1, numBlocks: 1 }); out.gone = 'ok'; } catch (e) { out.gone = e.code; }
        await g.close();
        await h.close();
        return out;
      `)) as Record<string, unknown>;
      expect(r).to.deep.equal({
        info: { name: 'Malloc0', blockSize: 4096, numBlocks: 32768 },
        promise: true,
        vectored: true,
        zeroes: true,
        range: 'ERANGE',
        inFlightFree: 'EBUSY',
        batch: { same: 256, errors: 0, done: 256 },
        reactor1: 0,
        reactor1Data: true,
        missing: 'ENODEV',
        jsReactor: 'ERR_ENGINE_UNSUPPORTED',
        gone: 'ENODEV',
      });
    });

    it('builtin-only features answer ERR_ENGINE_UNSUPPORTED (saveConfig(), serveRpc); spdk.nvme is SPDK\'s driver (libspdk-nvme.test.ts)', async () => {
      const r = (await c.run(`
        const out = {};
        for (const [k, f] of Object.entries({
          nvme: () => spdk.nvme.connect('trtype:TCP adrfam:IPv4 traddr:127.0.0.1 trsvcid:1 subnqn:nqn.2016-06.io.spdk:x'),
          saveConfig: async () => spdk.saveConfig(),
          reactorStats: async () => spdk.reactorStats(),
          serveRpc: () => spdk.serveRpc('/tmp/x.sock'),
        })) { try { await f(); out[k] = 'ok'; } catch (e) { out[k] = e.code + ': ' + e.message; } }
        return out;
      `)) as Record<string, string>;
      expect(r.nvme).to.match(/^ECONNREFUSED: cannot connect to 127\.0\.0\.1:1 /);
      expect(r.saveConfig).to.match(/^ERR_ENGINE_UNSUPPORTED: .*spdk\.rpc\.saveConfig\(\)/);
      expect(r.reactorStats).to.match(/^ERR_ENGINE_UNSUPPORTED/);
      expect(r.serveRpc).to.match(/^EALREADY: SPDK serves JSON-RPC itself, on /);
    });

    it("NVMe/TCP: nvmf_create_transport, subsystem, namespace, listener; the builtin NVMe host connects from this process and does I/O", async () => {
      const port = await freePort();
      await c.run(`
        const nqn = 'nqn.2016-06.io.spdk:cnode1';
        await spdk.rpc.call('nvmf_create_transport', { trtype: 'TCP' });
        await spdk.rpc.call('nvmf_create_subsystem', { nqn, allow_any_host: true, serial_number: 'SPDKNODE0001', model_number: 'spdk-node libspdk' });
        await spdk.rpc.call('nvmf_subsystem_add_ns', { nqn, namespace: { bdev_name: 'Malloc0' } });
        await spdk.rpc.call('nvmf_subsystem_add_listener', { nqn, listen_address: { trtype: 'TCP', adrfam: 'IPv4', traddr: '127.0.0.1', trsvcid: '${port}' } });
      `);
      const host = await Spdk.start({ engine: 'builtin', cores: [1] });
      try {
        const ctrlr = await host.nvme.connect(`trtype:TCP adrfam:IPv4 traddr:127.0.0.1 trsvcid:${port} subnqn:nqn.2016-06.io.spdk:cnode1`);
        expect(ctrlr.data.mn).to.equal('spdk-node libspdk');
        expect(ctrlr.data.sn).to.equal('SPDKNODE0001');
        const ns = ctrlr.namespace(1);
        expect(ns.size).to.equal(32768 * 4096);
        const qp = await ctrlr.allocQpair({ depth: 8 });
        const w = host.allocBuffer(65536);
        const r = host.allocBuffer(65536);
        fillPattern(w.bytes, 42);
        await qp.write(ns, w, 100, 16);
        await qp.read(ns, r, 100, 16);
        expect(Buffer.from(r.bytes).equals(Buffer.from(w.bytes))).to.equal(true);
        await ctrlr.detach();
      } finally {
        await host.stop();
      }
      const subs = (await c.run("return spdk.rpc.call('nvmf_get_subsystems')")) as Array<{ nqn: string; namespaces?: unknown[] }>;
      expect(subs.map((s) => s.nqn)).to.deep.equal(['nqn.2014-08.org.nvmexpress.discovery', 'nqn.2016-06.io.spdk:cnode1']);
    });

    it('spdk.nvmf (built on rpc) exports an lvol', async () => {
      const r = (await c.run(`
        const s = await spdk.nvmf.export('lvs0/vol0', { nqn: 'nqn.2016-06.io.spdk:vol0', listen: { traddr: '127.0.0.1', trsvcid: ${await freePort()} }, allowAnyHost: true });
        const listed = await spdk.rpc.call('nvmf_get_subsystems', { nqn: 'nqn.2016-06.io.spdk:vol0' });
        return { nqn: s.nqn, ns: listed[0].namespaces.length };
      `)) as Record<string, unknown>;
      expect(r).to.deep.equal({ nqn: 'nqn.2016-06.io.spdk:vol0', ns: 1 });
    });

    it('the HTTP endpoint (serveRpcHttp): basic auth, SPDK answers, per-credential views', async () => {
      const dir = tempDir();
      try {
        const creds = path.join(dir.dir, 'creds.json');
        fs.writeFileSync(creds, JSON.stringify({ credentials: [{ user: 'cinder', password: 'cpw', nqn_prefix: 'nqn.2016-06.io.spdk:cnode' }] }));
        const url = (await c.run(`
          const h = await spdk.serveRpcHttp({ listen: '127.0.0.1:0', user: 'admin', password: 'secret', credentialsFile: ${JSON.stringify(creds)} });
          return h.url;
        `)) as string;
        const v = await post(url, { jsonrpc: '2.0', id: 1, method: 'spdk_get_version' }, 'admin:secret');
        expect(v.status).to.equal(200);
        expect(JSON.parse(v.body)).to.deep.include({ id: 1 });
        expect(JSON.parse(v.body).result.version).to.equal('SPDK v25.09');
        const denied = await post(url, { jsonrpc: '2.0', id: 2, method: 'spdk_get_version' }, 'admin:wrong');
        expect(denied.status).to.equal(401);
        const err = JSON.parse((await post(url, { jsonrpc: '2.0', id: 3, method: 'bdev_get_bdevs', params: { name: 'Nope0' } }, 'admin:secret')).body);
        expect(err).to.deep.equal({ jsonrpc: '2.0', id: 3, error: { code: -19, message: 'No such device' } });
        // The admin sees every subsystem; cinder's view only cnode*, discovery first.
        const all = JSON.parse((await post(url, { jsonrpc: '2.0', id: 4, method: 'nvmf_get_subsystems' }, 'admin:secret')).body).result.map((s: { nqn: string }) => s.nqn);
        expect(all).to.include('nqn.2016-06.io.spdk:vol0');
        const seen = JSON.parse((await post(url, { jsonrpc: '2.0', id: 5, method: 'nvmf_get_subsystems' }, 'cinder:cpw')).body).result.map((s: { nqn: string }) => s.nqn);
        expect(seen).to.deep.equal(['nqn.2014-08.org.nvmexpress.discovery', 'nqn.2016-06.io.spdk:cnode1']);
        const hidden = JSON.parse((await post(url, { jsonrpc: '2.0', id: 6, method: 'nvmf_subsystem_add_host', params: { nqn: 'nqn.2016-06.io.spdk:vol0', host: 'nqn.2014-08.org.nvmexpress:uuid:1' } }, 'cinder:cpw')).body);
        expect(hidden.error).to.deep.equal({ code: -32602, message: 'Invalid parameters' });
      } finally {
        dir.cleanup();
      }
    });

    it('save_config through spdk.rpc.saveConfig() (framework_get_subsystems + framework_get_config)', async () => {
      const cfg = (await c.run('ctx.saved = await spdk.rpc.saveConfig(); return ctx.saved;')) as SpdkJsonConfig;
      const names = cfg.subsystems.map((s) => s.subsystem);
      expect(names).to.include.members(['bdev', 'nvmf', 'sock', 'accel', 'iobuf']);
      const bdev = cfg.subsystems.find((s) => s.subsystem === 'bdev')?.config ?? [];
      expect(bdev.map((e) => e.method)).to.include('bdev_malloc_create');
      savedConfig = cfg;
    });

    it('lib/provision on spdk.rpc: a volume, a snapshot, a volume from it, an NVMe/TCP export', async () => {
      const port = await freePort();
      const r = (await c.run(`
        const { Provisioner } = require(${JSON.stringify(path.join(__dirname, '..', 'lib'))});
        await spdk.rpc.call('bdev_malloc_create', { name: 'Malloc2', num_blocks: 16384, block_size: 4096 });
        await spdk.rpc.call('bdev_lvol_create_lvstore', { bdev_name: 'Malloc2', lvs_name: 'pool1', cluster_sz: 1048576 });
        const p = await Provisioner.start({ owner: 'test', nodes: [{ name: 'local', rpc: spdk.rpc, pools: ['pool1'], listen: [{ traddr: '127.0.0.1', trsvcid: ${port} }] }] });
        try {
          const v = await p.createVolume({ name: 'pvc-a', sizeBytes: 8 * 1048576 });
          const again = await p.createVolume({ name: 'pvc-a', sizeBytes: 8 * 1048576 });
          const s = await p.createSnapshot({ name: 'snap-a', volumeId: v.id });
          const w = await p.createVolume({ name: 'pvc-b', sizeBytes: 8 * 1048576, source: { snapshotId: s.id } });
          const e = await p.exportVolume(w.id);
          const subs = (await spdk.rpc.call('nvmf_get_subsystems')).map((x) => x.nqn);
          return { same: again.id === v.id, pool: v.pool, source: w.source, nqn: e.nqn, exported: subs.includes(e.nqn), port: e.addresses[0].trsvcid };
        } finally { await p.close(); }
      `)) as Record<string, unknown>;
      expect(r).to.deep.include({ same: true, pool: 'pool1', exported: true });
      expect(r.source).to.have.property('snapshotId');
      expect(String(r.port)).to.equal(String(port));
    });

    it('stop() frees the buffers JavaScript still holds: they read as freed', async () => {
      // Runs last in this process; the child's stop happens in `after`, so stop a second Spdk
      // view is impossible: check the buffer after stopping through the child's own spdk.
      const r = (await c.run(`
        await spdk.stop();
        let msg; try { ctx.kept.bytes; } catch (e) { msg = e.message; }
        let alloc; try { spdk.allocBuffer(10); } catch (e) { alloc = e.code; }
        let call; try { await spdk.rpc.call('spdk_get_version'); } catch (e) { call = e.message; }
        return { freed: ctx.kept.freed, msg, alloc, running: spdk.running, call };
      `)) as Record<string, unknown>;
      expect(r).to.deep.include({ freed: true, msg: 'buffer is no longer usable: the engine was stopped', alloc: 'ESHUTDOWN', running: false });
    });
  });

  describe('starting and stopping', () => {
    it('starts from a config object (SPDK loads it) and from a config file; save_config round-trips', async function () {
      if (!savedConfig) this.skip();
      const saved = savedConfig as SpdkJsonConfig;
      // Ports of the first process are free again; the listeners come back on them.
      const a = child('serve', { ...BASE, config: saved, logLevel: 'error' });
      await a.started();
      const again = (await a.run('return spdk.rpc.saveConfig()')) as SpdkJsonConfig;
      const bdevs = (await a.run(`return ${BDEV_NAMES}`)) as string[];
      const subs = (await a.run("return (await spdk.rpc.call('nvmf_get_subsystems')).map((s) => s.nqn)")) as string[];
      expect((await a.finish()).code, a.output).to.equal(0);
      expect(bdevs).to.deep.equal(['Aio0', 'Malloc0', 'lvs0/clone0', 'lvs0/snap0', 'lvs0/vol0']);
      expect(subs).to.deep.equal(['nqn.2014-08.org.nvmexpress.discovery', 'nqn.2016-06.io.spdk:cnode1', 'nqn.2016-06.io.spdk:vol0']);
      const part = (cfg: SpdkJsonConfig, name: string): unknown => cfg.subsystems.find((s) => s.subsystem === name)?.config;
      expect(part(again, 'bdev')).to.deep.equal(part(saved, 'bdev'));
      expect(part(again, 'nvmf')).to.deep.equal(part(saved, 'nvmf'));

      const dir = tempDir();
      try {
        const file = path.join(dir.dir, 'config.json');
        fs.writeFileSync(file, JSON.stringify({ subsystems: [{ subsystem: 'bdev', config: [{ method: 'bdev_malloc_create', params: { name: 'FromFile', num_blocks: 256, block_size: 512 } }] }] }));
        const b = child('serve', { ...BASE, config: file });
        await b.started();
        expect(await b.run("return (await spdk.rpc.call('bdev_get_bdevs')).map((x) => x.name)")).to.deep.equal(['FromFile']);
        expect((await b.finish()).code, b.output).to.equal(0);
      } finally {
        dir.cleanup();
      }
    });

    it('a config SPDK refuses: start() rejects with SPDK\'s reason, and no SPDK thread is left running', async () => {
      const c = child('fail', {
        ...BASE,
        cores: [0, 1],
        logLevel: 'none',
        config: { subsystems: [{ subsystem: 'bdev', config: [{ method: 'bdev_malloc_create', params: { name: 'Bad', num_blocks: 0, block_size: 4096 } }] }] },
      });
      const r = await c.report((x) => 'error' in x);
      expect(r.error?.code).to.equal('ERR_SPDK_START');
      expect(r.error?.message).to.match(/^SPDK failed to start \(spdk_app_start returned -22\):\n/);
      expect(r.error?.message).to.include('Disk num_blocks must be greater than 0');
      // spdk_app's thread is joined; DPDK's worker lcore (reactor_1) stays parked in DPDK, idle.
      expect(r.threads as string[]).to.not.include('spdk_app');
      expect(r.cpuTicksPerSecond as number).to.be.below(30); // 100 ticks = one busy core
      const exit = await c.exited;
      expect(exit.code, c.output).to.equal(0); // the event loop emptied by itself
    });

    it('a second start after stop() rejects clearly (DPDK starts once per process)', async () => {
      const c = child('restart');
      const r = await c.report((x) => 'error' in x);
      expect(r.error?.code).to.equal('ERR_SPDK_ENV_ONCE');
      expect(r.error?.message).to.match(/already started and stopped in this process; DPDK's environment cannot be initialised twice/);
      expect((await c.exited).code, c.output).to.equal(0);
    });

    it("DPDK's runtime directories: a start removes those of SPDK processes that are gone, a stop its own", async () => {
      // A process that has exited: its pid names a leftover directory.
      const gone = spawn(process.execPath, ['-e', '0']);
      await new Promise((r) => gone.on('exit', r));
      const base = process.getuid?.() === 0 ? '/var/run/dpdk' : path.join(process.env.XDG_RUNTIME_DIR ?? '/tmp', 'dpdk');
      const stale = path.join(base, `spdk_pid${gone.pid}`);
      fs.mkdirSync(stale, { recursive: true });
      fs.writeFileSync(path.join(stale, 'config'), '');
      const c = child('serve');
      const r = await c.started();
      const own = path.join(base, `spdk_pid${r.pid as number}`);
      const during = { stale: fs.existsSync(stale), own: fs.existsSync(own) };
      expect((await c.finish()).code, c.output).to.equal(0);
      expect(during).to.deep.equal({ stale: false, own: true });
      expect(fs.existsSync(own)).to.equal(false);
    });

    it("SIGTERM reaches Node's handler (SPDK's signal handlers are off); the child stops SPDK and exits cleanly", async () => {
      const c = child('sigterm');
      await c.started();
      c.proc.kill('SIGTERM');
      await c.report((r) => r.stopped === true);
      expect(c.reports.some((r) => r.sigterm === true)).to.equal(true);
      const exit = await c.exited;
      expect(exit).to.deep.include({ code: 0, signal: null });
    });

    for (const mode of ['exit', 'unref']) {
      it(`${mode === 'exit' ? 'process.exit(0)' : 'unref() and an empty loop'} with SPDK running: exits within 10 s, code 0, no crash`, async () => {
        const c = child(mode, { ...BASE, cores: [0, 1] });
        await c.started();
        const exit = await c.exited;
        expect(exit.signal, c.output).to.equal(null);
        expect(exit.code, c.output).to.equal(0);
        expect(exit.ms).to.be.below(10000);
        expect(c.output).to.not.match(/Segmentation|Aborted|core dumped|ERROR/);
      });
    }

    it("engine 'auto' picks libspdk and says why", async () => {
      const c = child('serve', { ...BASE, engine: 'auto' });
      const s = await c.started();
      expect(s.engine).to.equal('libspdk');
      expect(s.reason).to.equal('auto: SPDK found');
      expect((await c.finish()).code, c.output).to.equal(0);
    });

    it('`spdk-node target --engine libspdk`: Malloc0 exported over NVMe/TCP through RPC calls; SIGTERM stops it', async () => {
      const port = await freePort();
      const sock = uniqueSocketPath('libspdk-cli');
      const p = spawn(process.execPath, [CLI, 'target', '--engine', 'libspdk', '--no-huge', '--mem-size', '512', '--rpc-socket', sock, '--nvmf', `127.0.0.1:${port}`], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      p.stdout.on('data', (d) => (out += d));
      p.stderr.on('data', (d) => (out += d));
      const exited = new Promise<number | null>((resolve) => p.on('exit', (code) => resolve(code)));
      try {
        const end = Date.now() + 30000;
        while (!out.includes('serving SPDK JSON-RPC') && Date.now() < end && p.exitCode === null) await new Promise((r) => setTimeout(r, 50));
        expect(out).to.include('engine libspdk (requested)');
        expect(out).to.include(`NVMe/TCP: nqn.2016-06.io.spdk:cnode1 (Malloc0) on 127.0.0.1:${port}`);
        const client = await RpcClient.connect(sock);
        try {
          const subs = (await client.call('nvmf_get_subsystems')) as Array<{ nqn: string; listen_addresses: Array<{ trsvcid: string }> }>;
          const cnode1 = subs.find((s) => s.nqn === 'nqn.2016-06.io.spdk:cnode1');
          expect(cnode1?.listen_addresses[0].trsvcid).to.equal(String(port));
          await client.call('bdev_get_bdevs', { name: 'Nope' }).then(
            () => expect.fail('resolved'),
            (e: JsonRpcError) => expect([e.code, e.message]).to.deep.equal([-19, 'No such device']),
          );
        } finally {
          await client.close();
        }
      } finally {
        p.kill('SIGTERM');
        const t = setTimeout(() => p.pid && p.exitCode === null && process.kill(p.pid, 'SIGKILL'), 15000);
        await exited;
        clearTimeout(t);
      }
      expect(await exited, out).to.equal(0);
    });
  });
});
