/**
 * spdk.nvme on the libspdk engine: SPDK's own NVMe driver behind lib/nvme's API, the queue pairs
 * polled by the JS thread. The host runs in a child process (test/helpers/libspdk-child.ts: one
 * SPDK per process), the target is SPDK's nvmf_tgt (its own process, core 1), so three
 * processes talk over 127.0.0.1. Covers connect and Identify, admin commands, write/read/compare
 * with random patterns, 1 MiB I/O, flush/write zeroes/deallocate, the batch API, NVMe errors,
 * connection refused and a wrong NQN, a namespace added on the target, the target killed with
 * I/O in flight, queue pairs owned by a reactor (I/O, the batch path, free with I/O in flight,
 * controller reset), command timeouts on both owners (against nvmf_tgt's delay bdev, which
 * aborts, and the builtin target's slow bdev in this process, which cannot), and
 * `spdk-node perf --engine libspdk`.
 *
 * Skipped with one line where the libspdk addon is not built or nvmf_tgt is not installed;
 * with CI=true and SPDK installed, a missing addon fails instead.
 */
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { Spdk } from '../lib';
import { libspdkUnavailableReason } from '../lib/engine/load';
import { uniqueSocketPath } from './helpers/env';
import { freePort } from './helpers/nvme-tcp-host';
import { SpdkChild } from './helpers/spdk-child';
import { findSpdkBinary, skipLine, SpdkProcess, startSpdkApp } from './helpers/spdk-install';

// eslint-disable-next-line @typescript-eslint/no-var-requires
const probe = require(path.join(__dirname, '..', '..', 'spdk', 'probe.js')) as { probe: () => { found: boolean } };
const LIB = path.join(__dirname, '..', 'lib');
const CLI = path.join(__dirname, '..', 'lib', 'cli', 'main.js');
const NQN = 'nqn.2016-06.io.spdk:lnvme1';
const UUID = '6b1e0e4c-7c2a-4d8e-9b0a-2f4a0c2b9d42';
const MIB = 1024 * 1024;
const SLOW_NQN = 'nqn.2016-06.io.spdk:lnvme-slow';
const DELAY_US = 1500000;

async function configure(tgt: SpdkProcess, port: number): Promise<void> {
  const call = (m: string, p?: unknown): Promise<unknown> => tgt.client.call(m, p as never);
  await call('nvmf_create_transport', { trtype: 'TCP', max_io_size: MIB });
  await call('bdev_malloc_create', { name: 'Malloc0', num_blocks: 65536, block_size: 512 });
  await call('bdev_malloc_create', { name: 'Malloc1', num_blocks: 4096, block_size: 4096 });
  await call('nvmf_create_subsystem', { nqn: NQN, allow_any_host: true, serial_number: 'SPDKNODELNVME001', model_number: 'spdk-node libspdk host' });
  await call('nvmf_subsystem_add_ns', { nqn: NQN, namespace: { bdev_name: 'Malloc0', uuid: UUID } });
  await call('nvmf_subsystem_add_ns', { nqn: NQN, namespace: { bdev_name: 'Malloc1' } });
  await call('nvmf_subsystem_add_listener', { nqn: NQN, listen_address: { trtype: 'TCP', adrfam: 'IPv4', traddr: '127.0.0.1', trsvcid: String(port) } });
  await addSlowSubsystem(call, port, async () => {
    // SPDK's delay bdev: every I/O takes DELAY_US, and it aborts one on request.
    await call('bdev_malloc_create', { name: 'SlowBase', num_blocks: 2048, block_size: 512 });
    await call('bdev_delay_create', { base_bdev_name: 'SlowBase', name: 'Slow0', avg_read_latency: DELAY_US, p99_read_latency: DELAY_US, avg_write_latency: DELAY_US, p99_write_latency: DELAY_US });
  });
}

