/**
 * Loading the engines' addons and choosing one (DESIGN.md §1).
 *
 * The builtin addon is always built. The libspdk addon exists only when `npm install` found
 * SPDK; a process never loads both (DPDK's environment is process-global).
 */
import * as path from 'node:path';
import * as fs from 'node:fs';
import { SpdkError } from '../errors';
import type { BuiltinAddon, LibspdkAddon } from './native';

export type EngineName = 'builtin' | 'libspdk';
export type EngineChoice = EngineName | 'auto';

const root = path.resolve(__dirname, '..', '..', '..');

function addonPath(name: string): string | undefined {
  for (const dir of ['build/Release', 'build/Debug']) {
    const p = path.join(root, dir, `${name}.node`);
    if (fs.existsSync(p)) return p;
  }
  return undefined;
}

let builtin: BuiltinAddon | undefined;

/** Loads the builtin engine's addon, with an explanation instead of MODULE_NOT_FOUND. */
export function loadBuiltin(): BuiltinAddon {
  if (builtin) return builtin;
  const p = addonPath('spdk_builtin');
  if (!p) {
    throw new SpdkError(
      'spdk-node: the builtin engine addon is not built (build/Release/spdk_builtin.node missing).\n' +
        'Possible solutions:\n' +
        '- run `npm install` (or `npm run build`) in the spdk-node package; it needs python3, make and g++\n' +
        '- check the install log for a node-gyp error',
      { code: 'ERR_ADDON_MISSING', op: 'engine.load' },
    );
  }
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  builtin = require(p) as BuiltinAddon;
  builtin.setErrorClass(SpdkError);
  return builtin;
}

let libspdk: LibspdkAddon | undefined;

/**
 * Loads the libspdk engine's addon, turning a dlopen failure (an SPDK library or DPDK missing or
 * of another version than at build time) into an SpdkError that says what to do.
 */
export function loadLibspdk(): LibspdkAddon {
  if (libspdk) return libspdk;
  const reason = libspdkUnavailableReason();
  if (reason) throw new SpdkError(`engine 'libspdk' is unavailable: ${reason}`, { code: 'ERR_ENGINE_UNAVAILABLE', errno: 19, op: 'spdk.start' });
  const p = addonPath('spdk_libspdk') as string;
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    libspdk = require(p) as LibspdkAddon;
  } catch (e) {
    const msg = (e as Error).message.split('\n')[0];
    throw new SpdkError(
      `spdk-node: the libspdk engine's addon (${path.relative(root, p)}) does not load: ${msg}\n` +
        'It links the SPDK shared libraries (libspdk_*.so) and the DPDK (librte_*.so) that were installed when spdk-node was built.\n' +
        'Possible solutions:\n' +
        '- install SPDK again where it was (the addon looks in the directory pkg-config reported at build time), or point LD_LIBRARY_PATH at its lib directory\n' +
        '- if SPDK moved, was upgraded or rebuilt: set SPDK_DIR (or PKG_CONFIG_PATH) to it and rebuild spdk-node (`npm rebuild spdk-node`)\n' +
        "- 'undefined symbol' or a librte_* library missing: SPDK needs the DPDK it was built with (Debian: the libdpdk 22.11 packages)\n" +
        "- or run without SPDK: Spdk.start({ engine: 'builtin' })",
      { code: 'ERR_ADDON_LOAD', op: 'engine.load' },
    );
  }
  libspdk.setErrorClass(SpdkError);
  return libspdk;
}

/** Why the libspdk engine is not available here (undefined when it is). */
export function libspdkUnavailableReason(): string | undefined {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const probe = require(path.join(root, 'spdk', 'probe.js')) as { hasSources: boolean; probe: () => { found: boolean; why?: string } };
  if (!probe.hasSources) return 'this copy of spdk-node has no libspdk sources';
  if (!addonPath('spdk_libspdk')) {
    const p = probe.probe();
    return `the libspdk addon was not built${p.found ? ' (SPDK is installed now: reinstall spdk-node)' : `: ${p.why}`}`;
  }
  return undefined;
}

/**
 * Resolves a choice to the engine to try first, explaining an impossible explicit choice. `auto`
 * gives libspdk when its addon was built; Spdk.start() then falls back to builtin if the addon
 * does not load or SPDK does not start.
 */
export function chooseEngine(choice: EngineChoice): { engine: EngineName; why: string } {
  if (choice === 'builtin') return { engine: 'builtin', why: 'requested' };
  const reason = libspdkUnavailableReason();
  if (choice === 'libspdk') {
    if (reason) throw new SpdkError(`engine 'libspdk' is unavailable: ${reason}`, { code: 'ERR_ENGINE_UNAVAILABLE', errno: 19, op: 'spdk.start' });
    return { engine: 'libspdk', why: 'requested' };
  }
  if (reason) return { engine: 'builtin', why: `auto: libspdk unavailable (${reason})` };
  return { engine: 'libspdk', why: 'auto: SPDK found' };
}
