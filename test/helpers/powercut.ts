import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Spdk } from '../../lib';
import { tempDir } from './env';

/**
 * Rebuilding what a disk holds after a simulated power cut, from the write/flush log of the
 * test-only recording bdev (native/builtin/bdev/record.*).
 *
 * Model: a write is durable once a flush has completed after it. At a cut after event N, the
 * disk holds every write that a flush before N made durable, plus, for each write still
 * volatile, one of: nothing (dropped), all of it, or a torn prefix of its 512-byte sectors.
 */
export interface RecordedEvent {
  kind: 'write' | 'flush' | 'zero';
  offset: number;
  length: number;
  data?: Uint8Array;
}

export type VolatileFate = 'drop' | 'keep' | 'tear';

function apply(image: Uint8Array, e: RecordedEvent, bytes = e.length): void {
  if (e.kind === 'write') image.set((e.data as Uint8Array).subarray(0, bytes), e.offset);
  else if (e.kind === 'zero') image.fill(0, e.offset, e.offset + bytes);
}

/** Deterministic xorshift32 so a failing case can be replayed from its seed. */
export function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 4294967296;
  };
}

/**
 * The image after a cut following the first `n` events of `log`, starting from `initial`.
 * `fate` decides what happens to each write that no flush had covered.
 */
export function imageAfterCut(initial: Uint8Array, log: RecordedEvent[], n: number, fate: (i: number) => VolatileFate, random: () => number): Uint8Array {
  const image = Uint8Array.from(initial);
  let lastFlush = -1;
  for (let i = 0; i < n; i++) if (log[i].kind === 'flush') lastFlush = i;
  for (let i = 0; i < n; i++) {
    const e = log[i];
    if (e.kind === 'flush') continue;
    if (i < lastFlush) {
      apply(image, e);
      continue;
    }
    const f = fate(i);
    if (f === 'keep') apply(image, e);
    else if (f === 'tear') {
      const sectors = Math.floor(e.length / 512);
      apply(image, e, Math.floor(random() * sectors) * 512);
    }
  }
  return image;
}

/** What the store looks like through the RPCs: the part every operation must change atomically. */
interface StoreState {
  present: boolean;
  lvols: string[]; // "alias size thin" per lvol, sorted
  free?: number;
  total?: number;
}

const CLUSTER = 64 * 1024;
const BLOCKS = 4096; // 16 MiB of 4 KiB blocks

async function observe(spdk: Spdk): Promise<StoreState> {
  const stores = (await spdk.rpc.call('bdev_lvol_get_lvstores')) as Array<{ uuid: string; free_clusters: number; total_data_clusters: number }>;
  if (stores.length === 0) return { present: false, lvols: [] };
  const lvols = (await spdk.rpc.call('bdev_lvol_get_lvols', { lvs_uuid: stores[0].uuid })) as Array<{ name: string; num_allocated_clusters: number; is_thin_provisioned: boolean; is_read_only?: boolean; alias: string }>;
  const bdevs = (await spdk.rpc.call('bdev_get_bdevs')) as Array<{ name: string; aliases: string[]; num_blocks: number; block_size: number }>;
  const size = (alias: string): number => {
    const b = bdevs.find((x) => x.aliases.includes(alias));
    return b ? b.num_blocks * b.block_size : -1;
  };
  return {
    present: true,
    lvols: lvols.map((l) => `${l.alias} ${size(l.alias)} ${l.is_thin_provisioned}`).sort(),
    free: stores[0].free_clusters,
    total: stores[0].total_data_clusters,
  };
}

/**
 * Power cut after every event of a run of metadata operations: the store reopens to the state
 * before or after each operation in flight, never between, and every acknowledged operation is
 * there. `rounds` random fates per cut point (drop / keep / tear of each volatile write).
 */
