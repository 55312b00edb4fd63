import { expect } from 'chai';
import * as net from 'node:net';
import { Spdk } from '../lib';
import { RpcClient } from '../lib/rpc';
import { fillPattern, uniqueSocketPath } from './helpers/env';
import {
  AdminOpc,
  buildPdu,
  connectCommand,
  crc32c,
  decodeTermReq,
  Flag,
  PduReader,
  ProtocolError,
  TermReq,
  CC,
  CmdSpecificSc,
  CSTS,
  Completion,
  Cqe,
  decodeCap,
  decodeVs,
  discover,
  DISCOVERY_NQN,
  fabricsConnect,
  FabricsSc,
  FeatureId,
  Fes,
  freePort,
  LogId,
  MediaSc,
  Nidt,
  NvmeTcpController,
  NvmeTcpQueue,
  Oncs,
  PduType,
  Property,
  propertyGetCommand,
  QueueClosedError,
  Sc,
  Sct,
  sqe,
  uuidHostNqn,
  uuidString,
} from './helpers/nvme-tcp-host';
import { findSpdkBinary, skipLine, startSpdkApp, SpdkProcess } from './helpers/spdk-install';

/**
 * NVMe/TCP at the PDU level against a target, with the project's own test host
 * (test/helpers/nvme-tcp-host.ts, written from the specifications): connection setup with and
 * without digests, Fabrics Connect and properties, Identify, log pages, features, discovery, and
 * I/O through in-capsule data, R2T/H2CData and C2HData. The same suite runs against the builtin
 * engine's target and, where it is installed, SPDK's nvmf_tgt: the differential run is what shows
 * the builtin target answers as SPDK's does. Where SPDK v25.09 departs from the specification the
 * builtin target follows the specification, and `TargetExpectations` says so per target.
 */

const KIB = 1024;
const MIB = 1024 * KIB;
const CNODE1 = 'nqn.2016-06.io.spdk:cnode1';
/** Allows only ALLOWED_HOST. */
const CNODE2 = 'nqn.2016-06.io.spdk:cnode2';
/** Starts without namespaces; the AER test adds one. */
const CNODE3 = 'nqn.2016-06.io.spdk:cnode3';
const SERIAL = 'SPDKNODE0000000001';
const MODEL = 'spdk-node protocol test';
const ALLOWED = uuidHostNqn('8f6a2b8e-7c1d-4a53-9d1e-2f0c6b1e5a77');
const NS1 = {
  bdev: 'Malloc0',
  blockSize: 512,
  numBlocks: 131072, // 64 MiB
  uuid: '3b0f3b6e-64a4-4d8e-9f0a-6f4a0c2b9d11',
  nguid: '0123456789abcdef0123456789abcdef',
  eui64: '0011223344556677',
};
const NS2 = { bdev: 'Malloc1', blockSize: 4096, numBlocks: 16384 }; // 64 MiB, identifiers left to the target
const NS3 = { bdev: 'Malloc2', blockSize: 512, numBlocks: 2048 };

/** What a target answers where targets may legitimately differ, or where SPDK departs from the specification. */
interface TargetExpectations {
  /**
   * Whether C2HData carries SUCCESS (no CapsuleResp) even when the host did not disable SQ flow
   * control at Connect. The NVMe/TCP specification allows SUCCESS only when SQ flow control is
   * disabled; SPDK v25.09 sets it whenever its c2h_success option is on (the default) and
   * ignores CATTR.
   */
  successWithSqFlowControl: boolean;
  /**
   * Status of a Compare whose data differs. The specification: Compare Failure (SCT 2h, SC 85h).
   * SPDK v25.09 completes an unfused Compare that miscompares with Internal Device Error (SCT 0,
   * SC 06h): spdk_bdev_io_get_nvme_status maps SPDK_BDEV_IO_STATUS_MISCOMPARE to it.
   */
  miscompare: { sct: number; sc: number };
}

interface Target {
  port: number;
  call(method: string, params?: unknown): Promise<unknown>;
  stop(): Promise<void>;
}

interface TargetKind {
  name: string;
  /** Why it cannot run here, or undefined. */
  unavailable(): string | undefined;
  start(): Promise<Omit<Target, 'port'>>;
  expect: TargetExpectations;
}

const nvmfTgt = findSpdkBinary('nvmf_tgt');

const TARGETS: TargetKind[] = [
  {
    name: "the builtin engine's target",
    unavailable: () => undefined,
    async start() {
      const spdk = await Spdk.start({ engine: 'builtin', cores: [0, 1] });
      return { call: (m, p) => spdk.rpc.call(m, p as never), stop: () => spdk.stop() };
    },
    expect: { successWithSqFlowControl: false, miscompare: { sct: Sct.MediaError, sc: MediaSc.CompareFailure } },
  },
  {
    name: "SPDK's nvmf_tgt",
    unavailable: () => (nvmfTgt ? undefined : skipLine('nvmf_tgt')),
    async start() {
      const app: SpdkProcess = await startSpdkApp(nvmfTgt as string, uniqueSocketPath('nvmf-tgt'));
      const client: RpcClient = app.client;
      return {
        call: (m, p) => client.call(m, p),
        stop: async () => {
          await client.close().catch(() => undefined);
          await app.stop();
        },
      };
    },
    expect: { successWithSqFlowControl: true, miscompare: { sct: Sct.Generic, sc: Sc.InternalDeviceError } },
  },
];

/** Configures the target the same way whichever it is, over SPDK's nvmf RPCs. */
async function configure(t: Target): Promise<void> {
  const listen = { trtype: 'TCP', adrfam: 'IPv4', traddr: '127.0.0.1', trsvcid: String(t.port) };
  await t.call('nvmf_create_transport', { trtype: 'TCP', max_io_size: MIB });
  for (const b of [NS1, NS2, NS3]) await t.call('bdev_malloc_create', { name: b.bdev, num_blocks: b.numBlocks, block_size: b.blockSize });
  await t.call('nvmf_create_subsystem', { nqn: CNODE1, allow_any_host: true, serial_number: SERIAL, model_number: MODEL });
  await t.call('nvmf_subsystem_add_ns', { nqn: CNODE1, namespace: { bdev_name: NS1.bdev, uuid: NS1.uuid, nguid: NS1.nguid, eui64: NS1.eui64 } });
  await t.call('nvmf_subsystem_add_ns', { nqn: CNODE1, namespace: { bdev_name: NS2.bdev } });
  await t.call('nvmf_subsystem_add_listener', { nqn: CNODE1, listen_address: listen });
  await t.call('nvmf_create_subsystem', { nqn: CNODE2, allow_any_host: false, serial_number: 'SPDKNODE0000000002', model_number: MODEL });
  await t.call('nvmf_subsystem_add_host', { nqn: CNODE2, host: ALLOWED.hostnqn });
  await t.call('nvmf_subsystem_add_listener', { nqn: CNODE2, listen_address: listen });
  await t.call('nvmf_create_subsystem', { nqn: CNODE3, allow_any_host: true, serial_number: 'SPDKNODE0000000003', model_number: MODEL });
  await t.call('nvmf_subsystem_add_listener', { nqn: CNODE3, listen_address: listen });
}

