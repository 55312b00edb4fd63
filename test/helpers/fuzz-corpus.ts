/**
 * Seeds for the coverage-guided fuzz targets in test/fuzz/: valid NVMe/TCP sessions, recorded.
 *
 * The project's test host runs real sessions against the builtin target through a recording
 * proxy on 127.0.0.1; every host-to-target byte stream (one per TCP connection) becomes a seed.
 * `setup.bin` is the admin queue of the first controller (ICReq, Connect, CC.EN = 1, Identify);
 * the fuzz target replays it once so that its long-lived controller has controller ID 1, as here,
 * and the recorded I/O-queue sessions connect to it. Sessions run without digests (digest
 * mismatches would stop most mutations at the first header) except a few that seed the digest
 * paths.
 *
 * Also seeds for the codec target: the same streams behind a control byte (target role, before
 * the IC exchange), as nvme_tcp_codec_fuzz.cc reads its input.
 *
 * Run as a script: `node dist/test/helpers/fuzz-corpus.js OUTDIR` writes OUTDIR/setup.bin,
 * OUTDIR/nvmf/*.bin and OUTDIR/codec/*.bin.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { Spdk } from '../../lib';
import { fillPattern } from './env';
import { AdminOpc, FeatureId, freePort, LogId, NvmeTcpController, sqe } from './nvme-tcp-host';

/** The fuzz target's subsystem and host (nvmf_target_fuzz.cc uses the same NQN). */
export const FUZZ_NQN = 'nqn.2016-06.io.spdk:fuzz';
const FUZZ_HOST = { hostnqn: 'nqn.2014-08.org.nvmexpress:uuid:5c2f3c1e-0d4b-4d7e-8a0e-6b1f2e3d4c5b', hostid: Buffer.from('5c2f3c1e0d4b4d7e8a0e6b1f2e3d4c5b', 'hex') };
const DISCOVERY_NQN = 'nqn.2014-08.org.nvmexpress.discovery';

/** A TCP proxy that keeps every host-to-target stream, in connection order. */
class Recorder {
  readonly streams: Buffer[][] = [];
  private server!: net.Server;
  private readonly sockets = new Set<net.Socket>();
  port = 0;

  async start(targetPort: number): Promise<void> {
    this.server = net.createServer((host) => {
      const chunks: Buffer[] = [];
      this.streams.push(chunks);
      const tgt = net.connect(targetPort, '127.0.0.1');
      this.sockets.add(host).add(tgt);
      host.on('data', (d) => {
        chunks.push(Buffer.from(d));
        tgt.write(d);
      });
      tgt.on('data', (d) => host.write(d));
      host.on('close', () => tgt.end());
      tgt.on('close', () => host.destroy());
      host.on('error', () => tgt.destroy());
      tgt.on('error', () => host.destroy());
    });
    this.port = await new Promise<number>((resolve) => this.server.listen(0, '127.0.0.1', () => resolve((this.server.address() as net.AddressInfo).port)));
  }

