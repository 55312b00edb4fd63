/**
 * The NVMe host against a target that misbehaves (test/helpers/fake-nvme-target.ts): every
 * malformed or out-of-sequence PDU ends that connection with a clear error — EPROTO, and an
 * H2CTermReq to the target — or fails only its command, and never crashes or hangs the process;
 * the host connects and does I/O again afterwards. Then a mutation pass: valid answers to reads
 * with random bytes changed, cut or added.
 */
import { expect } from 'chai';
import { NvmeController, NvmeQpair, Spdk, SpdkError } from '../lib';
import { fillPattern, rng } from './helpers/env';
import { c2hData, c2hTermReq, capsuleResp, FakeTarget, icResp, r2t } from './helpers/fake-nvme-target';
import { PduType } from './helpers/nvme-tcp-pdu';

const NQN = 'nqn.2016-06.io.spdk:fake';

describe('NVMe host against a misbehaving target', function () {
  this.timeout(30000);
  let spdk: Spdk;
  let fake: FakeTarget;
  const trid = (): string => `trtype:TCP traddr:127.0.0.1 trsvcid:${fake.port} subnqn:${NQN}`;

  before(async () => {
    spdk = await Spdk.start({ engine: 'builtin', cores: [0] });
    fake = new FakeTarget();
    await fake.listen();
  });
  after(async () => {
    await spdk?.stop();
    await fake?.close();
  });
  afterEach(() => {
    fake.hooks = {};
  });

  async function connectError(opts = {}): Promise<SpdkError> {
    let err: SpdkError | undefined;
    await spdk.nvme.connect(trid(), opts).then(
      (c) => c.detach(),
      (e: SpdkError) => (err = e),
    );
    expect(err, 'connect should fail').to.be.instanceOf(SpdkError);
    return err as SpdkError;
  }

  describe('connection setup', () => {
    for (const [what, resp, msg] of [
      ['an ICResp with PFV 1', icResp({ pfv: 1 }), /unsupported PDU format version 1/],
      ['an ICResp with MAXH2CDATA 100', icResp({ maxh2cdata: 100 }), /invalid MAXH2CDATA 100/],
      ['an ICResp with CPDA 40', icResp({ cpda: 40 }), /CPDA 40 out of range/],
      ['an ICResp enabling a digest not asked for', icResp({ dgst: 2 }), /digest enabled that the host did not ask for/],
      ['a CapsuleResp instead of ICResp', capsuleResp(0), /malformed PDU/],
    ] as Array<[string, Buffer, RegExp]>) {
      it(`${what}: EPROTO, with an H2CTermReq`, async () => {
        fake.hooks.onIcReq = () => resp;
        const n = fake.conns.length;
        const e = await connectError();
        expect(e.code).to.equal('EPROTO');
        expect(e.message).to.match(msg);
        await new Promise((r) => setTimeout(r, 50));
        expect(fake.conns[n].received).to.include(PduType.H2CTermReq);
      });
    }

    it('the target closes the connection after ICReq: ECONNRESET', async () => {
      fake.hooks.onIcReq = () => 'close';
      const e = await connectError();
      expect(e.code).to.equal('ECONNRESET');
      expect(e.message).to.match(/the target closed the connection/);
    });

    it('the target never answers: ETIMEDOUT after connectTimeoutMs', async () => {
      fake.hooks.onIcReq = () => 'silence';
      const t0 = Date.now();
      const e = await connectError({ connectTimeoutMs: 300 });
      expect(Date.now() - t0).to.be.below(2000);
      expect(e.code).to.equal('ETIMEDOUT');
      expect(e.message).to.match(/did not finish connecting within 300 ms/);
    });
  });

  describe('I/O', () => {
    let ctrlr: NvmeController;
    let qp: NvmeQpair;
    beforeEach(async () => {
      ctrlr = await spdk.nvme.connect(trid());
      qp = await ctrlr.allocQpair({ depth: 8 });
    });
    afterEach(async () => {
      await ctrlr.detach();
    });

    it('works when the target behaves: identify, reads and writes (in-capsule and R2T) verified', async () => {
      expect(ctrlr.data.sn).to.equal('FAKE0001');
      const ns = ctrlr.namespace(1);
      expect(ns.numSectors).to.equal(2048);
      for (const len of [512, 4096, 65536]) {
        const w = spdk.allocBuffer(len);
        const r = spdk.allocBuffer(len);
        fillPattern(w.bytes, len);
        await qp.write(ns, w, 8, len / 512);
        await qp.read(ns, r, 8, len / 512);
        expect(Buffer.from(r.bytes).equals(Buffer.from(w.bytes))).to.equal(true);
        w.free();
        r.free();
      }
    });

    it('a target asking for CPDA 3: the host puts write data at 16-byte aligned offsets', async () => {
      fake.hooks.onIcReq = () => icResp({ cpda: 3 });
      const c = await spdk.nvme.connect(trid());
      try {
        const q = await c.allocQpair({ depth: 4 });
        const ns = c.namespace(1);
        fake.dataPdos.length = 0;
        for (const len of [4096, 65536]) {
          const w = spdk.allocBuffer(len);
          const r = spdk.allocBuffer(len);
          fillPattern(w.bytes, len + 1);
          await q.write(ns, w, 100, len / 512);
          await q.read(ns, r, 100, len / 512);
          expect(Buffer.from(r.bytes).equals(Buffer.from(w.bytes))).to.equal(true);
          w.free();
          r.free();
        }
        expect(fake.dataPdos.length).to.be.at.least(2);
        for (const pdo of fake.dataPdos) expect(pdo % 16, `PDO ${pdo}`).to.equal(0);
      } finally {
        await c.detach();
      }
    });

    const cases: Array<[string, (sqe: Buffer, qid: number) => Buffer[], RegExp, string]> = [
      ['a CapsuleResp for a command that is not outstanding', (s, q) => [capsuleResp(s.readUInt16LE(2) + 3, 0, 0, 0, q)], /CapsuleResp for command \d+, which is not outstanding/, 'EPROTO'],
      ['C2HData beyond the command\'s data', (s) => [c2hData(s.readUInt16LE(2), 4096, Buffer.alloc(512))], /malformed PDU/, 'EPROTO'],
      ['C2HData with SUCCESS but not LAST_PDU', (s) => [c2hData(s.readUInt16LE(2), 0, Buffer.alloc(4096), 0x08)], /malformed PDU/, 'EPROTO'],
      ['C2HData with SUCCESS before all the data', (s) => [c2hData(s.readUInt16LE(2), 0, Buffer.alloc(512), 0x0c)], /SUCCESS before all data/, 'EPROTO'],
      ['success without the data', (s, q) => [capsuleResp(s.readUInt16LE(2), 0, 0, 0, q)], /completed with 0 of its 4096 bytes/, 'EPROTO'],
      ['an R2T for a read', (s) => [r2t(s.readUInt16LE(2), 1, 0, 4096)], /R2T for command \d+, which has no data to send/, 'EPROTO'],
      ['a PDU of an unknown type', () => [Buffer.from([0x0c, 0, 24, 0, 24, 0, 0, 0, ...Buffer.alloc(16)])], /malformed PDU/, 'EPROTO'],
      ['a PDU of 1 GiB', (s) => [Buffer.from([0x07, 0x04, 24, 24, 0, 0, 0, 0x40]), Buffer.alloc(16)], /malformed PDU.*data transfer limit/, 'EPROTO'],
      ['a C2HTermReq', () => [c2hTermReq(2, 0)], /C2HTermReq \(PDU sequence error\)/, 'ECONNRESET'],
    ];
    for (const [what, answer, msg, code] of cases) {
      it(`${what}: the read fails with ${code}, the qpair is failed, the host goes on`, async () => {
        fake.hooks.onIo = (sqe, _d, conn) => (sqe[0] === 0x02 ? answer(sqe, conn.qid) : undefined);
        const ns = ctrlr.namespace(1);
        const b = spdk.allocBuffer(4096);
        let err: SpdkError | undefined;
        await qp.read(ns, b, 0, 8).catch((e: SpdkError) => (err = e));
        expect(err, 'the read should fail').to.be.instanceOf(SpdkError);
        expect(err?.code).to.equal(code);
        expect(qp.state).to.equal('failed');
        expect(qp.failure).to.match(msg);
        expect(err?.message).to.match(/^READ \(nsid 1, lba 0, 8 blocks, qid \d+\) got no completion/);
        expect(b.inFlight).to.equal(0);
        b.free();
        // The admin queue and a new queue pair still work (the failed one holds its queue ID until freed).
        fake.hooks = {};
        await qp.free();
        const q2 = await ctrlr.allocQpair({ depth: 2 });
        const c = spdk.allocBuffer(512);
        await q2.read(ns, c, 0, 1);
        c.free();
      });
    }

    it('a bad write answer: R2T with a length beyond the data', async () => {
      const ns = ctrlr.namespace(1);
      // Intercept at the command: answer the capsule of a write too large for in-capsule data
      // (16 KiB) with an R2T for more than it carries.
      const w = spdk.allocBuffer(16384);
      const sock = fake.conns[fake.conns.length - 1];
      const handler = (chunk: Buffer): void => {
        if (chunk[0] === PduType.CapsuleCmd && chunk[8] === 0x01) {
          sock.socket.removeListener('data', handler);
          sock.send(r2t(chunk.readUInt16LE(10), 1, 0, 20000));
        }
      };
      sock.socket.prependListener('data', handler);
      let err: SpdkError | undefined;
      await qp.write(ns, w, 0, 32).catch((e: SpdkError) => (err = e));
      expect(err?.code).to.equal('EPROTO');
      expect(qp.failure).to.match(/R2T length 20000 out of range/);
      w.free();
    });

    it('mutations of valid read answers (200 rounds): each read completes, fails or times out; the process goes on', async function () {
      this.timeout(120000);
      const ns = ctrlr.namespace(1);
      const r = rng(7);
      let round = 0;
      const outcomes = { ok: 0, nvme: 0, transport: 0 };
      fake.hooks.onIo = (sqe, _d, conn) => {
        if (sqe[0] !== 0x02) return undefined;
        const cid = sqe.readUInt16LE(2);
        const len = ((sqe.readUInt32LE(48) & 0xffff) + 1) * 512;
        const wire = Buffer.concat([c2hData(cid, 0, fake.media.subarray(0, len)), capsuleResp(cid, 0, 0, 0, conn.qid)]);
        const m = Buffer.from(wire);
        const kind = round++ % 4;
        if (kind === 0) for (let i = 0; i < 1 + Math.floor(r() * 4); i++) m[Math.floor(r() * Math.min(m.length, 48))] ^= 1 << Math.floor(r() * 8);
        if (kind === 1) m[Math.floor(r() * m.length)] = Math.floor(r() * 256);
        if (kind === 2) return [m.subarray(0, Math.floor(r() * m.length)), Buffer.from([Math.floor(r() * 10), 0, 24, 24, 0xff, 0xff, 0, 0])];
        if (kind === 3) return [m, m.subarray(0, Math.floor(r() * 40))];
        return [m];
      };
      for (let i = 0; i < 200; i++) {
        const c = await spdk.nvme.connect(trid());
        try {
          const q = await c.allocQpair({ depth: 2, timeoutMs: 200 });
          const b = spdk.allocBuffer(4096);
          await q.read(ns, b, 0, 8).then(
            () => outcomes.ok++,
            (e: SpdkError) => (e.name === 'NvmeError' ? outcomes.nvme++ : outcomes.transport++),
          );
          expect(b.inFlight).to.equal(0);
          b.free();
        } finally {
          await c.detach();
        }
      }
      expect(outcomes.ok + outcomes.nvme + outcomes.transport).to.equal(200);
      expect(outcomes.transport).to.be.greaterThan(0);
    });
  });
});
