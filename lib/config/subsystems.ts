import type { Dispatcher } from '../rpc/dispatcher';
import { JsonRpcError } from '../rpc/errors';
import { tryDecodeObject } from '../rpc/decode';

/** One entry of an SPDK JSON config: a method call. */
export interface ConfigEntry {
  method: string;
  params?: Record<string, unknown>;
}

/** SPDK's JSON config format (save_config / --json). */
export interface SpdkJsonConfig {
  subsystems: Array<{ subsystem: string; config: ConfigEntry[] | null }>;
}

interface Subsystem {
  name: string;
  dependsOn: string[];
  /** The calls that recreate the subsystem's current state, or null when it has none. */
  writeConfig: (() => ConfigEntry[]) | null;
}

/**
 * The engine's subsystems, in initialisation order (SPDK's spdk_subsystem list): what
 * framework_get_subsystems lists and framework_get_config / save_config write.
 */
export class SubsystemRegistry {
  private readonly subsystems: Subsystem[] = [];

  register(name: string, dependsOn: string[], writeConfig: (() => ConfigEntry[]) | null): void {
    this.subsystems.push({ name, dependsOn, writeConfig });
  }

  /** SPDK's save_config result for every subsystem. */
  saveConfig(): SpdkJsonConfig {
    return { subsystems: this.subsystems.map((s) => ({ subsystem: s.name, config: s.writeConfig ? s.writeConfig() : null })) };
  }

  /**
   * framework_get_subsystems and framework_get_config (SPDK lib/init/subsystem_rpc.c, v25.09),
   * which SPDK's rpc.py save_config uses.
   */
  registerMethods(dispatcher: Dispatcher): void {
    dispatcher.register(
      'framework_get_subsystems',
      (params) => {
        if (params !== undefined) throw JsonRpcError.invalidParams("'framework_get_subsystems' requires no arguments");
        return this.subsystems.map((s) => ({ subsystem: s.name, depends_on: [...s.dependsOn] }));
      },
      { states: ['runtime'] },
    );
    dispatcher.register(
      'framework_get_config',
      (params) => {
        const req = tryDecodeObject(params, { name: { type: 'string' } } as const);
        if (req === undefined) throw JsonRpcError.invalidParams('Invalid arguments');
        const s = this.subsystems.find((x) => x.name === req.name);
        if (!s) throw JsonRpcError.invalidParams(`Subsystem '${req.name}' not found`);
        return s.writeConfig ? s.writeConfig() : null;
      },
      { states: ['runtime'] },
    );
  }
}
