/**
 * A network fuzzer for the builtin NVMe/TCP target: each round opens a connection, gets past the
 * checks that random bytes never pass (a valid ICReq and a valid admin Connect, with random digest
 * choices), then sends PDUs built valid and mutated (bits flipped, lengths and offsets changed,
 * bytes inserted or cut, fields set to edge values), and closes at a random point. Meanwhile a
 * witness host does verified I/O on its own connection; the target must keep serving it, and
 * every fuzz connection must be gone afterwards.
 */
import { expect } from 'chai';
import * as net from 'node:net';
import { Spdk } from '../../lib';
import { loadBuiltin } from '../../lib/engine/load';
import { fillPattern, rng } from './env';
import { freePort, NvmeTcpController } from './nvme-tcp-host';

const NQN = 'nqn.2016-06.io.spdk:fuzz';

interface Codec {
  nvmeTcpBuild(kind: string, args: Record<string, unknown>): Buffer;
}
const codec = loadBuiltin() as unknown as Codec;


function sqeBuf(opc: number, cid: number, fill?: (s: Buffer) => void): Buffer {
  const s = Buffer.alloc(64);
  s[0] = opc;
  s.writeUInt16LE(cid, 2);
  fill?.(s);
  return s;
}

/** Fabrics Connect (admin queue) with its 1 KiB of in-capsule data. */
export function connectPdu(p: { hdgst: boolean; ddgst: boolean }, subnqn: string, hostnqn: string, cid = 1): Buffer {
  const data = Buffer.alloc(1024);
  data.fill(0x11, 0, 16);
  data.writeUInt16LE(0xffff, 16);
  data.write(subnqn, 256);
  data.write(hostnqn, 512);
  const s = sqeBuf(0x7f, cid, (b) => {
    b[1] = 0x40; // PSDT: SGL
    b[4] = 0x01; // Connect
    b.writeUInt32LE(1024, 32);
    b[39] = 0x01; // in-capsule data block, offset
    b.writeUInt16LE(31, 44); // SQSIZE
  });
  return codec.nvmeTcpBuild('capsule', { ...p, sqe: s, data });
}

/** A PDU a host could send, valid or nearly: the template the mutations start from. */
function template(r: () => number, p: { hdgst: boolean; ddgst: boolean }, cid: number): Buffer {
  const k = Math.floor(r() * 9);
  const data = (n: number): Buffer => {
    const b = Buffer.alloc(n);
    fillPattern(b, cid + n);
    return b;
  };
  switch (k) {
    case 0: // Property Set CC = enabled
      return codec.nvmeTcpBuild('capsule', { ...p, sqe: sqeBuf(0x7f, cid, (b) => { b[4] = 0x00; b.writeUInt32LE(0x14, 44); b.writeUInt32LE(0x460001, 48); }) });
    case 1: // Identify controller through a transport SGL (C2HData)
      return codec.nvmeTcpBuild('capsule', { ...p, sqe: sqeBuf(0x06, cid, (b) => { b[1] = 0x40; b.writeUInt32LE(4096, 32); b[39] = 0x5a; b[40] = 1; }) });
    case 2: // Get Log Page, random LID and length
      return codec.nvmeTcpBuild('capsule', { ...p, sqe: sqeBuf(0x02, cid, (b) => { b[1] = 0x40; b.writeUInt32LE(Math.floor(r() * 8192), 32); b[39] = 0x5a; b[40] = Math.floor(r() * 256); b.writeUInt16LE(Math.floor(r() * 2048), 42); }) });
    case 3: // a write with in-capsule data
      return codec.nvmeTcpBuild('capsule', { ...p, sqe: sqeBuf(0x01, cid, (b) => { b[1] = 0x40; b.writeUInt32LE(1, 4); b.writeUInt32LE(512, 32); b[39] = 0x01; }), data: data(512) });
    case 4: // a write through R2T
      return codec.nvmeTcpBuild('capsule', { ...p, sqe: sqeBuf(0x01, cid, (b) => { b[1] = 0x40; b.writeUInt32LE(1, 4); b.writeUInt32LE(65536, 32); b[39] = 0x5a; b.writeUInt16LE(127, 48); }) });
    case 5: // H2CData for some transfer tag
      return codec.nvmeTcpBuild('h2c', { ...p, cccid: cid, ttag: Math.floor(r() * 130), datao: Math.floor(r() * 4) * 4096, data: data(4096), flags: r() < 0.5 ? 4 : 0 });
    case 6: // Set Features, random FID
      return codec.nvmeTcpBuild('capsule', { ...p, sqe: sqeBuf(0x09, cid, (b) => { b[40] = Math.floor(r() * 256); b.writeUInt32LE(Math.floor(r() * 0xffffffff), 44); }) });
    case 7: // Async Event Request / Abort / Keep Alive
      return codec.nvmeTcpBuild('capsule', { ...p, sqe: sqeBuf([0x0c, 0x08, 0x18][Math.floor(r() * 3)], cid, (b) => { b.writeUInt32LE(Math.floor(r() * 0xffffffff), 40); }) });
    default: // a random opcode with random dwords
      return codec.nvmeTcpBuild('capsule', { ...p, sqe: sqeBuf(Math.floor(r() * 256), cid, (b) => { for (let i = 4; i < 64; i += 4) b.writeUInt32LE(Math.floor(r() * 0xffffffff), i); b[39] = r() < 0.5 ? 0x01 : 0x5a; }) });
  }
}