  /** The stream of connection i so far. */
  stream(i: number): Buffer {
    return Buffer.concat(this.streams[i]);
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

function data(len: number, seed: number): Buffer {
  const b = Buffer.alloc(len);
  fillPattern(b, seed);
  return b;
}

/** Records the sessions; returns name -> host-to-target byte stream. */
export async function recordSessions(): Promise<Map<string, Buffer>> {
  const spdk = await Spdk.start({ engine: 'builtin', cores: [0, 1] });
  const rec = new Recorder();
  const out = new Map<string, Buffer>();
  try {
    const port = await freePort();
    const listen = { trtype: 'TCP', adrfam: 'IPv4', traddr: '127.0.0.1', trsvcid: String(port) };
    await spdk.rpc.call('nvmf_create_transport', { trtype: 'TCP' });
    await spdk.rpc.call('bdev_malloc_create', { name: 'Malloc0', num_blocks: 32768, block_size: 512 });
    await spdk.rpc.call('nvmf_create_subsystem', { nqn: FUZZ_NQN, allow_any_host: true, serial_number: 'SPDKNODEFUZZ0001', model_number: 'spdk-node fuzz' });
    await spdk.rpc.call('nvmf_subsystem_add_ns', { nqn: FUZZ_NQN, namespace: { bdev_name: 'Malloc0', nsid: 1 } });
    await spdk.rpc.call('nvmf_subsystem_add_listener', { nqn: FUZZ_NQN, listen_address: listen });
    await spdk.rpc.call('nvmf_subsystem_add_listener', { nqn: DISCOVERY_NQN, listen_address: listen });
    await rec.start(port);
    let conn = 0;
    const next = (): number => conn++;

    // The long-lived controller: admin queue (connection 0) and two I/O queues (1, 2).
    const c = await NvmeTcpController.connect({ port: rec.port, subnqn: FUZZ_NQN, ...FUZZ_HOST, ioQueues: 2, kato: 0 });
    const adminIdx = next();
    const ioIdx = [next(), next()];
    await c.identifyNamespace(1);
    out.set('setup', rec.stream(adminIdx));

    // I/O queue 1: in-capsule and R2T writes, reads, and the other I/O commands.
    await c.write(1, 0, data(4096, 1));
    await c.write(1, 8, data(8192, 2), { inCapsule: false });
    await c.read(1, 0, 24);
    await c.flushCmd(1);
    await c.writeZeroesCmd(1, 100, 16);
    await c.deallocateCmd(1, [{ slba: 200, nlb: 8 }, { slba: 400, nlb: 16 }]);
    await c.compareCmd(1, 0, data(4096, 1));
    await c.readCmd(1, 32760, 16); // across the end
    await c.readCmd(7, 0, 1, { blockSize: 512 }); // no such namespace
    // I/O queue 2: several commands in flight at once.
    const q2 = c.queue(1);
    await Promise.all([
      q2.submit(sqe({ opc: 0x01, nsid: 1, cdw10: 64, cdw12: 7 }), { dataOut: data(4096, 3) }),
      q2.submit(sqe({ opc: 0x02, nsid: 1, cdw10: 0, cdw12: 15 }), { dataInLength: 8192 }),
      q2.submit(sqe({ opc: 0x01, nsid: 1, cdw10: 1000, cdw12: 31 }), { dataOut: data(16384, 4), inCapsule: false }),
      q2.submit(sqe({ opc: 0x09, nsid: 1, cdw10: 0, cdw11: 4 }), { dataOut: Buffer.alloc(16, 0) }),
    ]);
    // Admin commands on the long-lived controller are recorded in a second admin session below
    // (setup.bin stays the set-up only); record the I/O streams now.
    await c.close();
    out.set('io-queue-1', rec.stream(ioIdx[0]));
    out.set('io-queue-2', rec.stream(ioIdx[1]));

    // An admin session of its own: the admin command set.
    const a = await NvmeTcpController.connect({ port: rec.port, subnqn: FUZZ_NQN, ...FUZZ_HOST, ioQueues: 0, kato: 30000 });
    const aIdx = next();
    await a.identify(1, 0);
    await a.identify(0, 1);
    await a.identify(2, 0);
    await a.identify(3, 1);
    await a.getLogPage(LogId.Error, 64);
    await a.getLogPage(LogId.Smart, 512);
    await a.getLogPage(LogId.ChangedNsList, 4096);
    await a.getLogPage(0x03, 512); // firmware slot
    await a.getLogPage(0x05, 4096); // commands supported and effects
    await a.getFeatures(FeatureId.NumberOfQueues);
    await a.getFeatures(FeatureId.KeepAliveTimer);
    await a.setFeatures(FeatureId.AsyncEventConfig, 0x100);
    await a.setNumberOfQueues(4);
    await a.keepAlive();
    const aer = a.asyncEventRequest();
    await a.exec(a.admin, sqe({ opc: AdminOpc.Abort, cdw10: 0 }));
    await a.propertyGet(0x00, true);
    await a.propertyGet(0x08);
    await a.propertyGet(0x1c);
    await a.shutdown();
    await aer.catch(() => undefined);
    await a.close();
    out.set('admin', rec.stream(aIdx));

    // Discovery: Connect to the discovery NQN, Identify, the log page.
    const d = await NvmeTcpController.connect({ port: rec.port, subnqn: DISCOVERY_NQN, ...FUZZ_HOST, ioQueues: 0 });
    const dIdx = next();
    await d.discoveryLog();
    await d.close();
    out.set('discovery', rec.stream(dIdx));

    // Digests on: header and data digests on a new controller's admin queue.
    const g = await NvmeTcpController.connect({ port: rec.port, subnqn: FUZZ_NQN, ...FUZZ_HOST, ioQueues: 0, hdgst: true, ddgst: true });
    const gIdx = next();
    await g.identify(1, 0);
    await g.close();
    out.set('digests-admin', rec.stream(gIdx));
  } finally {
    await rec.stop();
    await spdk.stop();
  }
  return out;
}

/** Writes the seeds (see the file comment); returns the paths of setup.bin and the corpora. */
export async function writeCorpus(dir: string): Promise<{ setup: string; nvmf: string; codec: string }> {
  const sessions = await recordSessions();
  const nvmf = path.join(dir, 'nvmf');
  const codec = path.join(dir, 'codec');
  fs.mkdirSync(nvmf, { recursive: true });
  fs.mkdirSync(codec, { recursive: true });
  const setup = path.join(dir, 'setup.bin');
  fs.writeFileSync(setup, sessions.get('setup')!);
  for (const [name, bytes] of sessions) {
    fs.writeFileSync(path.join(nvmf, `${name}.bin`), bytes);
    // Codec control byte 0x00: target role, IC not done, data through Feed(); 0x40: direct reads.
    fs.writeFileSync(path.join(codec, `${name}.bin`), Buffer.concat([Buffer.from([0x00, 0x17]), bytes]));
    fs.writeFileSync(path.join(codec, `${name}-direct.bin`), Buffer.concat([Buffer.from([0x40, 0x2b]), bytes]));
  }
  return { setup, nvmf, codec };
}

if (require.main === module) {
  const dir = process.argv[2];
  if (!dir) {
    console.error('usage: node dist/test/helpers/fuzz-corpus.js OUTDIR');
    process.exit(2);
  }
  writeCorpus(dir).then(
    (r) => console.log(`seeds written: ${r.setup}, ${r.nvmf}, ${r.codec}`),
    (e) => {
      console.error(e);
      process.exit(1);
    },
  );
}