async function addSlowSubsystem(call: (m: string, p?: unknown) => Promise<unknown>, port: number, createSlow0: () => Promise<void>): Promise<void> {
  await createSlow0();
  await call('nvmf_create_transport', { trtype: 'TCP' }).catch(() => undefined);
  await call('nvmf_create_subsystem', { nqn: SLOW_NQN, allow_any_host: true, serial_number: 'SPDKNODELNVME002', model_number: 'spdk-node slow' });
  await call('nvmf_subsystem_add_ns', { nqn: SLOW_NQN, namespace: { bdev_name: 'Slow0' } });
  await call('nvmf_subsystem_add_listener', { nqn: SLOW_NQN, listen_address: { trtype: 'TCP', adrfam: 'IPv4', traddr: '127.0.0.1', trsvcid: String(port) } });
}

/** Code run in the child before each test body: the API, helpers and the controller. */
const PRELUDE = `
  const lib = require(${JSON.stringify(LIB)});
  const fill = (b, seed) => { let x = seed >>> 0 || 1; for (let i = 0; i < b.length; i++) { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; b[i] = x & 255; } };
  const same = (a, b) => Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.length), Buffer.from(b.buffer, b.byteOffset, b.length)) === 0;
  const errorOf = async (p) => { try { await p; } catch (e) { return { name: e.name, code: e.code, errno: e.errno, message: e.message, sct: e.sct, sc: e.sc, statusName: e.statusName }; } return null; };
`;

const nvmfTgt = findSpdkBinary('nvmf_tgt');

