/**
 * The native NVMe/TCP PDU codec (native/common/nvme_tcp) on its own: builders and receiver
 * round trips under any segmentation (through Feed() and the direct-read path), every framing
 * rule broken one at a time with the TermReq status it must produce, and a mutation fuzz pass
 * over valid sessions (a longer campaign: NVME_TCP_FUZZ_ITERATIONS).
 */
import { strict as assert } from 'node:assert';
import { loadBuiltin } from '../lib/engine/load';
import { fillPattern, rng } from './helpers/env';

interface Decoded {
  pdus: Array<{ type: number; flags: number; header: Buffer; data: Buffer; digestOk: boolean }>;
  consumed: number;
  error: { fes: number; fei: number } | null;
  termData: Buffer;
}
interface Codec {
  nvmeTcpDecode(bytes: Uint8Array, opts: Record<string, unknown>): Decoded;
  nvmeTcpBuild(kind: string, args: Record<string, unknown>): Buffer;
}

const codec = loadBuiltin() as unknown as Codec;

const FES_INVALID_HEADER_FIELD = 1;
const FES_PDU_SEQUENCE_ERROR = 2;
const FES_HEADER_DIGEST_ERROR = 3;
const FES_DATA_LIMIT_EXCEEDED = 5;


function pattern(len: number, seed: number): Buffer {
  const b = Buffer.alloc(len);
  fillPattern(b, seed);
  return b;
}

function sqe(opc: number, cid: number): Buffer {
  const s = Buffer.alloc(64);
  s[0] = opc;
  s.writeUInt16LE(cid, 2);
  return s;
}

/** A host-to-target session after ICReq: capsules with and without data, H2CData. */
function hostSession(p: { hdgst: boolean; ddgst: boolean; sendAlign?: number }, seed: number): { bytes: Buffer; expect: Array<{ type: number; data: Buffer }> } {
  const parts: Buffer[] = [];
  const expect: Array<{ type: number; data: Buffer }> = [];
  const r = rng(seed);
  for (let i = 0; i < 6; i++) {
    const kind = Math.floor(r() * 3);
    if (kind === 0) {
      parts.push(codec.nvmeTcpBuild('capsule', { ...p, sqe: sqe(2, i) }));
      expect.push({ type: 4, data: Buffer.alloc(0) });
    } else if (kind === 1) {
      const data = pattern(1 + Math.floor(r() * 8192), seed + i);
      parts.push(codec.nvmeTcpBuild('capsule', { ...p, sqe: sqe(1, i), data }));
      expect.push({ type: 4, data });
    } else {
      const data = pattern(1 + Math.floor(r() * 65536), seed * 7 + i);
      parts.push(codec.nvmeTcpBuild('h2c', { ...p, cccid: i, ttag: i, datao: 0, data, flags: 4 }));
      expect.push({ type: 6, data });
    }
  }
  return { bytes: Buffer.concat(parts), expect };
}

function decodeTarget(bytes: Uint8Array, extra: Record<string, unknown>): Decoded {
  return codec.nvmeTcpDecode(bytes, { role: 'target', icDone: true, ...extra });
}

