import type { BdevBackend, BdevInfo } from '../../engine/types';
import type { ConfigEntry } from '../../config/subsystems';
import { lvolBdevConfig } from './lvol-config';

/**
 * The bdev subsystem's part of save_config: one create call per bdev, in creation order, with the
 * parameters SPDK v25.09's modules write (bdev_malloc_write_json_config,
 * bdev_aio_write_json_config, bdev_uring_write_json_config), then bdev_wait_for_examine, which
 * SPDK always writes last. SPDK also writes bdev_set_options first; the builtin engine has no
 * such options, so it is left out (a config saved by SPDK that has it loads with a warning).
 * Lvols write nothing: they come back by tasting their store's base bdev (lvol-config.ts).
 */
export function bdevSubsystemConfig(backend: BdevBackend): ConfigEntry[] {
  const entries: ConfigEntry[] = [];
  for (const b of backend.listBdevs()) {
    const e = createCall(b);
    if (e) entries.push(e);
  }
  entries.push({ method: 'bdev_wait_for_examine' });
  return entries;
}

function createCall(b: BdevInfo): ConfigEntry | undefined {
  const ds = b.driverSpecific;
  switch (b.driver) {
    case 'malloc':
      return {
        method: 'bdev_malloc_create',
        params: {
          name: b.name,
          num_blocks: b.numBlocks,
          block_size: b.blockSize,
          physical_block_size: b.blockSize,
          uuid: b.uuid,
          optimal_io_boundary: 0,
          md_size: 0,
          dif_type: 0,
          dif_is_head_of_md: false,
          dif_pi_format: 0,
        },
      };
    case 'aio': {
      const params: Record<string, unknown> = { name: b.name };
      if (ds.block_size_override) params.block_size = b.blockSize;
      params.filename = ds.filename;
      params.readonly = ds.readonly;
      params.fallocate = ds.fallocate ?? false;
      params.uuid = b.uuid;
      return { method: 'bdev_aio_create', params };
    }
    case 'uring':
      return { method: 'bdev_uring_create', params: { name: b.name, block_size: b.blockSize, filename: ds.filename, uuid: b.uuid } };
    case 'lvol':
      return lvolBdevConfig(b);
    default:
      return undefined;
  }
}