function expectStatus(c: Completion | Cqe, sct: number, sc: number, what = ''): void {
  const cqe = 'cqe' in c ? c.cqe : c;
  expect({ sct: cqe.sct, sc: cqe.sc }, `${what} status`).to.deep.equal({ sct, sc });
}

function pattern(len: number, seed: number): Buffer {
  const b = Buffer.alloc(len);
  fillPattern(b, seed);
  return b;
}

for (const kind of TARGETS) {
  describe(`NVMe/TCP protocol: ${kind.name}`, function () {
    this.timeout(60000);
    let target: Target | undefined;
    let port = 0;
    const open: Array<NvmeTcpController | NvmeTcpQueue> = [];
    const X = kind.expect;

    before(async function () {
      const why = kind.unavailable();
      if (why) {
        console.log(`      ${why}`);
        this.skip();
      }
      port = await freePort();
      const t = await kind.start();
      target = { ...t, port };
      try {
        await configure(target);
      } catch (e) {
        await target.stop();
        target = undefined;
        throw e;
      }
    });

    after(async () => {
      await target?.stop();
    });

    afterEach(async () => {
      for (const c of open.splice(0)) {
        if (c instanceof NvmeTcpQueue) c.destroy();
        else await c.close().catch(() => undefined);
      }
    });

    async function controller(o: Partial<Parameters<typeof NvmeTcpController.connect>[0]> = {}): Promise<NvmeTcpController> {
      const c = await NvmeTcpController.connect({ port, subnqn: CNODE1, ...o });
      open.push(c);
      return c;
    }

    async function queue(o: Partial<Parameters<typeof NvmeTcpQueue.connect>[0]> = {}): Promise<NvmeTcpQueue> {
      const q = await NvmeTcpQueue.connect({ port, ...o });
      open.push(q);
      return q;
    }

    // -------------------------------------------------------------------------------------------
    describe('connection setup', () => {
      it('ICReq/ICResp without digests: PFV 0, no digests, CPDA <= 31, MAXH2CDATA >= 4096 and a multiple of 4', async () => {
        const q = await queue();
        expect(q.icresp.pfv).to.equal(0);
        expect(q.icresp.hdgst).to.equal(false);
        expect(q.icresp.ddgst).to.equal(false);
        expect(q.icresp.cpda).to.be.at.most(31);
        expect(q.icresp.maxh2cdata).to.be.at.least(4096);
        expect(q.icresp.maxh2cdata % 4).to.equal(0);
      });

      for (const [hdgst, ddgst] of [
        [true, true],
        [true, false],
        [false, true],
      ]) {
        it(`ICReq/ICResp with ${[hdgst && 'header', ddgst && 'data'].filter(Boolean).join(' and ')} digest: granted, and every PDU carries exactly the digests negotiated, correct`, async () => {
          const seen: Array<{ type: number; flags: number; hdgstOk?: boolean; ddgstOk?: boolean; hasData: boolean }> = [];
          const c = await controller({ hdgst, ddgst });
          expect(c.admin.icresp).to.include({ hdgst, ddgst });
          for (const q of [c.admin, c.queue()]) q.onPdu = (p) => seen.push({ type: p.type, flags: p.flags, hdgstOk: p.hdgstOk, ddgstOk: p.ddgstOk, hasData: p.data.length > 0 });
          await c.identifyController();
          const data = pattern(4 * KIB, 1);
          await c.identifyNamespace(1);
          await c.write(1, 0, data, { inCapsule: true });
          await c.write(1, 8, data, { inCapsule: false });
          expect((await c.read(1, 0, 16)).equals(Buffer.concat([data, data]))).to.equal(true);
          expect(seen.length).to.be.greaterThan(3);
          for (const s of seen) {
            expect(s.hdgstOk, `header digest on ${s.type}`).to.equal(hdgst ? true : undefined);
            if (s.hasData) expect(s.ddgstOk, `data digest on ${s.type}`).to.equal(ddgst ? true : undefined);
          }
          expect(seen.some((s) => s.type === PduType.R2T)).to.equal(true);
        });
      }

      it('HPDA: the data of every C2HData PDU starts at the alignment the host asked for', async () => {
        for (const hpda of [1, 3, 7]) {
          const c = await controller({ hpda, hdgst: hpda === 3 });
          const pdos: number[] = [];
          c.admin.onPdu = (p) => {
            if (p.type === PduType.C2HData) pdos.push(p.pdo);
          };
          await c.identifyController();
          expect(pdos.length).to.be.greaterThan(0);
          for (const pdo of pdos) expect(pdo % ((hpda + 1) * 4), `PDO ${pdo} with HPDA ${hpda}`).to.equal(0);
          await c.close();
        }
      });

      it('a PDU split into 1-byte TCP segments is framed (ICReq, and a Connect capsule with in-capsule data in 7-byte pieces)', async () => {
        const q = await queue({ skipIc: true });
        await q.initialize({ segment: 1 });
        const { hostnqn, hostid } = uuidHostNqn();
        const { sqe: s, data } = connectCommand({ subnqn: CNODE1, hostnqn, hostid, qid: 0, sqsize: 31, cntlid: 0xffff });
        const c = await q.submit(s, { dataOut: data, inCapsule: true, segment: 7 });
        expectStatus(c, 0, 0, 'Connect');
        q.qid = 0;
        const v = await q.submit(propertyGetCommand(Property.CAP, true), { segment: 1 });
        expectStatus(v, 0, 0, 'Property Get CAP');
      });

      it('several PDUs in one TCP segment are all served', async () => {
        const c = await controller();
        const all = c.admin.batch(() => Array.from({ length: 8 }, (_, i) => c.admin.submit(sqe({ opc: AdminOpc.Identify, cdw10: i % 2 ? 1 : 2 }), { dataInLength: 4096 })));
        for (const r of await Promise.all(all)) expectStatus(r, 0, 0, 'Identify');
      });
    });

    // -------------------------------------------------------------------------------------------
    describe('Fabrics Connect', () => {
      it('admin Connect gets a dynamic controller ID, another host another one; I/O queues join it and all carry I/O', async () => {
        const a = await controller({ ioQueues: 3 });
        const b = await controller({ ioQueues: 1 });
        expect(a.cntlid).to.not.equal(0xffff);
        expect(b.cntlid).to.not.equal(0xffff);
        expect(a.cntlid).to.not.equal(b.cntlid);
        expect(a.identity!.cntlid).to.equal(a.cntlid);
        expect(b.identity!.cntlid).to.equal(b.cntlid);
        expect(a.io.map((q) => q.qid)).to.deep.equal([1, 2, 3]);
        await a.identifyNamespace(1);
        const data = pattern(4096, 2);
        await Promise.all(a.io.map((q, i) => a.write(1, 1000 + 8 * i, data, { queue: q })));
        for (let i = 0; i < 3; i++) expect((await a.read(1, 1000 + 8 * i, 8, { queue: b.queue(), blockSize: 512 })).equals(data)).to.equal(true);
      });

      async function connectRaw(o: Partial<Parameters<typeof fabricsConnect>[1]> & { qid: number }): Promise<Completion> {
        const q = await queue();
        const { hostnqn, hostid } = uuidHostNqn();
        return fabricsConnect(q, { subnqn: CNODE1, hostnqn, hostid, sqsize: 31, cntlid: 0xffff, ...o });
      }

      /** Connect's Invalid Parameter status: the offset of the bad field, in the command (IATTR 0) or its data (IATTR 1). */
      function expectInvalidParam(c: Completion, iattr: number, ipo: number): void {
        expectStatus(c, Sct.CommandSpecific, FabricsSc.InvalidParam, 'Connect');
        // As SPDK and Linux's nvmet: IPO in DW0 bits 15:0, IATTR in bits 23:16.
        expect({ ipo: c.cqe.dw0 & 0xffff, iattr: (c.cqe.dw0 >>> 16) & 0xff }, `Connect CQE DW0 0x${c.cqe.dw0.toString(16)}`).to.deep.equal({ ipo, iattr });
      }

      it('Connect to an unknown subsystem: Invalid Parameter pointing at SUBNQN (IATTR 1, IPO 256)', async () => {
        expectInvalidParam(await connectRaw({ qid: 0, subnqn: 'nqn.2016-06.io.spdk:no-such-subsystem' }), 1, 256);
      });

      it('Connect with SQSIZE 0 or SQSIZE > CAP.MQES: Invalid Parameter pointing at SQSIZE (IATTR 0, IPO 44)', async () => {
        const c = await controller({ ioQueues: 0 });
        expectInvalidParam(await connectRaw({ qid: 0, sqsize: 0 }), 0, 44);
        for (const sqsize of [0, c.cap!.mqes + 1]) {
          expectInvalidParam(await connectRaw({ qid: 1, sqsize, cntlid: c.cntlid, hostnqn: c.hostnqn, hostid: c.hostid }), 0, 44);
        }
      });

      it('I/O queue Connect naming a controller that does not exist: Invalid Parameter pointing at CNTLID (IATTR 1, IPO 16)', async () => {
        const c = await controller({ ioQueues: 0 });
        const cntlid = (c.cntlid + 100) & 0xffef;
        expectInvalidParam(await connectRaw({ qid: 1, cntlid, hostnqn: c.hostnqn, hostid: c.hostid }), 1, 16);
      });

      it('I/O queue Connect before CC.EN = 1: Invalid Parameter pointing at QID (IATTR 0, IPO 42)', async () => {
        const c = await controller({ enable: false });
        expectInvalidParam(await connectRaw({ qid: 1, cntlid: c.cntlid, hostnqn: c.hostnqn, hostid: c.hostid }), 0, 42);
      });

      it('queue pairs per controller are limited: Number of Queues grants at most max_io_qpairs_per_ctrlr; Connect of QID 128 fails with Invalid Queue Identifier, QID 127 connects', async () => {
        const c = await controller({ ioQueues: 0 });
        const granted = await c.setNumberOfQueues(1000);
        // The default max_io_qpairs_per_ctrlr: 127 I/O queues, QID 1 to 127.
        expect(granted.nsqa, 'I/O queues granted').to.equal(127);
        const beyond = await connectRaw({ qid: 128, cntlid: c.cntlid, hostnqn: c.hostnqn, hostid: c.hostid });
        expectStatus(beyond, Sct.CommandSpecific, CmdSpecificSc.InvalidQueueIdentifier, 'Connect of QID 128');
        const q = await c.connectIoQueue({ qid: 127 });
        expect(q.qid).to.equal(127);
      });

      it('Connect with RECFMT 1: Incompatible Format', async () => {
        expectStatus(await connectRaw({ qid: 0, recfmt: 1 }), Sct.CommandSpecific, FabricsSc.IncompatibleFormat, 'Connect');
      });

      it('a host NQN the subsystem does not allow: Connect Invalid Host (SCT 1, SC 84h); the allowed host connects', async () => {
        const q = await queue();
        const { hostnqn, hostid } = uuidHostNqn();
        const c = await fabricsConnect(q, { subnqn: CNODE2, hostnqn, hostid, qid: 0, sqsize: 31, cntlid: 0xffff });
        expectStatus(c, Sct.CommandSpecific, FabricsSc.InvalidHost, 'Connect');
        const ok = await controller({ subnqn: CNODE2, hostnqn: ALLOWED.hostnqn, hostid: ALLOWED.hostid, ioQueues: 1 });
        expect(ok.identity!.subnqn).to.equal(CNODE2);
      });
    });

    // -------------------------------------------------------------------------------------------
    describe('properties', () => {
      it('CAP, VS, CC and CSTS through enable (CC.EN -> CSTS.RDY) and shutdown (CC.SHN -> CSTS.SHST complete)', async () => {
        const c = await controller({ enable: false });
        const cap = decodeCap(await c.propertyGet(Property.CAP, true));
        expect(cap.mqes).to.be.at.least(1);
        expect(cap.cqr, 'CAP.CQR (fabrics)').to.equal(true);
        expect(cap.to).to.be.at.least(1);
        expect(cap.css & 1, 'CAP.CSS NVM command set').to.equal(1);
        const vs = decodeVs(Number(await c.propertyGet(Property.VS)));
        expect(vs.major).to.equal(1);
        expect(vs.minor).to.be.at.least(3);
        expect(Number(await c.propertyGet(Property.CC))).to.equal(0);
        expect(Number(await c.propertyGet(Property.CSTS)) & CSTS.RDY).to.equal(0);
        await c.enable();
        const cc = Number(await c.propertyGet(Property.CC));
        expect(cc).to.equal((CC.EN | CC.IOSQES_64 | CC.IOCQES_16) >>> 0);
        expect(Number(await c.propertyGet(Property.CSTS))).to.equal(CSTS.RDY);
        const id = await c.identifyController();
        expect(id.ver).to.equal(Number(await c.propertyGet(Property.VS)));
        await c.shutdown();
        expect(Number(await c.propertyGet(Property.CC)) & CC.SHN_MASK).to.equal(CC.SHN_NORMAL);
        expect(Number(await c.propertyGet(Property.CSTS)) & CSTS.SHST_MASK).to.equal(CSTS.SHST_COMPLETE);
      });
    });

    // -------------------------------------------------------------------------------------------
    describe('admin commands', () => {
      it('Identify Controller: serial and model number as configured, subsystem NQN, controller ID, capsule sizes, SGLs', async () => {
        const c = await controller();
        const id = c.identity!;
        expect(id.sn).to.equal(SERIAL);
        expect(id.mn).to.equal(MODEL);
        expect(id.subnqn).to.equal(CNODE1);
        expect(id.cntlid).to.equal(c.cntlid);
        expect(id.cntrltype, 'CNTRLTYPE I/O controller').to.equal(1);
        expect(id.fr).to.not.equal('');
        expect(id.nn).to.be.at.least(2);
        expect(id.sqes).to.equal(0x66);
        expect(id.cqes).to.equal(0x44);
        expect(id.maxcmd).to.be.at.least(1);
        expect(id.sgls & 3, 'SGLS: SGLs supported').to.not.equal(0);
        expect(id.sgls & (1 << 20), 'SGLS: offset addressing (in-capsule data)').to.not.equal(0);
        expect(id.ioccsz, 'IOCCSZ: a 64-byte SQE plus 4 KiB of in-capsule data at least').to.be.at.least((64 + 4096) / 16);
        expect(id.iorcsz).to.equal(1);
        expect(id.icdoff).to.equal(0);
        const mps = 2 ** (12 + c.cap!.mpsmin);
        expect(id.mdts === 0 || mps * 2 ** id.mdts >= MIB, `MDTS ${id.mdts} allows the transport's 1 MiB max_io_size`).to.equal(true);
        for (const bit of [Oncs.Compare, Oncs.DatasetManagement, Oncs.WriteZeroes]) expect(id.oncs & bit, `ONCS bit ${bit}`).to.not.equal(0);
        expect(id.kas).to.be.greaterThan(0);
      });

      it('Identify Namespace: size, block size and identifiers as added (NGUID, EUI64; the bdev UUID and NGUID = UUID when not given)', async () => {
        const c = await controller();
        const ns1 = await c.identifyNamespace(1);
        expect(ns1.nsze).to.equal(BigInt(NS1.numBlocks));
        expect(ns1.ncap).to.equal(BigInt(NS1.numBlocks));
        expect(ns1.blockSize).to.equal(NS1.blockSize);
        expect(ns1.currentLbaf.ms).to.equal(0);
        expect(ns1.nguid.toString('hex')).to.equal(NS1.nguid);
        expect(ns1.eui64.toString('hex')).to.equal(NS1.eui64);
        const ns2 = await c.identifyNamespace(2);
        expect(ns2.nsze).to.equal(BigInt(NS2.numBlocks));
        expect(ns2.blockSize).to.equal(NS2.blockSize);
        const bdev = ((await target!.call('bdev_get_bdevs', { name: NS2.bdev })) as Array<{ uuid: string }>)[0];
        expect(uuidString(ns2.nguid)).to.equal(bdev.uuid);
        expect(ns2.eui64.toString('hex')).to.equal('0000000000000000');
      });

      it('Namespace Identification Descriptors: UUID, NGUID and EUI64 as added', async () => {
        const c = await controller();
        const d1 = await c.nsIdDescriptors(1);
        const by = (d: typeof d1, t: number): string | undefined => d.find((x) => x.nidt === t)?.nid.toString('hex');
        expect(by(d1, Nidt.UUID)).to.equal(NS1.uuid.replace(/-/g, ''));
        expect(by(d1, Nidt.NGUID)).to.equal(NS1.nguid);
        expect(by(d1, Nidt.EUI64)).to.equal(NS1.eui64);
        const d2 = await c.nsIdDescriptors(2);
        const bdev = ((await target!.call('bdev_get_bdevs', { name: NS2.bdev })) as Array<{ uuid: string }>)[0];
        expect(by(d2, Nidt.UUID)).to.equal(bdev.uuid.replace(/-/g, ''));
        expect(by(d2, Nidt.EUI64), 'no EUI64 descriptor when none was given').to.equal(undefined);
        for (const d of [...d1, ...d2]) expect(d.nid.length).to.equal({ 1: 8, 2: 16, 3: 16, 4: 1 }[d.nidt]);
      });

      it('Active Namespace ID list, from the start and after an NSID', async () => {
        const c = await controller();
        expect(await c.activeNamespaces()).to.deep.equal([1, 2]);
        expect(await c.activeNamespaces(1)).to.deep.equal([2]);
        expect(await c.activeNamespaces(2)).to.deep.equal([]);
      });

      it('Identify Namespace of an inactive NSID <= NN returns zeroes; of an NSID > NN, Invalid Namespace or Format', async () => {
        const c = await controller();
        const nn = c.identity!.nn;
        const inactive = await c.exec(c.admin, sqe({ opc: AdminOpc.Identify, nsid: 3, cdw10: 0 }), { dataInLength: 4096 });
        expectStatus(inactive, 0, 0, 'Identify NSID 3');
        expect(inactive.data!.every((x) => x === 0)).to.equal(true);
        const beyond = await c.exec(c.admin, sqe({ opc: AdminOpc.Identify, nsid: nn + 1, cdw10: 0 }), { dataInLength: 4096 });
        expectStatus(beyond, Sct.Generic, Sc.InvalidNamespaceOrFormat, `Identify NSID ${nn + 1}`);
      });

      it('Features: Number of Queues, Keep Alive Timer (from Connect KATO, then Set), Async Event Configuration; Keep Alive', async () => {
        const c = await controller({ kato: 30000, ioQueues: 0 });
        const nq = await c.getFeatures(FeatureId.NumberOfQueues);
        expect((nq & 0xffff) + 1, 'NSQA').to.be.at.least(2);
        expect((nq >>> 16) + 1, 'NCQA').to.be.at.least(2);
        const set = await c.setNumberOfQueues(2);
        expect(set.nsqa).to.be.at.least(2);
        expect(set.ncqa).to.be.at.least(2);
        expect(await c.getFeatures(FeatureId.KeepAliveTimer)).to.equal(30000);
        await c.setFeatures(FeatureId.KeepAliveTimer, 60000);
        expect(await c.getFeatures(FeatureId.KeepAliveTimer)).to.equal(60000);
        await c.keepAlive();
        await c.setFeatures(FeatureId.AsyncEventConfig, 1 << 8);
        expect((await c.getFeatures(FeatureId.AsyncEventConfig)) & (1 << 8)).to.equal(1 << 8);
        // Number of Queues may be set only before I/O queues exist.
        await c.connectIoQueue();
        const late = await c.exec(c.admin, sqe({ opc: AdminOpc.SetFeatures, cdw10: FeatureId.NumberOfQueues, cdw11: 0x00010001 }));
        expectStatus(late, Sct.Generic, Sc.CommandSequenceError, 'Set Features Number of Queues after I/O queues');
      });

      it('Get Log Page: SMART / health (512 bytes), error information entries', async () => {
        const c = await controller();
        const smart = await c.getLogPage(LogId.Smart, 512, { nsid: 0xffffffff });
        expect(smart.length).to.equal(512);
        const decoded = await c.smartLog();
        expect(decoded.criticalWarning).to.equal(0);
        const errs = await c.errorLog(4);
        expect(errs).to.have.length(4);
      });

      it('Asynchronous Event Request completes with a Namespace Attribute Changed notice when a namespace is added; the Changed Namespace List names it', async () => {
        const c = await controller({ subnqn: CNODE3, ioQueues: 0 });
        expect(await c.activeNamespaces()).to.deep.equal([]);
        await c.setFeatures(FeatureId.AsyncEventConfig, 1 << 8);
        const aer = c.asyncEventRequest();
        await new Promise((r) => setTimeout(r, 100));
        const nsid = (await target!.call('nvmf_subsystem_add_ns', { nqn: CNODE3, namespace: { bdev_name: NS3.bdev } })) as number;
        const ev = await Promise.race([aer, new Promise<never>((_, rej) => setTimeout(() => rej(new Error('no AER completion within 5 s')), 5000))]);
        expectStatus(ev, 0, 0, 'AER');
        expect({ type: ev.cqe.dw0 & 7, info: (ev.cqe.dw0 >> 8) & 0xff, logPage: (ev.cqe.dw0 >> 16) & 0xff }).to.deep.equal({ type: 2, info: 0, logPage: LogId.ChangedNsList });
        expect(await c.changedNsList()).to.deep.equal([nsid]);
        expect(await c.activeNamespaces()).to.deep.equal([nsid]);
      });

      it('an admin opcode the controller does not implement: Invalid Command Opcode', async () => {
        const c = await controller();
        expectStatus(await c.exec(c.admin, sqe({ opc: 0x3f })), Sct.Generic, Sc.InvalidOpcode, 'admin opcode 3Fh');
      });
    });

    // -------------------------------------------------------------------------------------------
    describe('discovery', () => {
      it('the discovery controller (CNTRLTYPE 2, no namespaces) lists the subsystem listener: TCP, IPv4, 127.0.0.1, the port', async () => {
        const { log, ctrl } = await discover({ port });
        open.push(ctrl);
        const id = await ctrl.identifyController();
        expect(id.subnqn).to.equal(DISCOVERY_NQN);
        expect(id.cntrltype).to.equal(2);
        expect(id.nn).to.equal(0);
        expect(log.recfmt).to.equal(0);
        expect(Number(log.numrec)).to.equal(log.entries.length);
        const e = log.entries.find((x) => x.subnqn === CNODE1);
        expect(e, `an entry for ${CNODE1} in ${JSON.stringify(log.entries.map((x) => x.subnqn))}`).to.not.equal(undefined);
        expect(e).to.deep.include({ trtype: 3, adrfam: 1, subtype: 2, traddr: '127.0.0.1', trsvcid: String(port), cntlid: 0xffff, sectype: 0 });
        expect(e!.asqsz).to.be.at.least(32);
        expect(e!.treq & 3, 'TREQ secure channel: not required').to.equal(2);
      });

      it('a subsystem that does not allow a host is left out of that host\'s discovery log, and listed for its allowed host', async () => {
        const other = await discover({ port });
        open.push(other.ctrl);
        expect(other.log.entries.map((e) => e.subnqn)).to.not.include(CNODE2);
        const allowed = await discover({ port, hostnqn: ALLOWED.hostnqn, hostid: ALLOWED.hostid });
        open.push(allowed.ctrl);
        expect(allowed.log.entries.map((e) => e.subnqn)).to.include(CNODE2);
      });
    });

    // -------------------------------------------------------------------------------------------
    describe('I/O commands', () => {
      // Each case writes and reads its own LBA range on namespace 1 (512-byte blocks).
      const sizes = [512, 4 * KIB, 128 * KIB, MIB];
      const modes: Array<{ name: string; hdgst?: boolean; ddgst?: boolean; h2cChunk?: number }> = [
        { name: 'no digests' },
        { name: 'header and data digests', hdgst: true, ddgst: true },
        { name: 'H2CData in 32 KiB PDUs', h2cChunk: 32 * KIB },
      ];
      let region = 0;
      for (const m of modes) {
        it(`write/read round trips at 512 B, 4 KiB (in-capsule), 128 KiB and 1 MiB (R2T, H2CData, C2HData), ${m.name}`, async () => {
          const c = await controller({ hdgst: m.hdgst, ddgst: m.ddgst, h2cChunk: m.h2cChunk });
          await c.identifyNamespace(1);
          const icd = c.queue().inCapsuleMax;
          expect(icd).to.be.at.least(4096);
          const maxH2c = Math.min(c.queue().icresp.maxh2cdata, m.h2cChunk ?? Infinity);
          for (const size of sizes) {
            const slba = 4096 + region++ * (MIB / 512 + 64);
            const data = pattern(size, size + region);
            const w = await c.write(1, slba, data);
            if (size <= 4096) {
              expect(w.inCapsule, `${size} B in the capsule`).to.equal(true);
              expect(w.r2ts).to.equal(0);
            } else {
              expect(w.inCapsule, `${size} B through R2T`).to.equal(false);
              expect(w.r2ts).to.be.at.least(1);
              expect(w.h2cPdus, `H2CData PDUs for ${size} B with MAXH2CDATA ${maxH2c}`).to.be.at.least(Math.ceil(size / maxH2c));
            }
            const r = await c.readCmd(1, slba, size / 512);
            expectStatus(r, 0, 0, `read ${size}`);
            expect(r.c2hPdus).to.be.at.least(1);
            expect(r.data!.equals(data), `${size} B read back`).to.equal(true);
            // Across the boundary of what was written: the block after is untouched (zero).
            expect((await c.read(1, slba + size / 512, 1)).every((x) => x === 0)).to.equal(true);
          }
          expect(c.queue().stats.maxH2cDatal).to.be.at.most(maxH2c);
        });
      }

      it('namespace 2 with 4 KiB blocks: 4 KiB in-capsule and 1 MiB through R2T round trips', async () => {
        const c = await controller();
        await c.identifyNamespace(2);
        for (const [slba, size] of [
          [10, 4 * KIB],
          [100, MIB],
        ]) {
          const data = pattern(size, slba);
          await c.write(2, slba, data);
          expect((await c.read(2, slba, size / 4096)).equals(data)).to.equal(true);
        }
      });

      it('many commands outstanding on three I/O queues at once', async () => {
        const c = await controller({ ioQueues: 3, ioQueueSize: 32 });
        await c.identifyNamespace(1);
        const base = 60000;
        const writes: Array<Promise<Completion>> = [];
        const datas: Buffer[] = [];
        for (let i = 0; i < 96; i++) {
          const d = pattern(i % 3 === 0 ? 16 * KIB : 4 * KIB, 1000 + i);
          datas.push(d);
          writes.push(c.write(1, base + i * 32, d, { queue: c.io[i % 3] }));
        }
        await Promise.all(writes);
        const reads = datas.map((d, i) => c.read(1, base + i * 32, d.length / 512, { queue: c.io[(i + 1) % 3] }));
        const got = await Promise.all(reads);
        got.forEach((g, i) => expect(g.equals(datas[i]), `command ${i}`).to.equal(true));
      });

      it('Write Zeroes zeroes exactly its blocks', async () => {
        const c = await controller();
        await c.identifyNamespace(1);
        const slba = 90000;
        const data = pattern(16 * 512, 7);
        await c.write(1, slba, data);
        expectStatus(await c.writeZeroesCmd(1, slba + 4, 8), 0, 0, 'Write Zeroes');
        const back = await c.read(1, slba, 16);
        expect(back.subarray(0, 4 * 512).equals(data.subarray(0, 4 * 512))).to.equal(true);
        expect(back.subarray(4 * 512, 12 * 512).every((x) => x === 0)).to.equal(true);
        expect(back.subarray(12 * 512).equals(data.subarray(12 * 512))).to.equal(true);
      });

      it('Dataset Management deallocate succeeds; blocks outside the ranges keep their data', async () => {
        const c = await controller();
        const ns = await c.identifyNamespace(1);
        const slba = 91000;
        const data = pattern(32 * 512, 8);
        await c.write(1, slba, data);
        expectStatus(await c.deallocateCmd(1, [{ slba: slba + 8, nlb: 8 }, { slba: slba + 24, nlb: 4 }]), 0, 0, 'DSM deallocate');
        const back = await c.read(1, slba, 32);
        expect(back.subarray(0, 8 * 512).equals(data.subarray(0, 8 * 512))).to.equal(true);
        expect(back.subarray(16 * 512, 24 * 512).equals(data.subarray(16 * 512, 24 * 512))).to.equal(true);
        expect(back.subarray(28 * 512).equals(data.subarray(28 * 512))).to.equal(true);
        // DLFEAT bits 2:0 = 001b: deallocated blocks read as zeroes.
        if ((ns.dlfeat & 7) === 1) expect(back.subarray(8 * 512, 16 * 512).every((x) => x === 0)).to.equal(true);
      });

      it('Flush succeeds', async () => {
        const c = await controller();
        expectStatus(await c.flushCmd(1), 0, 0, 'Flush');
      });

      it(`Compare: success when the blocks match; ${X.miscompare.sct === Sct.MediaError ? 'Compare Failure (SCT 2h, SC 85h)' : `SCT ${X.miscompare.sct} SC ${X.miscompare.sc.toString(16)}h (SPDK's status, not the specification's)`} when they differ`, async () => {
        const c = await controller();
        await c.identifyNamespace(1);
        const slba = 92000;
        const data = pattern(4096, 9);
        await c.write(1, slba, data);
        expectStatus(await c.compareCmd(1, slba, data), 0, 0, 'Compare (same)');
        const big = pattern(128 * KIB, 10);
        await c.write(1, slba + 16, big);
        expectStatus(await c.compareCmd(1, slba + 16, big), 0, 0, 'Compare 128 KiB (same)');
        const diff = Buffer.from(data);
        diff[4000] ^= 0x40;
        expectStatus(await c.compareCmd(1, slba, diff), X.miscompare.sct, X.miscompare.sc, 'Compare (different)');
      });

      it('LBA out of range: Read at NSZE, Write across the end (in-capsule and through R2T)', async () => {
        const c = await controller();
        const ns = await c.identifyNamespace(1);
        expectStatus(await c.readCmd(1, ns.nsze, 1), Sct.Generic, Sc.LbaOutOfRange, 'Read at NSZE');
        expectStatus(await c.readCmd(1, ns.nsze - 1n, 2), Sct.Generic, Sc.LbaOutOfRange, 'Read across the end');
        expectStatus(await c.writeCmd(1, ns.nsze - 1n, Buffer.alloc(1024)), Sct.Generic, Sc.LbaOutOfRange, 'Write across the end');
        expectStatus(await c.writeCmd(1, ns.nsze - 8n, Buffer.alloc(128 * KIB)), Sct.Generic, Sc.LbaOutOfRange, 'Write 128 KiB across the end');
        // The queue still works.
        expect((await c.read(1, 0, 1)).length).to.equal(512);
      });

      it('a namespace that does not exist (NSID 0, NSID 99): Invalid Namespace or Format, DNR', async () => {
        const c = await controller();
        for (const nsid of [0, 99]) {
          const r = await c.readCmd(nsid, 0, 1, { blockSize: 512 });
          expectStatus(r, Sct.Generic, Sc.InvalidNamespaceOrFormat, `Read NSID ${nsid}`);
          expect(r.cqe.dnr).to.equal(true);
        }
      });

      it('an I/O opcode the controller does not implement: Invalid Command Opcode, DNR', async () => {
        const c = await controller();
        const r = await c.exec(c.queue(), sqe({ opc: 0x7e, nsid: 1 }));
        expectStatus(r, Sct.Generic, Sc.InvalidOpcode, 'I/O opcode 7Eh');
        expect(r.cqe.dnr).to.equal(true);
      });

      it('a Write whose NLB needs more data than its SGL describes: Data SGL Length Invalid', async () => {
        const c = await controller();
        await c.identifyNamespace(1);
        expectStatus(await c.writeCmd(1, 0, Buffer.alloc(512), { nlb: 2 }), Sct.Generic, Sc.DataSglLengthInvalid, 'Write NLB 2 with 512 bytes');
      });

      it(`C2HData SUCCESS (no CapsuleResp) ${X.successWithSqFlowControl ? 'whether or not the host disabled SQ flow control (SPDK)' : 'only when the host disabled SQ flow control at Connect'}`, async () => {
        for (const disable of [false, true]) {
          const c = await controller({ disableSqFlowControl: disable });
          const ns = await c.identifyNamespace(1);
          expect(ns.blockSize).to.equal(512);
          const resps = c.queue().stats.capsuleResps;
          const r = await c.readCmd(1, 0, 8);
          expectStatus(r, 0, 0, 'Read');
          if (!disable && !X.successWithSqFlowControl) expect(r.viaSuccess, 'SUCCESS with SQ flow control on').to.equal(false);
          // After SUCCESS no CapsuleResp follows (one would be reported as a protocol violation for an unknown CID).
          await c.flushCmd(1);
          expect(c.queue().stats.capsuleResps - resps, 'CapsuleResps for the read and the flush').to.equal(r.viaSuccess ? 1 : 2);
          await c.close();
        }
      });
    });

    // -------------------------------------------------------------------------------------------
    describe('transport errors', () => {
      it('a data digest error fails only its command (Transient Transport Error) and the connection goes on', async () => {
        const c = await controller({ hdgst: true, ddgst: true });
        await c.identifyNamespace(1);
        const data = pattern(4096, 11);
        expectStatus(await c.writeCmd(1, 95000, data, { capsuleFaults: { corruptDataDigest: true } }), Sct.Generic, Sc.TransientTransportError, 'in-capsule write with a bad data digest');
        expectStatus(await c.writeCmd(1, 95000, pattern(128 * KIB, 12), { h2cFaults: { corruptDataDigest: true } }), Sct.Generic, Sc.TransientTransportError, 'H2CData with a bad data digest');
        await c.write(1, 95000, data);
        expect((await c.read(1, 95000, 8)).equals(data)).to.equal(true);
      });

      it('a header digest error ends the connection with C2HTermReq FES Header Digest Error', async () => {
        const c = await controller({ hdgst: true, ioQueues: 1 });
        const err = await c
          .exec(c.queue(), sqe({ opc: 0x00, nsid: 1 }), { capsuleFaults: { corruptHeaderDigest: true }, timeoutMs: 5000 })
          .then(
            () => undefined,
            (e: unknown) => e,
          );
        expect(err).to.be.instanceOf(QueueClosedError);
        expect(c.queue().termReq, 'a C2HTermReq').to.not.equal(undefined);
        expect(c.queue().termReq!.fes).to.equal(Fes.HeaderDigestError);
        await c.queue().whenClosed();
      });

      /** Runs `fault` on a fresh controller's I/O queue; it must end that connection with a C2HTermReq. */
      async function fatal(fault: (c: NvmeTcpController) => Promise<unknown>): Promise<TermReq> {
        const c = await controller({ ioQueues: 1 });
        await c.identifyNamespace(1);
        const err = await fault(c).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err, 'the command fails with the connection').to.be.instanceOf(QueueClosedError);
        expect(c.queue().termReq, 'a C2HTermReq').to.not.equal(undefined);
        await c.queue().whenClosed();
        return c.queue().termReq!;
      }

      it('framing and sequence errors each end only their own connection with a C2HTermReq (FES, and FEI for Invalid Header Field); a witness keeps its I/O', async () => {
        const witness = await controller({ ioQueues: 1 });
        await witness.identifyNamespace(1);
        const check = async (round: number): Promise<void> => {
          const d = pattern(8192, 100 + round);
          await witness.write(1, 96000 + round * 16, d, { inCapsule: false });
          expect((await witness.read(1, 96000 + round * 16, 16)).equals(d), `witness data after fault ${round}`).to.equal(true);
        };
        // An unknown PDU type.
        let t = await fatal(async (c) => {
          const pending = c.exec(c.queue(), sqe({ opc: 0x00, nsid: 1 }), { timeoutMs: 5000 });
          const bad = Buffer.alloc(8);
          bad[0] = 0x0f;
          bad[2] = 8;
          bad.writeUInt32LE(8, 4);
          await c.queue().sendRaw(bad);
          return pending.then(() => c.exec(c.queue(), sqe({ opc: 0x00, nsid: 1 }), { timeoutMs: 5000 }));
        });
        expect({ fes: t.fes, fei: t.fei }, 'unknown PDU type').to.deep.equal({ fes: Fes.InvalidHeaderField, fei: 0 });
        await check(1);
        // H2CData naming a transfer tag that no R2T gave.
        t = await fatal((c) => c.writeCmd(1, 96500, pattern(64 * KIB, 3), { inCapsule: false, timeoutMs: 5000, h2cFaults: { editHeader: (h) => h.writeUInt16LE(h.readUInt16LE(10) + 1, 10) } }));
        expect({ fes: t.fes, fei: t.fei }, 'H2CData with a wrong TTAG').to.deep.equal({ fes: Fes.InvalidHeaderField, fei: 10 });
        await check(2);
        // H2CData at an offset the R2T did not ask for.
        t = await fatal((c) => c.writeCmd(1, 96500, pattern(64 * KIB, 4), { inCapsule: false, timeoutMs: 5000, h2cFaults: { editHeader: (h) => h.writeUInt32LE(h.readUInt32LE(12) + 512, 12) } }));
        expect(t.fes, 'H2CData outside the R2T window').to.equal(Fes.DataTransferOutOfRange);
        await check(3);
      });

      it('an H2CTermReq from the host ends that connection (the target sends nothing more); a witness keeps its I/O', async () => {
        const witness = await controller({ ioQueues: 1 });
        await witness.identifyNamespace(1);
        const c = await controller({ ioQueues: 1 });
        const after: Buffer[] = [];
        c.queue().captureRaw((chunk) => after.push(chunk));
        await c.queue().terminate(Fes.InvalidHeaderField, 0, Buffer.alloc(24, 0x42));
        await c.queue().whenClosed();
        expect(Buffer.concat(after).length, 'bytes from the target after the H2CTermReq').to.equal(0);
        const d = pattern(4096, 77);
        await witness.write(1, 97000, d);
        expect((await witness.read(1, 97000, 8)).equals(d)).to.equal(true);
      });
    });
  });
}

