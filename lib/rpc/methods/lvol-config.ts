import type { BdevInfo } from '../../engine/types';
import type { ConfigEntry } from '../../config/subsystems';

/**
 * The lvol part of save_config, the SPDK way: nothing.
 *
 * SPDK v25.09 writes no call for an lvol store or an lvol (module/bdev/lvol/vbdev_lvol.c:
 * vbdev_lvol_write_config_json is empty, "lvol configuration is saved on physical device", and
 * the lvol bdev module has no config_json). A target started from the saved config gets its
 * stores and lvols back by tasting: the call that recreates the base bdev (bdev_aio_create,
 * bdev_uring_create, ...) makes the engine read the store's metadata from it and register every
 * lvol bdev again, with the same UUIDs, names and aliases; bdev_wait_for_examine, which the bdev
 * subsystem always writes last, returns once that is done. A store on a malloc bdev is gone
 * after a restart, as in SPDK.
 *
 * Writing bdev_lvol_create_lvstore / bdev_lvol_create calls here would be wrong twice over:
 * replayed on a tasted store they fail (the names exist), and on a blank base bdev they would
 * create empty lvols with new UUIDs in place of the data.
 */
export function lvolBdevConfig(_lvol: BdevInfo): ConfigEntry | undefined {
  return undefined;
}
