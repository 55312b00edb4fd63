import * as fs from 'node:fs';
import * as path from 'node:path';
import { tryDecodeObject } from '../decode';
import type { Dispatcher } from '../dispatcher';
import { JsonRpcError } from '../errors';

/** The SPDK release whose RPC behaviour spdk-node matches. */
export const SPDK_REFERENCE_VERSION = { major: 25, minor: 9, patch: 0 } as const;

export interface CoreMethodOptions {
  /** Engine name reported by spdk_get_version (default 'builtin'). */
  engine?: string;
  /** spdk-node's version (default: read from the package's package.json). */
  packageVersion?: string;
  /**
   * Runs subsystem initialisation for framework_start_init; the state becomes 'runtime' when it
   * resolves. Without it, framework_start_init only switches the state.
   */
  startInit?: () => Promise<void>;
}

const GET_METHODS_SCHEMA = {
  current: { type: 'bool', optional: true },
  include_aliases: { type: 'bool', optional: true },
} as const;

/**
 * Registers the generic methods of SPDK's lib/rpc/rpc.c and lib/event/app.c (v25.09):
 * rpc_get_methods, spdk_get_version, framework_wait_init and framework_start_init.
 */
export function registerCoreMethods(dispatcher: Dispatcher, opts: CoreMethodOptions = {}): void {
  const versionInfo = spdkVersion(opts.engine ?? 'builtin', opts.packageVersion ?? packageVersion());

  // rpc.c: params are optional; a bad params object is -32602 "Invalid parameters".
  dispatcher.register(
    'rpc_get_methods',
    (params) => {
      let req: { current?: boolean; include_aliases?: boolean } = {};
      if (params !== undefined) {
        const decoded = tryDecodeObject(params, GET_METHODS_SCHEMA);
        if (decoded === undefined) throw JsonRpcError.invalidParams();
        req = decoded;
      }
      return dispatcher.methodNames({ current: req.current, includeAliases: req.include_aliases });
    },
    { states: ['startup', 'runtime'] },
  );

  // rpc.c: any params at all (even {}) are refused.
  dispatcher.register(
    'spdk_get_version',
    (params) => {
      if (params !== undefined) throw JsonRpcError.invalidParams('spdk_get_version method requires no parameters');
      return versionInfo;
    },
    { states: ['startup', 'runtime'] },
  );

  // app.c: params are ignored; answers true once the framework is initialised.
  dispatcher.register(
    'framework_wait_init',
    async (_params, ctx) => {
      await dispatcher.waitForRuntime(ctx.signal);
      return true;
    },
    { states: ['startup', 'runtime'] },
  );

  // app.c: STARTUP only (in runtime the dispatcher answers -1 with SPDK's text).
  dispatcher.register(
    'framework_start_init',
    async (params) => {
      if (params !== undefined) throw JsonRpcError.invalidParams('framework_start_init requires no parameters');
      try {
        await opts.startInit?.();
      } catch {
        throw JsonRpcError.internal('framework_initialization failed');
      }
      dispatcher.setState('runtime');
      return true;
    },
    { states: ['startup'] },
  );
}

/**
 * spdk_get_version's result. SPDK builds `version` as "SPDK v" + major + "." + 2-digit minor
 * (+ "." + patch when non-zero) + suffix (+ " git sha1 ..." when built from git), and reports the
 * parts under `fields`. spdk-node reports the SPDK release whose RPC behaviour it matches as
 * major/minor/patch (25/9/0), and puts its own identity in `suffix`, so that the invariant
 * version === "SPDK v25.09" + suffix still holds and tools that read `fields` see v25.09:
 *   { "version": "SPDK v25.09 (spdk-node 0.1.0 builtin)",
 *     "fields": { "major": 25, "minor": 9, "patch": 0, "suffix": " (spdk-node 0.1.0 builtin)" } }
 * There is no `commit` field (SPDK writes one only when built from a git checkout).
 */
export function spdkVersion(
  engine: string,
  nodeVersion: string,
): { version: string; fields: { major: number; minor: number; patch: number; suffix: string } } {
  const { major, minor, patch } = SPDK_REFERENCE_VERSION;
  const suffix = ` (spdk-node ${nodeVersion} ${engine})`;
  const base = `SPDK v${major}.${String(minor).padStart(2, '0')}${patch !== 0 ? `.${patch}` : ''}`;
  return { version: base + suffix, fields: { major, minor, patch, suffix } };
}

/** The version in spdk-node's package.json, found by walking up from this file. */
function packageVersion(): string {
  let dir = __dirname;
  for (;;) {
    try {
      const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'spdk-node' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      // no package.json here
    }
    const parent = path.dirname(dir);
    if (parent === dir) return '0.0.0';
    dir = parent;
  }
}
