import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Spdk } from '../lib';
import { tempDir } from './helpers/env';

async function rpcError(p: Promise<unknown>): Promise<{ code: number; message: string }> {
  try {
    await p;
  } catch (e) {
    return { code: (e as { code: number }).code, message: (e as Error).message };
  }
  throw new Error('resolved');
}

// bdev_aio_rescan / bdev_uring_rescan (SPDK v25.09 bdev_aio.c, bdev_uring.c): a file bdev picks
// up its file's new size; with bdev_lvol_grow_lvstore an lvstore then gets the new clusters.
describe('file bdev rescan', function () {
  this.timeout(20000);
  let spdk: Spdk;
  let tmp: ReturnType<typeof tempDir>;
  beforeEach(async () => {
    tmp = tempDir();
    spdk = await Spdk.start({ engine: 'builtin', cores: [0] });
  });
  afterEach(async () => {
    await spdk.stop();
    tmp.cleanup();
  });

  const file = (name: string, size: number): string => {
    const f = path.join(tmp.dir, name);
    fs.writeFileSync(f, Buffer.alloc(0));
    fs.truncateSync(f, size);
    return f;
  };
  const blocks = async (name: string): Promise<number> => ((await spdk.rpc.call('bdev_get_bdevs', { name })) as Array<{ num_blocks: number }>)[0].num_blocks;

  for (const driver of ['aio', 'uring'] as const) {
    it(`bdev_${driver}_rescan picks up a grown file, and a shrunk one while nobody has it open`, async () => {
      const f = file(`${driver}.img`, 1 << 20);
      await spdk.rpc.call(`bdev_${driver}_create`, { name: 'F0', filename: f, block_size: 4096 });
      expect(await blocks('F0')).to.equal(256);
      fs.truncateSync(f, 2 << 20);
      expect(await spdk.rpc.call(`bdev_${driver}_rescan`, { name: 'F0' })).to.equal(true);
      expect(await blocks('F0')).to.equal(512);
      // Open: shrinking is refused (spdk_bdev_notify_blockcnt_change) and nothing changes.
      const h = await spdk.bdev.open('F0');
      fs.truncateSync(f, 1 << 20);
      expect(await rpcError(spdk.rpc.call(`bdev_${driver}_rescan`, { name: 'F0' }))).to.deep.equal({ code: -16, message: 'Device or resource busy' });
      expect(await blocks('F0')).to.equal(512);
      await h.close();
      expect(await spdk.rpc.call(`bdev_${driver}_rescan`, { name: 'F0' })).to.equal(true);
      expect(await blocks('F0')).to.equal(256);
      // Errors: unknown name, another module's bdev, bad params.
      await spdk.rpc.call('bdev_malloc_create', { name: 'M0', num_blocks: 64, block_size: 512 });
      expect(await rpcError(spdk.rpc.call(`bdev_${driver}_rescan`, { name: 'nope' }))).to.deep.equal({ code: -19, message: 'No such device' });
      expect(await rpcError(spdk.rpc.call(`bdev_${driver}_rescan`, { name: 'M0' }))).to.deep.equal({ code: -19, message: 'No such device' });
      expect(await rpcError(spdk.rpc.call(`bdev_${driver}_rescan`, { name: 'F0', x: 1 }))).to.deep.equal({ code: -32603, message: 'spdk_json_decode_object failed' });
    });
  }

  it('an lvstore grows into a rescanned file with bdev_lvol_grow_lvstore', async () => {
    const f = file('lvs.img', 8 << 20);
    await spdk.rpc.call('bdev_aio_create', { name: 'F0', filename: f, block_size: 4096 });
    await spdk.rpc.call('bdev_lvol_create_lvstore', { bdev_name: 'F0', lvs_name: 'lvs', cluster_sz: 1 << 20 });
    const before = ((await spdk.rpc.call('bdev_lvol_get_lvstores')) as Array<{ total_data_clusters: number }>)[0].total_data_clusters;
    fs.truncateSync(f, 16 << 20);
    await spdk.rpc.call('bdev_aio_rescan', { name: 'F0' });
    await spdk.rpc.call('bdev_lvol_grow_lvstore', { lvs_name: 'lvs' });
    const after = ((await spdk.rpc.call('bdev_lvol_get_lvstores')) as Array<{ total_data_clusters: number }>)[0].total_data_clusters;
    expect(after).to.equal(before + 8);
    // The claimed base cannot shrink under the store.
    fs.truncateSync(f, 8 << 20);
    expect(await rpcError(spdk.rpc.call('bdev_aio_rescan', { name: 'F0' }))).to.deep.equal({ code: -16, message: 'Device or resource busy' });
  });
});
