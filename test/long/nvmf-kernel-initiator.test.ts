import { expect } from 'chai';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { Spdk } from '../../lib';
import { fillPattern } from '../helpers/env';
import { bootGuest, findGuest, GUEST_SCRIPTS, GuestImage, GuestRun, qemuVersion } from '../helpers/guest';

const NQN = 'nqn.2016-06.io.spdk-node:kernel-initiator';
const SERIAL = 'SPDKNODEKI0000000001';
const BDEV = 'KiMalloc0';
const BLOCK = 4096;
const BLOCKS = 16384; // 64 MiB
/** Not a multiple of anything: the file's last block is partly used. */
const PATTERN_BYTES = 4 * 1024 * 1024 + 1000;

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

interface Controller {
  cntlid: number;
  hostnqn: string;
  /** SPDK counts the admin queue in it. */
  num_io_qpairs: number;
}

/**
 * The Linux kernel's NVMe/TCP initiator (nvme-tcp, nvme-cli) in a Debian guest under QEMU against
 * the builtin engine's target in this process, over QEMU's user-mode network (the guest's
 * 10.0.2.2 is this host's 127.0.0.1). The guest runs scripts/guest/nvmf-kernel-initiator.sh:
 * discover, connect, find the namespace by model number, mkfs.ext4, write a file, fsck, read it
 * back after a remount, disconnect. Here: the guest's result, the file's bytes in the bdev at the
 * blocks ext4 put them, and the controller gone from the target after the disconnect.
 * Needs scripts/guest/build-guest.sh's image; prints one skip line without it.
 */
