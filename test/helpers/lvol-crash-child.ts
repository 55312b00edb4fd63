// Run by the lvol crash tests in a child process that gets SIGKILLed at a random moment: opens
// (or creates) a file-backed lvstore and does random lvol operations and flushed writes forever,
// announcing each on stdout before it starts ("begin", "write") and after it was answered
// ("ack", "data").
import { Spdk } from '../../lib';
import { fillPattern } from './env';

type Model = Record<string, { mib: number; thin: boolean }>;

function say(o: unknown): void {
  process.stdout.write(JSON.stringify(o) + '\n');
}

async function main(file: string, seed: number): Promise<void> {
  let x = seed >>> 0 || 1;
  const rand = (n: number): number => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % n;
  };
  const spdk = await Spdk.start({ engine: 'builtin', cores: [0, 1] });
  await spdk.rpc.call('bdev_aio_create', { name: 'base', filename: file, block_size: 4096 });
  let stores = (await spdk.rpc.call('bdev_lvol_get_lvstores')) as Array<{ uuid: string }>;
  if (stores.length === 0) {
    await spdk.rpc.call('bdev_lvol_create_lvstore', { bdev_name: 'base', lvs_name: 'lvs', cluster_sz: 65536 });
    stores = (await spdk.rpc.call('bdev_lvol_get_lvstores')) as Array<{ uuid: string }>;
  }
  const lvols = (await spdk.rpc.call('bdev_lvol_get_lvols', { lvs_uuid: stores[0].uuid })) as Array<{ alias: string; is_thin_provisioned: boolean; uuid: string }>;
  const bdevs = (await spdk.rpc.call('bdev_get_bdevs')) as Array<{ name: string; num_blocks: number; block_size: number }>;
  const model: Model = {};
  for (const l of lvols) {
    const b = bdevs.find((z) => z.name === l.uuid);
    model[l.alias] = { mib: b ? (b.num_blocks * b.block_size) / 2 ** 20 : 0, thin: l.is_thin_provisioned };
  }
  say({ ready: model });
  let n = 0;
  for (;;) {
    const names = Object.keys(model);
    const pick = names.length ? names[rand(names.length)] : undefined;
    const op = names.length < 2 ? 0 : rand(5);
    if (op === 0 && names.length < 12) {
      const alias = `lvs/v${seed}_${n++}`;
      const mib = 1 + rand(3);
      const thin = rand(2) === 0;
      say({ begin: 'create', after: { ...model, [alias]: { mib, thin } } });
      await spdk.rpc.call('bdev_lvol_create', { lvs_name: 'lvs', lvol_name: alias.slice(4), size_in_mib: mib, thin_provision: thin });
      model[alias] = { mib, thin };
      say({ ack: model });
    } else if (op === 1 && pick) {
      const after = { ...model };
      delete after[pick];
      say({ begin: 'delete', after });
      await spdk.rpc.call('bdev_lvol_delete', { name: pick });
      delete model[pick];
      say({ ack: model });
    } else if (op === 2 && pick) {
      const mib = 1 + rand(4);
      say({ begin: 'resize', after: { ...model, [pick]: { ...model[pick], mib } } });
      await spdk.rpc.call('bdev_lvol_resize', { name: pick, size_in_mib: mib });
      model[pick].mib = mib;
      say({ ack: model });
    } else if (op === 3 && pick) {
      const to = `lvs/r${seed}_${n++}`;
      const after = { ...model, [to]: model[pick] };
      delete after[pick];
      say({ begin: 'rename', from: pick, to, after });
      await spdk.rpc.call('bdev_lvol_rename', { old_name: pick, new_name: to.slice(4) });
      model[to] = model[pick];
      delete model[pick];
      say({ ack: model });
    } else if (pick) {
      // A flushed write: its data must survive.
      const bdev = await spdk.bdev.open(pick);
      const blocks = Math.min(16, bdev.numBlocks);
      const offset = rand(bdev.numBlocks - blocks + 1);
      const pat = seed * 1000 + n++;
      const buf = spdk.allocBuffer(blocks * 4096);
      fillPattern(buf.bytes, pat);
      // Announced before it starts: if the kill comes while it is in flight, its blocks may hold
      // either what was there or this pattern.
      say({ write: { alias: pick, offset, blocks, pat } });
      await bdev.write(buf, { offsetBlocks: offset, numBlocks: blocks });
      await bdev.flush();
      await bdev.close();
      buf.free();
      say({ data: { alias: pick, offset, blocks, pat } });
    }
  }
}

main(process.argv[2], Number(process.argv[3])).catch((e) => {
  say({ error: String(e && (e as Error).stack) });
  process.exit(3);
});