export async function powerCutCampaign(rounds: number, seed: number, log: (s: string) => void = () => {}): Promise<{ cuts: number; events: number }> {
  const tmp = tempDir();
  const spdk = await Spdk.start({ engine: 'builtin', cores: [0], warn: () => {} });
  try {
    const native = spdk.nativeEngine as unknown as {
      createRecordBdev(name: string, numBlocks: number, blockSize: number): unknown;
      takeRecordLog(name: string): RecordedEvent[];
    };
    native.createRecordBdev('R0', BLOCKS, 4096);
    const events: RecordedEvent[] = [];
    // acks[i] = number of events when operation i was answered; states[i] = the state after it.
    const acks: number[] = [];
    const states: StoreState[] = [{ present: false, lvols: [] }];
    const step = async (what: string, fn: () => Promise<unknown>): Promise<void> => {
      await fn();
      events.push(...native.takeRecordLog('R0'));
      acks.push(events.length);
      states.push(await observe(spdk));
      log(`${what}: ${events.length} events`);
    };
    await step('create store', () => spdk.rpc.call('bdev_lvol_create_lvstore', { bdev_name: 'R0', lvs_name: 'lvs', cluster_sz: CLUSTER }));
    await step('thin a', () => spdk.rpc.call('bdev_lvol_create', { lvs_name: 'lvs', lvol_name: 'a', size_in_mib: 2, thin_provision: true }));
    await step('thick b', () => spdk.rpc.call('bdev_lvol_create', { lvs_name: 'lvs', lvol_name: 'b', size_in_mib: 1 }));
    await step('resize a', () => spdk.rpc.call('bdev_lvol_resize', { name: 'lvs/a', size_in_mib: 3 }));
    await step('rename b', () => spdk.rpc.call('bdev_lvol_rename', { old_name: 'lvs/b', new_name: 'c' }));
    await step('thin d', () => spdk.rpc.call('bdev_lvol_create', { lvs_name: 'lvs', lvol_name: 'd', size_in_mib: 1, thin_provision: true }));
    await step('delete c', () => spdk.rpc.call('bdev_lvol_delete', { name: 'lvs/c' }));
    await step('shrink a', () => spdk.rpc.call('bdev_lvol_resize', { name: 'lvs/a', size_in_mib: 1 }));
    await step('read-only d', () => spdk.rpc.call('bdev_lvol_set_read_only', { name: 'lvs/d' }));
    // Writes that allocate clusters of a thin lvol (across a cluster boundary), then a flush:
    // the allocation reaches disk with the flush's commit, so free_clusters changes atomically.
    await step('allocating writes + flush on a', async () => {
      const bdev = await spdk.bdev.open('lvs/a');
      const buf = spdk.allocBuffer(8 * 4096);
      buf.bytes.fill(0xa5);
      await bdev.write(buf, { offsetBlocks: CLUSTER / 4096 - 4, numBlocks: 8 });
      await bdev.flush();
      await bdev.close();
      buf.free();
    });
    await step('delete a', () => spdk.rpc.call('bdev_lvol_delete', { name: 'lvs/a' }));

    // Unload the recorded store (deleting its base bdev writes nothing) so each rebuilt image
    // tastes as the only store with that name and UUID.
    (spdk.nativeEngine as unknown as { deleteBdev(n: string, d: string): void }).deleteBdev('R0', 'test_record');
    const random = rng(seed);
    const fates: VolatileFate[] = ['drop', 'keep', 'tear'];
    const initial = new Uint8Array(BLOCKS * 4096);
    const image = path.join(tmp.dir, 'cut.img');
    let cuts = 0;
    for (let n = 0; n <= events.length; n++) {
      // Operation k is the last one answered before the cut; k+1 may or may not have landed.
      let k = 0;
      while (k < acks.length && acks[k] <= n) k++;
      const allowed = [states[k], states[Math.min(k + 1, states.length - 1)]].map((s) => JSON.stringify(s));
      for (let r = 0; r < rounds; r++) {
        const fateOf = (): VolatileFate => fates[Math.floor(random() * 3)];
        fs.writeFileSync(image, imageAfterCut(initial, events, n, fateOf, random));
        await spdk.rpc.call('bdev_aio_create', { name: 'cut', filename: image, block_size: 4096 });
        const seen = JSON.stringify(await observe(spdk));
        await spdk.rpc.call('bdev_aio_delete', { name: 'cut' });
        expect(allowed, `cut after event ${n}/${events.length} (round ${r}, seed ${seed})`).to.include(seen);
        cuts++;
      }
    }
    return { cuts, events: events.length };
  } finally {
    await spdk.stop();
    tmp.cleanup();
  }
}