describe('NVMe/TCP PDU codec (native)', () => {
  it('ICReq then ICResp: built and parsed, fields where the specification puts them', () => {
    const icreq = codec.nvmeTcpBuild('icreq', { pda: 3, hdgst: true, ddgst: false, max: 7 });
    assert.equal(icreq.length, 128);
    assert.deepEqual([...icreq.subarray(0, 8)], [0, 0, 128, 0, 128, 0, 0, 0]);
    assert.equal(icreq[10], 3); // HPDA
    assert.equal(icreq[11], 1); // DGST: header only
    assert.equal(icreq.readUInt32LE(12), 7); // MAXR2T
    const d = codec.nvmeTcpDecode(icreq, { role: 'target' });
    assert.equal(d.error, null);
    assert.equal(d.pdus.length, 1);
    assert.equal(d.pdus[0].type, 0);
    // The other direction: a host accepts ICResp, and a target refuses it.
    const icresp = codec.nvmeTcpBuild('icresp', { pda: 0, max: 131072 });
    assert.equal(codec.nvmeTcpDecode(icresp, { role: 'host' }).pdus.length, 1);
    assert.deepEqual(codec.nvmeTcpDecode(icresp, { role: 'target' }).error, { fes: FES_PDU_SEQUENCE_ERROR, fei: 0 });
  });

  for (const p of [
    { hdgst: false, ddgst: false },
    { hdgst: true, ddgst: false },
    { hdgst: false, ddgst: true },
    { hdgst: true, ddgst: true },
  ]) {
    it(`a host session round-trips under any segmentation, fed or read directly (hdgst ${p.hdgst}, ddgst ${p.ddgst})`, () => {
      for (let seed = 1; seed <= 12; seed++) {
        const { bytes, expect } = hostSession(p, seed);
        const r = rng(seed * 31);
        for (const chunks of [[bytes.length], [1], [7, 3, 1000], [Math.ceil(r() * 200), Math.ceil(r() * 70000)]]) {
          for (const direct of [false, true]) {
            const d = decodeTarget(bytes, { ...p, chunks, direct });
            assert.equal(d.error, null, `seed ${seed} chunks ${chunks} direct ${direct}`);
            assert.equal(d.consumed, bytes.length);
            assert.equal(d.pdus.length, expect.length);
            d.pdus.forEach((pdu, i) => {
              assert.equal(pdu.type, expect[i].type);
              assert.ok(pdu.digestOk);
              assert.ok(pdu.data.equals(expect[i].data), `pdu ${i} data`);
              assert.equal((pdu.flags & 1) !== 0, p.hdgst);
            });
          }
        }
      }
    });
  }

  it('data offset padding: a sender aligning data (PDA) is parsed, and a receiver requiring alignment refuses unaligned data', () => {
    const data = pattern(4096, 5);
    const aligned = codec.nvmeTcpBuild('c2h', { sendAlign: 32, cccid: 1, datao: 0, data, flags: 4 | 8 });
    assert.equal(aligned[3], 32); // PDO
    const d = codec.nvmeTcpDecode(aligned, { role: 'host', icDone: true, recvAlign: 32 });
    assert.equal(d.error, null);
    assert.ok(d.pdus[0].data.equals(data));
    const tight = codec.nvmeTcpBuild('c2h', { cccid: 1, datao: 0, data, flags: 4 });
    assert.deepEqual(codec.nvmeTcpDecode(tight, { role: 'host', icDone: true, recvAlign: 32 }).error, { fes: FES_INVALID_HEADER_FIELD, fei: 3 });
  });

  it('a data digest error is reported per PDU, not fatal: the next PDU still parses', () => {
    const p = { hdgst: false, ddgst: true };
    const a = codec.nvmeTcpBuild('capsule', { ...p, sqe: sqe(1, 1), data: pattern(512, 1) });
    const b = codec.nvmeTcpBuild('capsule', { ...p, sqe: sqe(1, 2), data: pattern(512, 2) });
    a[a.length - 1] ^= 0xff;
    const d = decodeTarget(Buffer.concat([a, b]), p);
    assert.equal(d.error, null);
    assert.deepEqual(d.pdus.map((x) => x.digestOk), [false, true]);
  });

  describe('framing rules, each broken once (FES, FEI as the TermReq carries them)', () => {
    const p = { hdgst: true, ddgst: true };
    const base = (): Buffer => codec.nvmeTcpBuild('capsule', { ...p, sqe: sqe(1, 9), data: pattern(64, 9) });
    const cases: Array<[string, (b: Buffer) => void, { fes: number; fei: number }]> = [
      ['unknown PDU type', (b) => { b[0] = 0x0f; }, { fes: FES_INVALID_HEADER_FIELD, fei: 0 }],
      ['a controller-to-host type sent to the target', (b) => { b[0] = 0x05; }, { fes: FES_PDU_SEQUENCE_ERROR, fei: 0 }],
      ['ICReq after the connection is set up', (b) => { b[0] = 0x00; }, { fes: FES_PDU_SEQUENCE_ERROR, fei: 0 }],
      ['HLEN wrong for the type', (b) => { b[2] = 24; }, { fes: FES_INVALID_HEADER_FIELD, fei: 2 }],
      ['header digest flag missing though negotiated', (b) => { b[1] &= ~1; }, { fes: FES_INVALID_HEADER_FIELD, fei: 1 }],
      ['PDO inside the header', (b) => { b[3] = 10; }, { fes: FES_INVALID_HEADER_FIELD, fei: 3 }],
      ['PLEN shorter than PDO', (b) => { b.writeUInt32LE(40, 4); }, { fes: FES_INVALID_HEADER_FIELD, fei: 3 }],
      ['PLEN leaves no room for the data digest', (b) => { b.writeUInt32LE(b[3] + 4, 4); }, { fes: FES_INVALID_HEADER_FIELD, fei: 4 }],
      ['data longer than the receiver accepts', (b) => { b.writeUInt32LE(b[3] + (2 << 20) + 4, 4); }, { fes: FES_DATA_LIMIT_EXCEEDED, fei: 4 }],
      ['header digest wrong', (b) => { b[72] ^= 1; }, { fes: FES_HEADER_DIGEST_ERROR, fei: 0 }],
      ['a header field changed under a valid-looking digest', (b) => { b[8] ^= 1; }, { fes: FES_HEADER_DIGEST_ERROR, fei: 0 }],
    ];
    for (const [name, mutate, want] of cases) {
      it(name, () => {
        const b = base();
        assert.equal(decodeTarget(b, p).error, null);
        mutate(b);
        const d = decodeTarget(b, { ...p, maxData: 1 << 20 });
        assert.deepEqual(d.error, want);
        assert.equal(d.pdus.length, 0);
      });
    }
    it('H2CData whose DATAL disagrees with its PLEN', () => {
      const h = codec.nvmeTcpBuild('h2c', { cccid: 1, ttag: 1, data: pattern(100, 3) });
      h.writeUInt32LE(99, 16);
      assert.deepEqual(decodeTarget(h, {}).error, { fes: FES_INVALID_HEADER_FIELD, fei: 16 });
    });
    it('a capsule before ICReq', () => {
      const c = codec.nvmeTcpBuild('capsule', { sqe: sqe(2, 1) });
      assert.deepEqual(codec.nvmeTcpDecode(c, { role: 'target' }).error, { fes: FES_PDU_SEQUENCE_ERROR, fei: 0 });
    });
    it('H2CTermReq is accepted with its data (the offending header) kept', () => {
      const t = Buffer.alloc(24 + 30);
      t[0] = 0x02;
      t[2] = 24;
      t.writeUInt32LE(54, 4);
      t.writeUInt16LE(1, 8);
      pattern(30, 4).copy(t, 24);
      const d = decodeTarget(t, { hdgst: true });
      assert.equal(d.error, null);
      assert.equal(d.pdus[0].type, 2);
      assert.ok(d.termData.equals(pattern(30, 4)));
    });
  });

  it('mutation fuzz: valid sessions with bytes flipped, inserted and cut never crash, and each run ends in PDUs or one fatal error', function () {
    const iterations = Number(process.env.NVME_TCP_FUZZ_ITERATIONS ?? 3000);
    this.timeout(Math.max(20000, iterations * 20));
    const combos = [
      { hdgst: false, ddgst: false },
      { hdgst: true, ddgst: true },
      { hdgst: true, ddgst: false },
    ];
    let errors = 0;
    for (let i = 0; i < iterations; i++) {
      const r = rng(i + 1);
      const p = combos[i % combos.length];
      const { bytes } = hostSession(p, i + 1);
      let b = Buffer.from(bytes);
      const edits = 1 + Math.floor(r() * 4);
      for (let e = 0; e < edits; e++) {
        const pos = Math.floor(r() * b.length);
        const op = Math.floor(r() * 3);
        if (op === 0) b[pos] ^= 1 << Math.floor(r() * 8);
        else if (op === 1) b = Buffer.concat([b.subarray(0, pos), pattern(1 + Math.floor(r() * 16), i), b.subarray(pos)]);
        else b = b.subarray(0, pos);
      }
      const d = decodeTarget(b, { ...p, chunks: [1 + Math.floor(r() * 5000)], direct: (i & 1) === 1, place: (i & 2) === 0 });
      assert.ok(d.consumed <= b.length);
      if (d.error) {
        errors++;
        assert.ok(d.error.fes >= 1 && d.error.fes <= 6, `fes ${d.error.fes}`);
      } else {
        assert.equal(d.consumed, b.length);
      }
    }
    // Mutations must be caught most of the time (with header digests, nearly always).
    assert.ok(errors > iterations / 10, `only ${errors} of ${iterations} mutated sessions were refused`);
  });

  it('random bytes alone die at the first header check', () => {
    let refusedAtOnce = 0;
    for (let i = 0; i < 500; i++) {
      const b = pattern(256, i + 1000);
      const d = decodeTarget(b, { hdgst: i % 2 === 0 });
      assert.equal(d.pdus.length, 0);
      if (d.error !== null && d.consumed === 8) refusedAtOnce++;
    }
    // Only a common header that happens to be valid gets past the first 8 bytes.
    assert.ok(refusedAtOnce >= 490, `${refusedAtOnce} of 500 refused at the common header`);
  });
});
