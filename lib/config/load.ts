import * as fs from 'node:fs';
import type { Dispatcher } from '../rpc/dispatcher';
import { JsonRpcError } from '../rpc/errors';
import { SpdkError } from '../errors';
import type { ConfigEntry, SpdkJsonConfig } from './subsystems';

/**
 * Methods an SPDK-saved config may hold that have no meaning on the builtin engine: tuning of
 * SPDK libraries it does not have (iobuf pools, socket implementations, accel, VMD, the
 * scheduler, bdev_io pools). They are accepted with one warning line each. Anything else the
 * engine does not implement (a bdev_nvme controller, an nvmf subsystem, ...) fails the load: it
 * would be silently wrong to start without it.
 */
const IGNORED: Record<string, string> = {
  bdev_set_options: 'bdev_io pools and caches are an SPDK bdev-layer setting',
  bdev_nvme_set_options: 'the NVMe bdev module is not part of the builtin engine',
  bdev_nvme_set_hotplug: 'the NVMe bdev module is not part of the builtin engine',
  bdev_raid_set_options: 'the RAID bdev module is not part of the builtin engine',
  bdev_iscsi_set_options: 'the iSCSI bdev module is not part of the builtin engine',
  iobuf_set_options: 'iobuf buffer pools are an SPDK library setting',
  iobuf_create_pool: 'iobuf buffer pools are an SPDK library setting',
  sock_set_default_impl: 'socket implementations are an SPDK library setting',
  sock_impl_set_options: 'socket implementations are an SPDK library setting',
  accel_set_options: 'the accel framework is not part of the builtin engine',
  accel_assign_opc: 'the accel framework is not part of the builtin engine',
  accel_crypto_key_create: 'the accel framework is not part of the builtin engine',
  vmd_enable: 'VMD device discovery is not part of the builtin engine',
  vmd_rescan: 'VMD device discovery is not part of the builtin engine',
  framework_set_scheduler: 'the builtin engine has no reactor scheduler',
  scheduler_set_options: 'the builtin engine has no reactor scheduler',
  keyring_file_add_key: 'the keyring is not part of the builtin engine',
  fsdev_set_opts: 'the fsdev layer is not part of the builtin engine',
  iscsi_set_options: 'the iSCSI target is not part of the builtin engine',
  keyring_set_options: 'the keyring is not part of the builtin engine',
};

/** Reads and parses a config file, with errors that name the file. */
export function readConfigFile(file: string): SpdkJsonConfig {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new SpdkError(`config: cannot read ${file}: ${(e as Error).message}`, { code: 'ERR_CONFIG', errno: (e as { errno?: number }).errno ? Math.abs((e as { errno: number }).errno) : 0, op: 'config.load' });
  }
  try {
    return JSON.parse(text) as SpdkJsonConfig;
  } catch (e) {
    throw configError(`${file} is not valid JSON: ${(e as Error).message}`);
  }
}

function configError(message: string): SpdkError {
  return new SpdkError(`config: ${message}`, { code: 'ERR_CONFIG', errno: 22, op: 'config.load' });
}

function describe(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v;
}

/** Checks the shape of the whole config before anything is applied. */
export function validateConfig(config: unknown): SpdkJsonConfig {
  if (config === null || typeof config !== 'object' || Array.isArray(config)) throw configError(`the config must be a JSON object, not ${describe(config)}`);
  const subsystems = (config as { subsystems?: unknown }).subsystems;
  if (!Array.isArray(subsystems)) throw configError(`"subsystems" must be an array, not ${describe(subsystems)}`);
  subsystems.forEach((s, i) => {
    if (s === null || typeof s !== 'object' || Array.isArray(s)) throw configError(`subsystems[${i}] must be an object`);
    const { subsystem, config: entries } = s as { subsystem?: unknown; config?: unknown };
    if (typeof subsystem !== 'string') throw configError(`subsystems[${i}].subsystem must be a string`);
    if (entries === null || entries === undefined) return;
    if (!Array.isArray(entries)) throw configError(`subsystem '${subsystem}': "config" must be an array or null`);
    entries.forEach((e, j) => {
      const where = `subsystem '${subsystem}', entry ${j}`;
      if (e === null || typeof e !== 'object' || Array.isArray(e)) throw configError(`${where}: must be an object`);
      const { method, params } = e as { method?: unknown; params?: unknown };
      if (typeof method !== 'string') throw configError(`${where}: "method" must be a string`);
      if (params !== undefined && (params === null || typeof params !== 'object' || Array.isArray(params))) {
        throw configError(`${where} (${method}): "params" must be an object`);
      }
    });
  });
  return config as SpdkJsonConfig;
}

export interface LoadOptions {
  /** Where warnings go (one line each); default console.warn. */
  warn?: (line: string) => void;
}

/**
 * Applies an SPDK JSON config through the dispatcher, as SPDK's app does at start-up
 * (lib/init/json_config.c): entries allowed in the 'startup' state run first, in order; then the
 * framework initialises; then every other entry, in order. The dispatcher must be in the startup
 * state; it is in the runtime state afterwards.
 *
 * Before anything runs, the whole config is checked: its shape, and that every method is either
 * implemented or known to be meaningless here (those are skipped with a warning). A call that
 * fails stops the load with an error naming the subsystem, the entry, the method and, where the
 * decoder can tell, the parameter; the caller then tears the engine down, so nothing is left
 * half-created.
 */
export async function applyConfig(dispatcher: Dispatcher, config: unknown, opts: LoadOptions = {}): Promise<void> {
  const warn = opts.warn ?? ((l: string) => console.warn(l));
  const cfg = validateConfig(config);
  const plan: Array<{ subsystem: string; index: number; entry: ConfigEntry }> = [];
  for (const s of cfg.subsystems) {
    (s.config ?? []).forEach((entry, index) => {
      if (dispatcher.has(entry.method)) {
        plan.push({ subsystem: s.subsystem, index, entry });
      } else if (IGNORED[entry.method] !== undefined) {
        warn(`spdk-node: config: ignoring ${s.subsystem}/${entry.method}: ${IGNORED[entry.method]}`);
      } else {
        throw configError(`subsystem '${s.subsystem}', entry ${index}: method '${entry.method}' is not supported by this engine`);
      }
    });
  }
  const run = async (p: (typeof plan)[number]): Promise<void> => {
    try {
      await dispatcher.call(p.entry.method, p.entry.params);
    } catch (e) {
      const err = e instanceof JsonRpcError ? e : undefined;
      const detail = (e as { detail?: string }).detail;
      const what = err ? `${err.message} (code ${err.code})` : String(e);
      throw configError(
        `subsystem '${p.subsystem}', entry ${p.index} (${p.entry.method}): ${what}` +
          (detail ? `: ${detail}` : '') +
          `; params ${JSON.stringify(p.entry.params ?? null)}`,
      );
    }
  };
  const startup = plan.filter((p) => dispatcher.allowedIn(p.entry.method, 'startup'));
  for (const p of startup) await run(p);
  dispatcher.setState('runtime');
  for (const p of plan) if (!startup.includes(p)) await run(p);
}