describe('NVMe/TCP target with the Linux kernel initiator (QEMU guest)', function () {
  this.timeout(15 * 60 * 1000);
  let img: GuestImage | undefined;

  before(function () {
    const found = findGuest();
    if (typeof found === 'string') {
      console.log(`      ${found}`);
      this.skip();
    }
    img = found;
    console.log(`      guest: ${img.info || img.kernel}; ${qemuVersion(img.qemu)}`);
  });

  it('nvme discover, nvme connect, ext4 written and read back, nvme disconnect', async () => {
    const guest = img as GuestImage;
    const share = fs.mkdtempSync(path.join(os.tmpdir(), 'spdk-node-guest-'));
    const model = crypto.randomUUID(); // as spdk-csi does: the model number is the volume's UUID
    const pattern = Buffer.alloc(PATTERN_BYTES);
    fillPattern(pattern, 0x5eed);
    const spdk = await Spdk.start({ engine: 'builtin', cores: [1] });
    let run: GuestRun | undefined;
    let keepShare = false;
    try {
      const port = await freePort();
      await spdk.rpc.call('bdev_malloc_create', { name: BDEV, num_blocks: BLOCKS, block_size: BLOCK });
      await spdk.rpc.call('nvmf_create_transport', { trtype: 'TCP' });
      await spdk.rpc.call('nvmf_create_subsystem', { nqn: NQN, allow_any_host: true, serial_number: SERIAL, model_number: model });
      await spdk.rpc.call('nvmf_subsystem_add_ns', { nqn: NQN, namespace: { bdev_name: BDEV } });
      await spdk.rpc.call('nvmf_subsystem_add_listener', {
        nqn: NQN,
        listen_address: { trtype: 'TCP', adrfam: 'IPv4', traddr: '127.0.0.1', trsvcid: String(port) },
      });

      fs.copyFileSync(path.join(GUEST_SCRIPTS, 'nvmf-kernel-initiator.sh'), path.join(share, 'run.sh'));
      fs.writeFileSync(path.join(share, 'pattern.bin'), pattern);
      fs.writeFileSync(
        path.join(share, 'params.env'),
        [`TRADDR=10.0.2.2`, `TRSVCID=${port}`, `NQN='${NQN}'`, `MODEL='${model}'`, `SERIAL='${SERIAL}'`, `PATTERN=pattern.bin`, ''].join('\n'),
      );

      // What the target sees while the guest runs: the controllers of the subsystem.
      const seen = new Map<string, Controller>();
      let polling = true;
      const poller = (async () => {
        while (polling) {
          const ctrls = (await spdk.rpc.call('nvmf_subsystem_get_controllers', { nqn: NQN })) as Controller[];
          for (const c of ctrls) {
            const key = `${c.cntlid}/${c.hostnqn}`;
            const was = seen.get(key);
            if (!was || c.num_io_qpairs > was.num_io_qpairs) seen.set(key, c);
          }
          await new Promise((r) => setTimeout(r, 200));
        }
      })();
      run = await bootGuest(guest, share, 6 * 60 * 1000, (l) => {
        if (process.env.SPDK_NODE_GUEST_VERBOSE) console.log(`        | ${l}`);
      });
      polling = false;
      await poller;
      console.log(`      target saw controllers ${JSON.stringify([...seen.values()].map((c) => ({ cntlid: c.cntlid, num_io_qpairs: c.num_io_qpairs })))}`);
      console.log(`      guest (${run.accel}) booted, ran and powered off in ${run.seconds.toFixed(1)} s; in-guest test ${String(run.result?.seconds)} s`);

      const r = run.result;
      if (!r || r.ok !== true) {
        keepShare = true;
        const why = run.timedOut ? 'QEMU timed out' : r ? `failed at step ${String(r.step)}: ${String(r.detail)}` : `no result line (QEMU exit ${run.exitCode})`;
        throw new Error(`guest: ${why}\n--- guest console (last 80 lines; logs and dmesg in ${share}/out) ---\n${run.console.split('\n').slice(-80).join('\n')}`);
      }
      // The guest kernel's own account of the connections (nvme-tcp's messages).
      const dmesg = path.join(share, 'out', 'dmesg.txt');
      const kernelLines = fs.existsSync(dmesg) ? fs.readFileSync(dmesg, 'utf8').split('\n').filter((l) => /nvme/i.test(l)) : [];
      for (const l of kernelLines) console.log(`        guest kernel: ${l.trim()}`);
      expect(kernelLines.filter((l) => /error|fail|timeout|reset|warn/i.test(l)), 'nvme errors in the guest kernel log').to.deep.equal([]);
      expect(r.device, 'the namespace device').to.match(/^\/dev\/nvme\d+n\d+$/);
      expect(r.digestQueues, 'queues of the controller with digests (admin, default, write)').to.equal('3');

      // The target saw the guest's host NQN connect, and the controller is gone after disconnect.
      expect([...seen.values()].map((c) => c.hostnqn), 'host NQNs the target saw').to.include(r.hostnqn);
      expect(
        [...seen.values()].some((c) => c.num_io_qpairs === 3),
        'a controller with the admin queue and two I/O queues (the connect with --nr-write-queues=1)',
      ).to.equal(true);
      let after: Controller[] = [];
      for (let i = 0; i < 50; i++) {
        after = (await spdk.rpc.call('nvmf_subsystem_get_controllers', { nqn: NQN })) as Controller[];
        if (after.length === 0) break;
        await new Promise((res) => setTimeout(res, 100));
      }
      expect(after, 'controllers after nvme disconnect').to.deep.equal([]);

      // The bytes are in the bdev: ext4's superblock, and the file at the blocks ext4 gave it.
      expect(r.sha256, 'the sha256 the guest read').to.equal(crypto.createHash('sha256').update(pattern).digest('hex'));
      // The namespace holds the bdev's claim: take it out of the subsystem to open the bdev here.
      await spdk.rpc.call('nvmf_subsystem_remove_ns', { nqn: NQN, nsid: 1 });
      const bdev = await spdk.bdev.open(BDEV);
      try {
        const sb = spdk.allocBuffer(BLOCK);
        await bdev.read(sb, { offsetBlocks: 0, numBlocks: 1 });
        const magic = Buffer.from(sb.bytes.subarray(1024 + 56, 1024 + 58)).readUInt16LE(0);
        expect(magic.toString(16), 'ext4 superblock magic at byte 1080').to.equal('ef53');
        const label = Buffer.from(sb.bytes.subarray(1024 + 120, 1024 + 136)).toString('latin1').replace(/\0+$/, '');
        expect(label, 'ext4 volume label').to.equal('spdknode');

        const ranges = String(r.blocks)
          .split(',')
          .map((s) => s.split('+').map(Number) as [number, number]);
        const total = ranges.reduce((n, [, c]) => n + c, 0);
        expect(total, 'blocks of the file').to.equal(Math.ceil(PATTERN_BYTES / BLOCK));
        const got = Buffer.alloc(total * BLOCK);
        let at = 0;
        for (const [first, count] of ranges) {
          const buf = spdk.allocBuffer(count * BLOCK);
          await bdev.read(buf, { offsetBlocks: first, numBlocks: count });
          got.set(buf.bytes.subarray(0, count * BLOCK), at);
          at += count * BLOCK;
        }
        const mismatch = got.subarray(0, PATTERN_BYTES).findIndex((b, i) => b !== pattern[i]);
        expect(mismatch, 'first byte of the file that differs in the bdev').to.equal(-1);
      } finally {
        await bdev.close();
      }
    } finally {
      await spdk.stop();
      if (keepShare) console.log(`      guest logs kept in ${share}/out`);
      else fs.rmSync(share, { recursive: true, force: true });
    }
  });
});