function mutate(r: () => number, pdu: Buffer): Buffer {
  let b = Buffer.from(pdu);
  const n = Math.floor(r() * 4);
  for (let i = 0; i < n; i++) {
    const op = Math.floor(r() * 6);
    const pos = Math.floor(r() * b.length);
    if (b.length < 8) break;
    if (op === 0) b[pos] ^= 1 << Math.floor(r() * 8);
    else if (op === 1) b.writeUInt32LE(Math.floor(r() * 0xffffffff), 4); // PLEN
    else if (op === 2) b[3] = Math.floor(r() * 256); // PDO
    else if (op === 3) b = Buffer.concat([b.subarray(0, pos), Buffer.alloc(1 + Math.floor(r() * 64), Math.floor(r() * 256)), b.subarray(pos)]);
    else if (op === 4) b = b.subarray(0, pos);
    else if (b.length >= 16) b.writeUInt32LE([0, 0xffffffff, 0x7fffffff, 1, 4096][Math.floor(r() * 5)], 8 + Math.floor(r() * Math.max(1, Math.min(b.length, 72) - 12)));
  }
  return b;
}

function write(s: net.Socket, b: Buffer): Promise<void> {
  return new Promise((resolve) => {
    if (s.destroyed) return resolve();
    s.write(b, () => resolve());
  });
}

/**
 * One fuzz connection: valid ICReq + Connect, then `pdus` mutated PDUs; closes at a random point.
 * Returns the bytes the target sent back (a sanity check that the session got past setup).
 */
export async function fuzzConnection(port: number, subnqn: string, seed: number, pdus = 24): Promise<number> {
  const r = rng(seed);
  const p = { hdgst: r() < 0.5, ddgst: r() < 0.5 };
  const s = net.connect({ host: '127.0.0.1', port });
  s.on('error', () => undefined);
  let received = 0;
  s.on('data', (d: Buffer) => (received += d.length));
  await new Promise<void>((resolve) => {
    s.once('connect', () => resolve());
    s.once('close', () => resolve());
  });
  try {
    await write(s, codec.nvmeTcpBuild('icreq', { hdgst: p.hdgst, ddgst: p.ddgst, pda: Math.floor(r() * 4) }));
    await write(s, connectPdu(p, subnqn, `nqn.2014-08.org.nvmexpress:uuid:fuzz-${seed}`));
    // The Connect's response first, so the fuzzed PDUs meet an established queue.
    const until = Date.now() + 2000;
    while (received < 152 && !s.destroyed && Date.now() < until) await new Promise((res) => setTimeout(res, 1));
    for (let i = 0; i < pdus && !s.destroyed; i++) {
      const t = template(r, p, 2 + i);
      await write(s, r() < 0.25 ? t : mutate(r, t));
      if (r() < 0.05) break; // vanish mid-stream
      if (r() < 0.1) await new Promise((res) => setTimeout(res, 1));
    }
    await new Promise((res) => setTimeout(res, Math.floor(r() * 5)));
  } finally {
    s.destroy();
  }
  return received;
}

