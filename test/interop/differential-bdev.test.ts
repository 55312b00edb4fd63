import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Spdk } from '../../lib';
import { RpcClient } from '../../lib/rpc';
import { findSpdkBinary, skipLine, startSpdkApp, SpdkProcess } from '../helpers/spdk-install';
import { tempDir, uniqueSocketPath } from '../helpers/env';

type Outcome = { result: unknown } | { error: { code: number; message: string } };

/**
 * The same sequence of bdev RPCs against spdk-node's builtin target and SPDK's own spdk_tgt,
 * compared call by call after normalising what is generated (UUIDs, tick counters) and what
 * docs/differences.md lists as deliberate differences.
 */
describe('differential: bdev RPCs against SPDK spdk_tgt', function () {
  this.timeout(120000);
  const spdkTgt = findSpdkBinary('spdk_tgt');
  let ref: SpdkProcess | undefined;
  let spdk: Spdk | undefined;
  let ours: RpcClient | undefined;
  let tmp: ReturnType<typeof tempDir>;

  before(async function () {
    if (!spdkTgt) {
      console.log(`      ${skipLine('spdk_tgt')}`);
      this.skip();
    }
    tmp = tempDir();
    ref = await startSpdkApp(spdkTgt as string, uniqueSocketPath('spdk-ref'));
    const sock = uniqueSocketPath('diff');
    spdk = await Spdk.start({ engine: 'builtin', cores: [0], rpcSocket: sock });
    ours = await RpcClient.connect(sock);
  });

  after(async () => {
    await ours?.close();
    await spdk?.stop();
    await ref?.client.close();
    await ref?.stop();
    tmp?.cleanup();
  });

  async function outcome(c: RpcClient, method: string, params?: unknown): Promise<Outcome> {
    try {
      return { result: await c.call(method, params) };
    } catch (e) {
      const { code, message } = e as { code: number; message: string };
      return { error: { code, message } };
    }
  }

  const uuidRe = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g;
  // Deliberate differences (docs/differences.md): I/O types the builtin bdevs do not model.
  // Zone operations too: SPDK's uring bdev reports them when SPDK was built with io_uring ZNS.
  const notModelled = ['reset', 'nvme_admin', 'nvme_io', 'nvme_io_md', 'zcopy', 'compare', 'compare_and_write', 'abort', 'seek_hole', 'seek_data', 'copy', 'nvme_iov_md', 'nvme_nssr', 'get_zone_info', 'zone_management', 'zone_append'];
  // The builtin file bdev serves flush, unmap and write_zeroes whatever its SPDK module name;
  // SPDK's aio bdev has unmap/write_zeroes only with fallocate, its uring bdev no flush or unmap.
  const fileBdevOps = (theirs: unknown, mine: unknown): void => {
    type R = { result: Array<{ supported_io_types: Record<string, boolean> }> };
    const t = (theirs as R).result[0].supported_io_types;
    const m = (mine as R).result[0].supported_io_types;
    for (const k of ['flush', 'unmap', 'write_zeroes']) t[k] = m[k];
  };

  function normalise(v: unknown): unknown {
    const s = JSON.stringify(v, (key, val) => {
      if (key === 'supported_io_types' && val && typeof val === 'object') {
        const o = { ...(val as Record<string, boolean>) };
        for (const k of notModelled) delete o[k];
        // aio without fallocate: SPDK reports no unmap/write_zeroes; the builtin file bdev has them.
        return o;
      }
      if (key === 'ticks') return 'TICKS';
      if (key === 'tick_rate') return 'TICK_RATE';
      return val;
    });
    return JSON.parse(s.replace(uuidRe, 'UUID'));
  }

  const transcript: string[] = [];

  async function same(method: string, params?: unknown, adjust?: (theirs: unknown, mine: unknown) => void): Promise<void> {
    const theirs = normalise(await outcome((ref as SpdkProcess).client, method, params));
    const mine = normalise(await outcome(ours as RpcClient, method, params));
    adjust?.(theirs, mine);
    transcript.push(`${method} ${JSON.stringify(params ?? null)} -> ${JSON.stringify(theirs).slice(0, 160)}`);
    expect(mine, `${method} ${JSON.stringify(params ?? null)}`).to.deep.equal(theirs);
  }

  it('malloc create, duplicates, bad sizes, decode failures, listing and delete match', async () => {
    await same('bdev_get_bdevs');
    await same('bdev_malloc_create', { name: 'M0', num_blocks: 64, block_size: 512 });
    await same('bdev_malloc_create', { name: 'M0', num_blocks: 64, block_size: 512 });
    await same('bdev_malloc_create', { name: 'M1', num_blocks: 64, block_size: 1000 });
    await same('bdev_malloc_create', { name: 'M1', num_blocks: 0, block_size: 512 });
    await same('bdev_malloc_create', { name: 'M1', num_blocks: '64', block_size: 512 });
    await same('bdev_malloc_create', { name: 'M1', num_blocks: 64, block_size: 512, colour: 'red' });
    await same('bdev_malloc_create', { num_blocks: 64, block_size: 512 });
    await same('bdev_malloc_create', { name: 'M2', num_blocks: 32, block_size: 4096, uuid: '0a1b2c3d-0000-4000-8000-000000000001' });
    await same('bdev_get_bdevs', { name: 'M0' });
    await same('bdev_get_bdevs', { name: '0a1b2c3d-0000-4000-8000-000000000001' });
    await same('bdev_get_bdevs', { name: 'nope' });
    await same('bdev_get_bdevs', { name: 5 });
    await same('bdev_get_bdevs');
    await same('bdev_malloc_delete', { name: 'nope' });
    await same('bdev_malloc_delete', {});
    await same('bdev_malloc_delete', { name: 'M0' });
    await same('bdev_get_bdevs');
  });

  it('aio and uring bdevs on files match', async () => {
    const f = path.join(tmp.dir, 'diff.img');
    fs.writeFileSync(f, Buffer.alloc(0));
    fs.truncateSync(f, 4 << 20);
    const odd = path.join(tmp.dir, 'odd.img');
    fs.writeFileSync(odd, Buffer.alloc(1000));
    await same('bdev_aio_create', { name: 'A0', filename: f, block_size: 512 });
    await same('bdev_aio_create', { name: 'A1', filename: path.join(tmp.dir, 'missing') });
    await same('bdev_aio_create', { name: 'A1', filename: odd });
    await same('bdev_aio_create', { name: 'A1', filename: f, block_size: 1536 });
    await same('bdev_get_bdevs', { name: 'A0' }, fileBdevOps);
    await same('bdev_aio_delete', { name: 'A0' });
    await same('bdev_aio_delete', { name: 'A0' });
    const methods = (await outcome((ref as SpdkProcess).client, 'rpc_get_methods')) as { result: string[] };
    if (methods.result.includes('bdev_uring_create')) {
      await same('bdev_uring_create', { name: 'U0', filename: f, block_size: 512 });
      await same('bdev_uring_create', { name: 'U1', filename: path.join(tmp.dir, 'missing') });
      await same('bdev_get_bdevs', { name: 'U0' }, fileBdevOps);
      await same('bdev_uring_delete', { name: 'U0' });
    }
  });

  it('iostat and examine match', async () => {
    await same('bdev_get_iostat', { name: 'nope' });
    await same('bdev_wait_for_examine');
    await same('bdev_wait_for_examine', { x: 1 });
    await same('framework_get_config', { name: 'nope' });
    await same('spdk_get_version', { x: 1 });
    await same('no_such_method');
  });

  after(() => {
    if (process.env.SPDK_NODE_DIFF_TRANSCRIPT) fs.writeFileSync(process.env.SPDK_NODE_DIFF_TRANSCRIPT, transcript.join('\n') + '\n');
  });
});
