/**
 * Loading the engines' addons and choosing one (DESIGN.md §1).
 *
 * The builtin addon is always built. The libspdk addon exists only when `npm install` found
 * SPDK; a process never loads both (DPDK's environment is process-global).
 */
import * as path from 'node:path';
import * as fs from 'node:fs';
import { SpdkError } from '../errors';
import type { BuiltinAddon } from './native';

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

/** Why the libspdk engine is not available here (undefined when it is). */
export function libspdkUnavailableReason(): string | undefined {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const probe = require(path.join(root, 'spdk', 'probe.js')) as { hasSources: boolean; probe: () => { found: boolean; why?: string } };
  if (!probe.hasSources) return 'this version of spdk-node has no libspdk engine yet';
  if (!addonPath('spdk_libspdk')) {
    const p = probe.probe();
    return `the libspdk addon was not built${p.found ? ' (SPDK is installed now: reinstall spdk-node)' : `: ${p.why}`}`;
  }
  return undefined;
}

/** Resolves `auto` to an engine name, explaining an impossible explicit choice. */
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