/** The whole campaign: a target, a witness host, `rounds` fuzz connections (4 at a time). */
export async function runNvmfFuzz(rounds: number, seedBase: number, log?: (s: string) => void): Promise<void> {
  const spdk = await Spdk.start({ engine: 'builtin', cores: [0, 1] });
  try {
    const port = await freePort();
    await spdk.rpc.call('bdev_malloc_create', { name: 'F0', num_blocks: 16384, block_size: 512 });
    await spdk.rpc.call('nvmf_create_transport', { trtype: 'TCP' });
    await spdk.rpc.call('nvmf_create_subsystem', { nqn: NQN, allow_any_host: true, serial_number: 'FUZZ0001', model_number: 'fuzz' });
    await spdk.rpc.call('nvmf_subsystem_add_ns', { nqn: NQN, namespace: { bdev_name: 'F0' } });
    await spdk.rpc.call('nvmf_subsystem_add_listener', { nqn: NQN, listen_address: { trtype: 'TCP', adrfam: 'IPv4', traddr: '127.0.0.1', trsvcid: String(port) } });
    const witness = await NvmeTcpController.connect({ host: '127.0.0.1', port, subnqn: NQN } as never);
    await witness.identifyNamespace(1);
    try {
      const check = async (i: number): Promise<void> => {
        const data = Buffer.alloc(4096);
        fillPattern(data, i + 1);
        const lba = 8000 + (i % 64) * 8; // the fuzzers' writes go to LBA 1 and below 128
        const w = await witness.write(1, lba, data);
        expect(w.cqe.status, `witness write after ${i} rounds`).to.equal(0);
        expect((await witness.read(1, lba, 8)).equals(data), `witness data after ${i} rounds`).to.equal(true);
      };
      const parallel = 4;
      let pastSetup = 0;
      for (let i = 0; i < rounds; i += parallel) {
        const got = await Promise.all(Array.from({ length: Math.min(parallel, rounds - i) }, (_, k) => fuzzConnection(port, NQN, seedBase + i + k)));
        // ICResp (128) + the Connect's CapsuleResp (24+): the session reached the fuzzed part.
        pastSetup += got.filter((n) => n >= 152).length;
        if (i % 40 === 0) await check(i);
        if (log && i % 500 === 0) log(`nvmf fuzz: ${i} of ${rounds} connections`);
      }
      await check(rounds);
      expect(pastSetup, 'connections that got past ICReq and Connect').to.be.greaterThan(rounds * 0.9);
      // Every fuzz connection goes away (only the witness's admin and I/O queue stay).
      const end = Date.now() + 10000;
      let groups: Array<{ current_admin_qpairs: number; current_io_qpairs: number }> = [];
      while (Date.now() < end) {
        groups = ((await spdk.rpc.call('nvmf_get_stats', {})) as { poll_groups: typeof groups }).poll_groups;
        if (groups.reduce((a, g) => a + g.current_admin_qpairs + g.current_io_qpairs, 0) === 2) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(groups.reduce((a, g) => a + g.current_admin_qpairs, 0), 'admin qpairs left').to.equal(1);
      expect(groups.reduce((a, g) => a + g.current_io_qpairs, 0), 'I/O qpairs left').to.equal(1);
    } finally {
      await witness.close();
    }
  } finally {
    await spdk.stop();
  }
}