describe('spdk.nvme on the libspdk engine (SPDK NVMe driver, host in a child process)', function () {
  this.timeout(120000);
  let tgt: SpdkProcess | undefined;
  let port = 0;
  let c: SpdkChild | undefined;
  const run = (code: string): Promise<unknown> => (c as SpdkChild).run(PRELUDE + code);

  before(async function () {
    const why = libspdkUnavailableReason();
    if (why !== undefined) {
      if (process.env.CI === 'true' && probe.probe().found) throw new Error(`CI: SPDK is installed but the libspdk engine is unavailable: ${why}`);
      console.log(`    libspdk nvme suite skipped: ${why}`);
      this.skip();
    }
    if (!nvmfTgt) {
      console.log(`    ${skipLine('nvmf_tgt')}`);
      this.skip();
    }
    port = await freePort();
    tgt = await startSpdkApp(nvmfTgt as string, uniqueSocketPath('lnvme-tgt'), ['--disable-cpumask-locks']);
    await configure(tgt, port);
    c = new SpdkChild('serve', { engine: 'libspdk', cores: [0], noHuge: true, logLevel: 'none' });
    await c.started();
    await run(`ctx.ctrlr = await spdk.nvme.connect('trtype:TCP adrfam:IPv4 traddr:127.0.0.1 trsvcid:${port} subnqn:${NQN}');
               ctx.qp = await ctx.ctrlr.allocQpair({ depth: 64 });`);
  });

  after(async () => {
    if (c) {
      const exit = await Promise.race([c.finish(), new Promise<undefined>((r) => setTimeout(() => r(undefined), 20000))]);
      c.kill();
      expect(exit, 'the child stops SPDK and exits by itself').to.not.equal(undefined);
    }
    await tgt?.client.close().catch(() => undefined);
    await tgt?.stop();
  });

  it('connect: Identify Controller and the namespaces decoded (serial, model, NQN, sizes, UUID)', async () => {
    const r = (await run(`const k = ctx.ctrlr; return { sn: k.data.sn, mn: k.data.mn, subnqn: k.data.subnqn, cntlid: k.cntlid, mdts: k.maxTransferSize,
      ids: k.namespaceIds, ns: k.namespaces().map((n) => ({ id: n.id, bs: n.sectorSize, n: n.numSectors, uuid: n.uuid })), ready: !k.failed, engine: spdk.engine };`)) as Record<string, unknown>;
    expect(r.engine).to.equal('libspdk');
    expect(r.sn).to.equal('SPDKNODELNVME001');
    expect(r.mn).to.equal('spdk-node libspdk host');
    expect(r.subnqn).to.equal(NQN);
    expect(r.ids).to.deep.equal([1, 2]);
    expect(r.ns).to.deep.equal([
      { id: 1, bs: 512, n: 65536, uuid: UUID },
      { id: 2, bs: 4096, n: 4096, uuid: (r.ns as Array<{ uuid: string }>)[1].uuid },
    ]);
    expect(r.mdts).to.be.at.least(MIB);
    expect(r.ready).to.equal(true);
  });

  it('admin commands: Get Log Page, Get Features, Identify; an unknown log page is an NvmeError', async () => {
    const r = (await run(`const a = ctx.ctrlr.admin;
      const log = await a.getLogPage(0x02, 512);
      const arb = await a.getFeatures(0x01);
      const id = await a.identify(1);
      return { log: log.length, arb: typeof arb, idSn: id.subarray(4, 24).toString().trim(), bad: await errorOf(a.getLogPage(0xbf, 512)) };`)) as Record<string, unknown>;
    expect(r.log).to.equal(512);
    expect(r.arb).to.equal('number');
    expect(r.idSn).to.equal('SPDKNODELNVME001');
    expect((r.bad as { name: string }).name).to.equal('NvmeError');
  });

  it('write, read back, compare: random patterns at random offsets on both namespaces; compare failure', async () => {
    const r = (await run(`const out = [];
      for (const nsid of [1, 2]) {
        const ns = ctx.ctrlr.namespace(nsid);
        for (let i = 0; i < 20; i++) {
          const blocks = 1 + Math.floor(Math.random() * 16);
          const lba = Math.floor(Math.random() * (ns.numSectors - blocks));
          const w = spdk.allocBuffer(blocks * ns.sectorSize); fill(w.bytes, nsid * 1000 + i + 1);
          const rd = spdk.allocBuffer(blocks * ns.sectorSize);
          await ctx.qp.write(ns, w, lba, blocks);
          await ctx.qp.read(ns, rd, lba, blocks);
          await ctx.qp.compare(ns, w, lba, blocks);
          out.push(same(w.bytes, rd.bytes));
          w.bytes[0] ^= 0xff;
          if (i === 0) out.push((await errorOf(ctx.qp.compare(ns, w, lba, blocks)))?.name);
          w.free(); rd.free();
        }
      }
      return out;`)) as unknown[];
    expect(r.filter((x) => x === true)).to.have.length(40);
    // nvmf_tgt v25.09 answers a miscompare of an unfused Compare with INTERNAL DEVICE ERROR (see nvme-host.test.ts).
    expect(r.filter((x) => x === 'NvmeError')).to.have.length(2);
  });

  it('1 MiB writes and reads with a buffer offset, many commands at once through the promise API', async () => {
    const r = (await run(`const ns = ctx.ctrlr.namespace(1);
      const w = spdk.allocBuffer(${MIB} + 4096); fill(w.bytes, 7);
      const rd = spdk.allocBuffer(${MIB} + 4096);
      await ctx.qp.write(ns, w, 100, 2048, { bufferOffset: 4096 });
      await ctx.qp.read(ns, rd, 100, 2048, { bufferOffset: 512 });
      const big = same(w.bytes.subarray(4096), rd.bytes.subarray(512, 512 + ${MIB}));
      const bufs = []; const ps = [];
      for (let i = 0; i < 200; i++) { const b = spdk.allocBuffer(512); fill(b.bytes, 500 + i); bufs.push(b); ps.push(ctx.qp.write(ns, b, 5000 + i, 1)); }
      await Promise.all(ps);
      const back = spdk.allocBuffer(200 * 512);
      await ctx.qp.read(ns, back, 5000, 200);
      let ok = 0; for (let i = 0; i < 200; i++) if (same(bufs[i].bytes, back.bytes.subarray(i * 512, (i + 1) * 512))) ok++;
      return { big, ok };`)) as Record<string, unknown>;
    expect(r).to.deep.equal({ big: true, ok: 200 });
  });

  it('flush, write zeroes, deallocate; Write Zeroes with DEAC reaches the target (nvmf_tgt v25.09 refuses it: INVALID FIELD)', async () => {
    const r = (await run(`const ns = ctx.ctrlr.namespace(2);
      const w = spdk.allocBuffer(4 * 4096); fill(w.bytes, 99);
      await ctx.qp.write(ns, w, 10, 4);
      await ctx.qp.flush(ns);
      await ctx.qp.writeZeroes(ns, 10, 2);
      const deac = await errorOf(ctx.qp.writeZeroes(ns, 12, 1, { deallocate: true }));
      await ctx.qp.deallocate(ns, [{ lba: 12, blocks: 2 }]);
      const rd = spdk.allocBuffer(4 * 4096);
      await ctx.qp.read(ns, rd, 10, 4);
      return { zero: rd.bytes.subarray(0, 2 * 4096).every((x) => x === 0), deac: deac && deac.statusName };`)) as Record<string, unknown>;
    expect(r.zero).to.equal(true);
    expect(r.deac).to.equal('INVALID FIELD');
  });

  it('LBA out of range: an NvmeError with SCT/SC, the command and the LBA', async () => {
    const e = (await run(`const ns = ctx.ctrlr.namespace(1); const b = spdk.allocBuffer(1024);
      return errorOf(ctx.qp.read(ns, b, 65535, 2));`)) as Record<string, unknown>;
    expect(e.name).to.equal('NvmeError');
    expect(e.sct).to.equal(0);
    expect(e.sc).to.equal(0x80);
    expect(e.statusName).to.equal('LBA OUT OF RANGE');
    expect(e.message).to.match(/READ \(nsid 1, lba 65535, 2 blocks/);
  });

  it('the batch path: submitWrite/submitRead, flushSubmissions, reap(ring); data verified; few native calls', async () => {
    const r = (await run(`const ns = ctx.ctrlr.namespace(1); const qp = ctx.qp;
      const n = 48; const ring = new Int32Array(2 * 64);
      const w = spdk.allocBuffer(n * 4096); fill(w.bytes, 1234); const rd = spdk.allocBuffer(n * 4096);
      const calls0 = qp.nativeCalls;
      for (let t = 0; t < n; t++) qp.submitWrite(ns, w, 20000 + t * 8, 8, t, t * 4096);
      qp.flushSubmissions();
      let done = 0, bad = 0;
      while (done < n) { const k = await qp.reap(ring); for (let i = 0; i < k; i++) if (ring[2 * i + 1] !== 0) bad++; done += k; }
      for (let t = 0; t < n; t++) qp.submitRead(ns, rd, 20000 + t * 8, 8, 1000 + t, t * 4096);
      const tags = new Set(); done = 0;
      while (done < n) { const k = await qp.reap(ring); for (let i = 0; i < k; i++) { tags.add(ring[2 * i]); if (ring[2 * i + 1] !== 0) bad++; } done += k; }
      return { bad, tags: tags.size, same: same(w.bytes, rd.bytes), calls: qp.nativeCalls - calls0, outstanding: qp.outstanding, stats: qp.stats() };`)) as Record<string, unknown>;
    expect(r.bad).to.equal(0);
    expect(r.tags).to.equal(48);
    expect(r.same).to.equal(true);
    expect(r.outstanding).to.equal(0);
    expect(r.calls as number).to.be.below(96);
  });

  it("owner 'reactor': random data written and read back at depth 64, the batch path, both namespaces; reactor out of range refused", async () => {
    const r = (await run(`const qp = await ctx.ctrlr.allocQpair({ owner: 'reactor', depth: 64 });
      const out = { owner: qp.owner, bad: 0, same: 0 };
      for (const nsid of [1, 2]) {
        const ns = ctx.ctrlr.namespace(nsid);
        const n = 64, blocks = 8, bytes = blocks * ns.sectorSize;
        const w = spdk.allocBuffer(n * bytes); fill(w.bytes, 4242 + nsid); const rd = spdk.allocBuffer(n * bytes);
        const base = Math.floor(Math.random() * (ns.numSectors - n * blocks));
        await Promise.all(Array.from({ length: n }, (_, i) => qp.write(ns, w, base + i * blocks, blocks, { bufferOffset: i * bytes })));
        // The batch path on the same queue pair: reads, reaped through a ring.
        const ring = new Int32Array(2 * n);
        for (let t = 0; t < n; t++) qp.submitRead(ns, rd, base + t * blocks, blocks, t, t * bytes);
        qp.flushSubmissions();
        let done = 0;
        while (done < n) { const k = await qp.reap(ring); for (let i = 0; i < k; i++) if (ring[2 * i + 1] !== 0) out.bad++; done += k; }
        if (same(w.bytes, rd.bytes)) out.same++;
        w.bytes[0] ^= 1;
        out['miscompare' + nsid] = (await errorOf(qp.compare(ns, w, base, blocks)))?.name;
        w.free(); rd.free();
      }
      out.outstanding = qp.outstanding;
      out.stats = qp.stats();
      await qp.free();
      out.state = qp.state;
      out.badReactor = await errorOf(ctx.ctrlr.allocQpair({ owner: 'reactor', reactor: 1 }));
      // Left open with a read in flight: spdk.stop() at the end of the suite detaches it (after).
      ctx.rq = await ctx.ctrlr.allocQpair({ owner: 'reactor', depth: 4 });
      ctx.rqRead = ctx.rq.read(ctx.ctrlr.namespace(1), spdk.allocBuffer(4096), 0, 8).catch(() => undefined);
      return out;`)) as Record<string, unknown>;
    expect(r.owner).to.equal('reactor');
    expect(r.bad).to.equal(0);
    expect(r.same).to.equal(2);
    expect(r.miscompare1).to.equal('NvmeError');
    expect(r.miscompare2).to.equal('NvmeError');
    expect(r.outstanding).to.equal(0);
    expect(r.stats).to.deep.equal({});
    expect(r.state).to.equal('closed');
    expect((r.badReactor as { code: string; message: string }).code).to.equal('ERR_INVALID_ARG');
    expect((r.badReactor as { message: string }).message).to.match(/reactor must be 0\.\.0/);
  });

  it("owner 'reactor': free() with slow I/O in flight completes it with ABORTED - SQ DELETION; the buffer is released", async () => {
    const r = (await run(`const k = await spdk.nvme.connect('trtype:TCP traddr:127.0.0.1 trsvcid:${port} subnqn:${SLOW_NQN}');
      try {
        const qp = await k.allocQpair({ owner: 'reactor', depth: 4 });
        const b = spdk.allocBuffer(4096);
        const ps = [0, 1, 2].map((i) => errorOf(qp.read(k.namespace(1), b, i, 1, { bufferOffset: i * 512 })));
        await new Promise((r) => setTimeout(r, 100));
        const t0 = Date.now();
        await qp.free();
        const errs = await Promise.all(ps);
        return { ms: Date.now() - t0, errs: errs.map((e) => e && e.statusName), inFlight: b.inFlight, state: qp.state };
      } finally { await k.detach(); }`)) as Record<string, unknown>;
    expect(r.errs).to.deep.equal(['ABORTED - SQ DELETION', 'ABORTED - SQ DELETION', 'ABORTED - SQ DELETION']);
    expect(r.ms as number).to.be.below(DELAY_US / 1000);
    expect(r.inFlight).to.equal(0);
    expect(r.state).to.equal('closed');
  });

  it('a second connect to the same controller and host NQN is refused (SPDK would share one controller); another host NQN gets its own', async () => {
    const r = (await run(`const e = await errorOf(spdk.nvme.connect('trtype:TCP traddr:127.0.0.1 trsvcid:${port} subnqn:${NQN}'));
      const k = await spdk.nvme.connect('trtype:TCP traddr:127.0.0.1 trsvcid:${port} subnqn:${NQN}', { hostnqn: 'nqn.2014-08.io.spdk-node:second-host' });
      const out = { e, distinct: k.cntlid !== ctx.ctrlr.cntlid };
      await k.detach();
      // The first controller is untouched.
      const b = spdk.allocBuffer(512); await ctx.qp.read(ctx.ctrlr.namespace(1), b, 0, 1); b.free();
      return out;`)) as Record<string, unknown>;
    expect((r.e as { code: string }).code).to.equal('EALREADY');
    expect((r.e as { message: string }).message).to.match(/already connected to .* attaches a controller once per transport ID and host NQN/);
    expect(r.distinct).to.equal(true);
  });

  it('ctrlr.reset() with queue pairs of both owners: they reconnect and do I/O again (a new association)', async () => {
    const r = (await run(`const k = await spdk.nvme.connect('trtype:TCP traddr:127.0.0.1 trsvcid:${port} subnqn:${NQN}', { hostnqn: 'nqn.2014-08.io.spdk-node:reset-host' });
      try {
        const qs = [await k.allocQpair({ owner: 'js', depth: 8 }), await k.allocQpair({ owner: 'reactor', depth: 8 })];
        const ns = k.namespace(1); const w = spdk.allocBuffer(4096); fill(w.bytes, 77); const rd = spdk.allocBuffer(4096);
        for (const q of qs) await q.write(ns, w, 300, 8);
        const cntlid = k.cntlid;
        await k.reset();
        const out = { states: qs.map((q) => q.state), newAssociation: k.cntlid !== cntlid, same: 0 };
        for (const q of qs) { rd.bytes.fill(0); await q.read(ns, rd, 300, 8); if (same(w.bytes, rd.bytes)) out.same++; }
        for (const q of qs) await q.free();
        return out;
      } finally { await k.detach(); }`)) as Record<string, unknown>;
    expect(r.states).to.deep.equal(['ready', 'ready']);
    expect(r.newAssociation).to.equal(true);
    expect(r.same).to.equal(2);
  });

  for (const owner of ['js', 'reactor']) {
    it(`a command timeout (${owner}), nvmf_tgt's delay bdev: an Abort, and the command completes with ABORTED - BY REQUEST before the target would have answered`, async () => {
      const r = (await run(`const k = await spdk.nvme.connect('trtype:TCP traddr:127.0.0.1 trsvcid:${port} subnqn:${SLOW_NQN}');
        try {
          const qp = await k.allocQpair({ owner: '${owner}', depth: 4, timeoutMs: 300 });
          const b = spdk.allocBuffer(512);
          const t0 = Date.now();
          const e = await errorOf(qp.read(k.namespace(1), b, 0, 1));
          const out = { ms: Date.now() - t0, e, state: qp.state, inFlight: b.inFlight };
          await qp.free();
          return out;
        } finally { await k.detach(); }`)) as Record<string, unknown>;
      expect((r.e as { statusName: string }).statusName).to.equal('ABORTED - BY REQUEST');
      expect(r.ms as number).to.be.below(DELAY_US / 1000);
      expect(r.state).to.equal('ready');
      expect(r.inFlight).to.equal(0);
    });
  }

  describe("command timeouts against a target that cannot abort (the builtin engine's, in this process)", () => {
    let builtin: Spdk | undefined;
    let bport = 0;
    before(async () => {
      bport = await freePort();
      builtin = await Spdk.start({ engine: 'builtin', cores: [1] });
      const b = builtin;
      await addSlowSubsystem((m, p) => b.rpc.call(m, p as never), bport, async () => {
        // A test-only bdev of the builtin engine that delays every I/O and ignores Abort.
        (b.nativeEngine as unknown as { createRecordBdev(n: string, blocks: number, bs: number, delayUs: number): unknown }).createRecordBdev('Slow0', 2048, 512, DELAY_US);
      });
    });
    after(async () => {
      await builtin?.stop();
    });

    for (const owner of ['js', 'reactor']) {
      it(`owner ${owner}: the command fails with ETIMEDOUT, the others with ECONNABORTED, the qpair is failed; reset() recovers; no timeout: the slow command completes`, async () => {
        const r = (await run(`const k = await spdk.nvme.connect('trtype:TCP traddr:127.0.0.1 trsvcid:${bport} subnqn:${SLOW_NQN}');
          try {
            const qp = await k.allocQpair({ owner: '${owner}', depth: 4, timeoutMs: 300 });
            const ns = k.namespace(1); const b = spdk.allocBuffer(1024);
            const t0 = Date.now();
            const first = errorOf(qp.read(ns, b, 0, 1));
            await new Promise((r) => setTimeout(r, 100));
            const second = errorOf(qp.read(ns, b, 1, 1, { bufferOffset: 512 }));
            const errs = await Promise.all([first, second]);
            const out = { ms: Date.now() - t0, errs: errs.map((e) => e && [e.code, e.message]), state: qp.state, failure: qp.failure, inFlight: b.inFlight,
              again: await errorOf(qp.read(ns, b, 0, 1)) };
            await k.reset();
            out.afterReset = qp.state;
            const q2 = await k.allocQpair({ owner: '${owner}', depth: 2, timeoutMs: 0 });
            const t1 = Date.now();
            await q2.read(ns, b, 0, 1);
            out.slowMs = Date.now() - t1;
            return out;
          } finally { await k.detach(); }`)) as Record<string, unknown>;
        const errs = r.errs as Array<[string, string]>;
        expect(errs[0][0]).to.equal('ETIMEDOUT');
        expect(errs[0][1]).to.match(/READ \(nsid 1, lba 0, 1 blocks, qid \d+\) timed out/);
        expect(errs[1][0]).to.equal('ECONNABORTED');
        expect(r.ms as number).to.be.below(DELAY_US / 1000);
        expect(r.state).to.equal('failed');
        expect(r.failure).to.match(/got no completion within 300 ms and the controller did not abort it/);
        expect(r.inFlight).to.equal(0);
        expect((r.again as { code: string; message: string }).code).to.equal('ENOTCONN');
        expect((r.again as { message: string }).message).to.match(/disconnected .*reset\(\) reconnects/);
        expect(r.afterReset).to.equal('ready');
        expect(r.slowMs as number).to.be.at.least(DELAY_US / 1000 - 50);
      });
    }
  });

  it('discovery: the log lists both subsystems at this address (SPDK discovery controller)', async () => {
    // nvmf_tgt serves discovery on every listener's address.
    const r = (await run(`const log = await spdk.nvme.discover('trtype:TCP adrfam:IPv4 traddr:127.0.0.1 trsvcid:${port}');
      return { numrec: log.numrec, entries: log.entries.map((e) => [e.subnqn, e.trsvcid, e.trtype]) };`)) as { numrec: number; entries: Array<[string, string, unknown]> };
    const nqns = r.entries.map((e) => e[0]);
    expect(nqns).to.include(NQN);
    expect(nqns).to.include(SLOW_NQN);
    for (const e of r.entries) expect(e[1]).to.equal(String(port));
    expect(r.numrec).to.equal(r.entries.length);
  });

  it('header and data digests (CRC32C on every PDU): verified writes and reads', async () => {
    const r = (await run(`const k = await spdk.nvme.connect('trtype:TCP traddr:127.0.0.1 trsvcid:${port} subnqn:${NQN}', { hostnqn: 'nqn.2014-08.io.spdk-node:digest-host', headerDigest: true, dataDigest: true });
      try {
        const qp = await k.allocQpair({ depth: 16 });
        const ns = k.namespace(1); const w = spdk.allocBuffer(16 * 65536); fill(w.bytes, 31337); const rd = spdk.allocBuffer(16 * 65536);
        await Promise.all(Array.from({ length: 16 }, (_, i) => qp.write(ns, w, 40000 + i * 128, 128, { bufferOffset: i * 65536 })));
        await Promise.all(Array.from({ length: 16 }, (_, i) => qp.read(ns, rd, 40000 + i * 128, 128, { bufferOffset: i * 65536 })));
        return same(w.bytes, rd.bytes);
      } finally { await k.detach(); }`)) as boolean;
    expect(r).to.equal(true);
  });

  it('connection refused and a wrong subsystem NQN: clear SpdkErrors', async () => {
    const closed = await freePort();
    const r = (await run(`return [await errorOf(spdk.nvme.connect('trtype:TCP traddr:127.0.0.1 trsvcid:${closed} subnqn:${NQN}')),
      await errorOf(spdk.nvme.connect('trtype:TCP traddr:127.0.0.1 trsvcid:${port} subnqn:nqn.2016-06.io.spdk:nosuch'))];`)) as Array<Record<string, unknown>>;
    expect(r[0].code).to.equal('ECONNREFUSED');
    expect(r[0].message).to.match(/cannot connect to 127\.0\.0\.1:\d+ .*Connection refused/);
    expect(r[1].errno).to.equal(22);
    expect(r[1].message).to.match(/Connect refused: CONNECT INVALID PARAMETERS \(SCT 0x1, SC 0x82\)/);
  });

  it("a namespace added on the target: 'namespacesChanged' with the namespaces re-read", async () => {
    await run(`ctx.changed = new Promise((resolve) => ctx.ctrlr.once('namespacesChanged', (nsids) => resolve({ nsids, ids: ctx.ctrlr.namespaceIds, bs: ctx.ctrlr.namespace(3).sectorSize })));`);
    await tgt!.client.call('bdev_malloc_create', { name: 'Malloc9', num_blocks: 2048, block_size: 4096 });
    await tgt!.client.call('nvmf_subsystem_add_ns', { nqn: NQN, namespace: { bdev_name: 'Malloc9', nsid: 3 } });
    const r = await run(`return await Promise.race([ctx.changed, new Promise((r) => setTimeout(() => r('timeout'), 5000))]);`);
    expect(r).to.deep.equal({ nsids: [3], ids: [1, 2, 3], bs: 4096 });
  });

  it('the target killed with 64 reads in flight: every one fails promptly with an SpdkError, the controller reports it', async () => {
    const p2 = await freePort();
    const t2 = await startSpdkApp(nvmfTgt as string, uniqueSocketPath('lnvme-tgt2'), ['--disable-cpumask-locks']);
    try {
      await configure(t2, p2);
      await run(`ctx.k2 = await spdk.nvme.connect('trtype:TCP traddr:127.0.0.1 trsvcid:${p2} subnqn:${NQN}', { keepAliveTimeoutMs: 2000 });
        ctx.q2 = await ctx.k2.allocQpair({ depth: 64 });
        const ns = ctx.k2.namespace(1); const b = spdk.allocBuffer(64 * 65536);
        ctx.buf2 = b;
        ctx.t0 = 0;
        ctx.results = Promise.all(Array.from({ length: 64 }, (_, i) => ctx.q2.read(ns, b, i * 128, 128, { bufferOffset: i * 65536 }).then(() => 'ok', (e) => { ctx.t1 = Date.now(); return e.name + ':' + e.code + (e.statusName ? ':' + e.statusName : ''); })));
        // keep them coming until the kill
        ctx.more = true;
        (async () => { while (ctx.more) { await ctx.q2.read(ns, spdk.allocBuffer(512), 0, 1).catch(() => { ctx.more = false; }); } })();`);
      t2.proc.kill('SIGKILL');
      const t0 = Date.now();
      const r = (await run(`const rs = await Promise.race([ctx.results, new Promise((r) => setTimeout(() => r('hang'), 10000))]);
        return { rs, inFlight: ctx.buf2.inFlight, failed: ctx.q2.state, err: await errorOf(ctx.q2.read(ctx.k2.namespace(1), ctx.buf2, 0, 1)) };`)) as Record<string, unknown>;
      expect(r.rs).to.not.equal('hang');
      expect(Date.now() - t0).to.be.below(5000);
      const rs = r.rs as string[];
      expect(rs).to.have.length(64);
      for (const x of rs) expect(x === 'ok' || x === 'SpdkError:ECONNRESET', rs.join()).to.equal(true);
      expect(rs.filter((x) => x !== 'ok').length).to.be.greaterThan(0);
      expect(r.inFlight).to.equal(0);
      expect(r.failed).to.equal('failed');
      expect((r.err as { code: string }).code).to.equal('ENOTCONN');
      await run(`await ctx.k2.detach();`);
    } finally {
      await t2.client.close().catch(() => undefined);
      await t2.stop();
    }
  });

  for (const owner of ['js', 'reactor']) {
    it(`spdk-node perf --engine libspdk --owner ${owner}: runs and prints its table`, async function () {
      // Its own process (and SPDK); the host's child above keeps running on core 0 meanwhile.
      const r = spawnSync(
        process.execPath,
        [CLI, 'perf', '--engine', 'libspdk', '--owner', owner, '-q', '8', '-o', '4096', '-w', 'randread', '-t', '1', '-r', `trtype:TCP traddr:127.0.0.1 trsvcid:${port} subnqn:${NQN} ns:1`, '--no-progress'],
        { encoding: 'utf8', timeout: 60000, killSignal: 'SIGKILL' },
      );
      expect(r.status, r.stdout + r.stderr).to.equal(0);
      const total = /^Total\s+:\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)/m.exec(r.stdout);
      expect(total, r.stdout).to.not.equal(null);
      expect(Number(total![1])).to.be.greaterThan(0);
      expect(r.stdout).to.match(/Attached to NVMe-oF Controller at TCP \(addr:127\.0\.0\.1 subnqn:nqn\.2016-06\.io\.spdk:lnvme1\)/);
    });
  }

});