// ---------------------------------------------------------------------------------------------
// The test host itself, against byte-level expectations and a scripted fake controller (no target).

describe('NVMe/TCP test host (self-check, no target)', () => {
  it('CRC32C: the specification check values, and incremental = one shot', () => {
    expect(crc32c(Buffer.from('123456789'))).to.equal(0xe3069283);
    expect(crc32c(Buffer.alloc(32))).to.equal(0x8a9136aa);
    expect(crc32c(Buffer.alloc(32, 0xff))).to.equal(0x62a8ab43);
    const inc = Buffer.from(Array.from({ length: 32 }, (_, i) => i));
    expect(crc32c(inc)).to.equal(0x46dd794e);
    const big = pattern(100003, 5);
    expect(crc32c(big.subarray(0, 7), big.subarray(7, 5001), big.subarray(5001))).to.equal(crc32c(big));
  });

  function c2hData(cccid: number, datao: number, data: Buffer, d: { hdgst: boolean; ddgst: boolean; cpda: number }, flags = 0): Buffer {
    const h = Buffer.alloc(24);
    h[0] = PduType.C2HData;
    h.writeUInt16LE(cccid, 8);
    h.writeUInt32LE(datao, 12);
    h.writeUInt32LE(data.length, 16);
    return Buffer.concat(buildPdu(h, data, d, flags));
  }

  it('PduReader frames PDUs however the stream is cut, and checks both digests', () => {
    const d = { hdgst: true, ddgst: true, cpda: 3 };
    const a = pattern(1000, 1);
    const b = pattern(3, 2);
    const stream = Buffer.concat([c2hData(1, 0, a, d), c2hData(1, 1000, b, d, Flag.LAST_PDU)]);
    for (const cut of [1, 2, 7, 23, 24, 27, 100, stream.length]) {
      const r = new PduReader(() => d);
      const got: Buffer[] = [];
      for (let o = 0; o < stream.length; o += cut) {
        r.feed(stream.subarray(o, o + cut));
        for (let p = r.next(); p; p = r.next()) {
          expect(p.hdgstOk).to.equal(true);
          expect(p.ddgstOk).to.equal(true);
          expect(p.pdo % 16).to.equal(0);
          got.push(p.data);
        }
      }
      expect(Buffer.concat(got).equals(Buffer.concat([a, b])), `cut ${cut}`).to.equal(true);
    }
    const bad = Buffer.from(stream);
    bad[24] ^= 1; // the first PDU's header digest
    const r = new PduReader(() => d);
    r.feed(bad);
    expect(() => r.next()).to.throw(ProtocolError).with.property('fes', Fes.HeaderDigestError);
    const badData = Buffer.from(stream);
    badData[c2hData(1, 0, a, d).length - 1] ^= 1; // the first PDU's data digest
    const r2 = new PduReader(() => d);
    r2.feed(badData);
    expect(r2.next()!.ddgstOk).to.equal(false);
  });

  /**
   * A scripted controller: ICResp with CPDA 1 and MAXH2CDATA 4096; a Write (opc 01h) is solicited
   * with two R2Ts, one after the other; a Read (opc 02h) answers with three C2HData PDUs, the last
   * with SUCCESS for NSID 1, or followed by a CapsuleResp for NSID 2, or with a DATAO gap for NSID 3.
   */
  async function fakeController(): Promise<{ port: number; h2c: Array<{ datao: number; datal: number; flags: number; pdo: number }>; termReqs: TermReq[]; close: () => Promise<void> }> {
    const h2c: Array<{ datao: number; datal: number; flags: number; pdo: number }> = [];
    const termReqs: TermReq[] = [];
    const sockets = new Set<net.Socket>();
    const server = net.createServer((s) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      const d = { hdgst: false, ddgst: false, cpda: 1 };
      const reader = new PduReader(() => d);
      const send = (bufs: Buffer[]): void => {
        // Dribble the bytes out in small writes so the host sees cut PDUs.
        const all = Buffer.concat(bufs);
        for (let o = 0; o < all.length; o += 5) s.write(all.subarray(o, o + 5));
      };
      const resp = (cid: number, dw0 = 0): void => {
        const h = Buffer.alloc(24);
        h[0] = PduType.CapsuleResp;
        h.writeUInt32LE(dw0, 8);
        h.writeUInt16LE(cid, 20);
        send(buildPdu(h, undefined, d));
      };
      let write: { cid: number; len: number; got: number; next: number } | undefined;
      const r2t = (cid: number, ttag: number, off: number, len: number): void => {
        const h = Buffer.alloc(24);
        h[0] = PduType.R2T;
        h.writeUInt16LE(cid, 8);
        h.writeUInt16LE(ttag, 10);
        h.writeUInt32LE(off, 12);
        h.writeUInt32LE(len, 16);
        send(buildPdu(h, undefined, d));
      };
      s.on('data', (chunk: Buffer) => {
        reader.feed(chunk);
        for (let p = reader.next(); p; p = reader.next()) {
          if (p.type === PduType.ICReq) {
            const ic = Buffer.alloc(128);
            ic[0] = PduType.ICResp;
            ic[10] = 1;
            ic[11] = p.header[11] & 3;
            ic.writeUInt32LE(4096, 12);
            send(buildPdu(ic, undefined, d));
            d.hdgst = (p.header[11] & 1) !== 0;
            d.ddgst = (p.header[11] & 2) !== 0;
          } else if (p.type === PduType.H2CTermReq) {
            termReqs.push(decodeTermReq(p));
          } else if (p.type === PduType.H2CData) {
            h2c.push({ datao: p.header.readUInt32LE(12), datal: p.header.readUInt32LE(16), flags: p.flags, pdo: p.pdo });
            if (p.ddgstOk === false) throw new Error('fake controller: bad data digest from the host');
            write!.got += p.data.length;
            if (p.flags & Flag.LAST_PDU) {
              if (write!.next < write!.len) {
                r2t(write!.cid, 2, write!.next, write!.len - write!.next);
                write!.next = write!.len;
              } else if (write!.got === write!.len) {
                resp(write!.cid, 0xcafe);
              }
            }
          } else if (p.type === PduType.CapsuleCmd) {
            const cid = p.header.readUInt16LE(10);
            const opc = p.header[8];
            const nsid = p.header.readUInt32LE(12);
            const len = p.header.readUInt32LE(8 + 32);
            if (opc === 0x01) {
              write = { cid, len, got: 0, next: len / 2 };
              r2t(cid, 1, 0, len / 2);
            } else if (opc === 0x02) {
              const data = Buffer.alloc(len, 0x5a);
              const third = Math.floor(len / 3);
              const parts = [data.subarray(0, third), data.subarray(third, 2 * third), data.subarray(2 * third)];
              let off = 0;
              parts.forEach((part, i) => {
                const last = i === 2;
                const flags = last ? Flag.LAST_PDU | (nsid === 1 ? Flag.SUCCESS : 0) : 0;
                send([c2hData(cid, nsid === 3 && i === 1 ? off + 1 : off, part, d, flags)]);
                off += part.length;
              });
              if (nsid === 2) resp(cid);
            }
          }
        }
      });
      s.on('error', () => undefined);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    return {
      port: (server.address() as net.AddressInfo).port,
      h2c,
      termReqs,
      close: async () => {
        for (const s of sockets) s.destroy();
        await new Promise<void>((r) => server.close(() => r()));
      },
    };
  }

  for (const digests of [false, true]) {
    it(`against a scripted controller${digests ? ' with digests' : ''}: H2CData within MAXH2CDATA and CPDA-aligned with LAST_PDU per R2T; C2HData reassembled with SUCCESS or CapsuleResp; a DATAO gap ends the connection with H2CTermReq`, async () => {
      const fake = await fakeController();
      try {
        const q = await NvmeTcpQueue.connect({ port: fake.port, hdgst: digests, ddgst: digests });
        expect(q.icresp).to.deep.include({ cpda: 1, maxh2cdata: 4096, hdgst: digests, ddgst: digests });
        const data = pattern(20000, 3);
        const w = await q.submit(sqe({ opc: 0x01, nsid: 1 }), { dataOut: data });
        expect(w.inCapsule).to.equal(false);
        expect(w.cqe.dw0).to.equal(0xcafe);
        expect(w.r2ts).to.equal(2);
        // 10000 bytes per R2T: 4096 + 4096 + 1808 each, LAST_PDU on the third.
        expect(fake.h2c.map((x) => [x.datao, x.datal, x.flags & Flag.LAST_PDU])).to.deep.equal([
          [0, 4096, 0],
          [4096, 4096, 0],
          [8192, 1808, Flag.LAST_PDU],
          [10000, 4096, 0],
          [14096, 4096, 0],
          [18192, 1808, Flag.LAST_PDU],
        ]);
        for (const x of fake.h2c) expect(x.pdo % 8, `H2CData PDO ${x.pdo} with CPDA 1`).to.equal(0);
        const viaSuccess = await q.submit(sqe({ opc: 0x02, nsid: 1 }), { dataInLength: 10001 });
        expect(viaSuccess.viaSuccess).to.equal(true);
        expect(viaSuccess.c2hPdus).to.equal(3);
        expect(viaSuccess.data!.every((x) => x === 0x5a)).to.equal(true);
        const viaResp = await q.submit(sqe({ opc: 0x02, nsid: 2 }), { dataInLength: 999 });
        expect(viaResp.viaSuccess).to.equal(false);
        expect(viaResp.data!.every((x) => x === 0x5a)).to.equal(true);
        const gap = await q.submit(sqe({ opc: 0x02, nsid: 3 }), { dataInLength: 999 }).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(gap).to.be.instanceOf(QueueClosedError);
        expect(q.violation).to.match(/DATAO/);
        await new Promise((r) => setTimeout(r, 100));
        expect(fake.termReqs.map((t) => t.fes)).to.deep.equal([Fes.DataTransferOutOfRange]);
        expect(fake.termReqs[0].data.subarray(0, 1)[0]).to.equal(PduType.C2HData);
        q.destroy();
      } finally {
        await fake.close();
      }
    });
  }
});
