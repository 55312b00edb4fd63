#!/usr/bin/env node
'use strict';
// Finds an installed SPDK for the libspdk engine's addon (DESIGN.md §1, §4).
//
// Looks, in order, at SPDK_DIR (an SPDK build or install prefix: its lib/pkgconfig or
// build/lib/pkgconfig is added to PKG_CONFIG_PATH) and at pkg-config's default search path, for
// the modules the libspdk engine links. Used by binding.gyp and by `npm install`:
//   --found    prints "true" or "false"
//   --cflags   compiler flags        --libs   linker flags (whole SPDK module set, no-as-needed)
//   --version  the SPDK version found
//   --report   one human line for the install log
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

// The libspdk engine is written against SPDK v25.09 (see spdk/SUPPORTED.md).
const SUPPORTED = { min: '25.05', max: '25.09' };
const MODULES = ['spdk_nvme', 'spdk_env_dpdk', 'spdk_event', 'spdk_event_bdev', 'spdk_event_nvmf',
  'spdk_bdev', 'spdk_lvol', 'spdk_nvmf', 'spdk_jsonrpc', 'spdk_rpc'];

function pkgConfigEnv() {
  const env = { ...process.env };
  const dir = process.env.SPDK_DIR;
  if (dir) {
    const extra = ['lib/pkgconfig', 'build/lib/pkgconfig']
      .map((p) => path.join(dir, p)).filter((p) => fs.existsSync(p));
    env.PKG_CONFIG_PATH = [...extra, env.PKG_CONFIG_PATH].filter(Boolean).join(':');
  }
  return env;
}

function pkgConfig(args) {
  try {
    return execFileSync('pkg-config', args, { env: pkgConfigEnv(), stdio: ['ignore', 'pipe', 'ignore'] })
      .toString().trim();
  } catch {
    return null;
  }
}

// The .pc files carry library SO versions (spdk_nvme 16.0 in v25.09); the release is in
// spdk/version.h under the include directory pkg-config reports.
function releaseVersion() {
  const flags = pkgConfig(['--cflags-only-I', 'spdk_nvme']) || '';
  const dirs = flags.split(/\s+/).filter((f) => f.startsWith('-I')).map((f) => f.slice(2));
  const prefix = pkgConfig(['--variable=prefix', 'spdk_nvme']);
  if (prefix) dirs.push(path.join(prefix, 'include'));
  for (const d of dirs) {
    try {
      const h = fs.readFileSync(path.join(d, 'spdk', 'version.h'), 'utf8');
      const get = (n) => (h.match(new RegExp(`#define SPDK_VERSION_${n}\\s+(\\d+)`)) || [])[1];
      if (get('MAJOR') !== undefined) return `${get('MAJOR')}.${String(get('MINOR')).padStart(2, '0')}.${get('PATCH') ?? 0}`;
    } catch {
      // try the next directory
    }
  }
  return null;
}

function probe() {
  if (process.env.SPDK_NODE_NO_LIBSPDK === '1') return { found: false, why: 'SPDK_NODE_NO_LIBSPDK=1' };
  if (pkgConfig(['--modversion', 'spdk_nvme']) === null) {
    return { found: false, why: 'no SPDK found by pkg-config (spdk_nvme.pc); set SPDK_DIR or PKG_CONFIG_PATH to use an installed SPDK' };
  }
  const version = releaseVersion() ?? 'of unknown version';
  const missing = MODULES.filter((m) => pkgConfig(['--exists', m]) === null);
  if (missing.length) return { found: false, why: `SPDK ${version} found but missing ${missing.join(', ')}` };
  return { found: true, version };
}

// The libspdk addon's sources arrive with the libspdk engine; until then it is never built.
const hasSources = fs.existsSync(path.join(__dirname, '..', 'native', 'libspdk', 'addon.cc'));

function main() {
  const arg = process.argv[2];
  const p = probe();
  if (arg === '--found') {
    process.stdout.write(p.found && hasSources ? 'true' : 'false');
  } else if (arg === '--cflags') {
    process.stdout.write(p.found ? pkgConfig(['--cflags', ...MODULES]) : '');
  } else if (arg === '--libs') {
    process.stdout.write(p.found ? `-Wl,--no-as-needed ${pkgConfig(['--libs', ...MODULES])} -Wl,--as-needed` : '');
  } else if (arg === '--version') {
    process.stdout.write(p.found ? p.version : '');
  } else {
    // One line in the install log, never a failure: the builtin engine always builds.
    if (p.found && hasSources) {
      console.log(`spdk-node: SPDK ${p.version} found; building the libspdk engine too (supported: ${SUPPORTED.min}..${SUPPORTED.max})`);
    } else if (p.found) {
      console.log(`spdk-node: SPDK ${p.version} found, but this version of spdk-node has no libspdk engine yet. The builtin engine is built and used.`);
    } else {
      console.log(`spdk-node: libspdk engine not built: ${p.why}. The builtin engine is built and used.`);
    }
  }
}

module.exports = { probe, SUPPORTED, hasSources };
if (require.main === module) main();
