#!/usr/bin/env node
'use strict';
// Finds an installed SPDK for the libspdk engine's addon (DESIGN.md §1, §4).
//
// Looks, in order, at SPDK_DIR (an SPDK build or install prefix: its lib/pkgconfig or
// build/lib/pkgconfig is added to PKG_CONFIG_PATH) and at pkg-config's default search path, for
// the modules the libspdk engine links. Used by binding.gyp and by `npm install`:
//   --found    prints "true" or "false" (false also when the SPDK found is of an unsupported version)
//   --cflags   compiler flags        --libs   linker flags (whole SPDK module set, no-as-needed, rpath)
//   --version  the SPDK version found
//   --report   one human line for the install log; exits 1 (failing `npm install`) when
//              SPDK_NODE_REQUIRE_LIBSPDK=1 and the libspdk engine cannot be built
//
// An SPDK outside SUPPORTED is not linked: the libspdk engine is written against one SPDK API and
// ABI (spdk_app_opts is a packed struct checked by size), so a mismatch would break at run time.
// The install goes on with the builtin engine and the report line says which SPDK was found and
// which versions are supported; `Spdk.start({ engine: 'libspdk' })` later gives the same reason.
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

// The libspdk engine is written against SPDK v25.09 (see spdk/SUPPORTED.md).
const SUPPORTED = { min: '25.05', max: '25.09' };
// What the engine links. Shared libraries: every module is a DT_NEEDED entry (--no-as-needed),
// since bdev modules, socket implementations and event subsystems register themselves in
// constructors and nothing references them by symbol.
const MODULES = [
  // the application framework and the event subsystems spdk_tgt initialises
  'spdk_event', 'spdk_event_bdev', 'spdk_event_accel', 'spdk_event_iobuf', 'spdk_event_sock',
  'spdk_event_vmd', 'spdk_event_keyring', 'spdk_event_scheduler', 'spdk_event_nvmf',
  // bdev modules
  'spdk_bdev_malloc', 'spdk_bdev_lvol', 'spdk_bdev_aio', 'spdk_bdev_nvme', 'spdk_bdev_uring',
  // socket implementations, keyring (NVMe/TCP TLS keys)
  'spdk_sock_posix', 'spdk_sock_uring', 'spdk_keyring_file',
  // libraries the engine calls
  'spdk_env_dpdk', 'spdk_env_dpdk_rpc', 'spdk_bdev', 'spdk_lvol', 'spdk_nvme', 'spdk_nvmf',
  'spdk_jsonrpc', 'spdk_rpc', 'spdk_log', 'spdk_thread',
];
// The system libraries SPDK's shared libraries use without naming them (liburing, libaio, uuid,
// OpenSSL, keyutils, ...): spdk_syslibs lists them as Libs.private, so they come from --static.
const SYSLIBS = 'spdk_syslibs';

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
  const version = releaseVersion();
  if (version === null) return { found: false, why: 'SPDK found by pkg-config, but not its spdk/version.h' };
  if (!supported(version)) {
    return {
      found: false,
      version,
      why: `SPDK ${version} found, but this spdk-node's libspdk engine supports SPDK ${SUPPORTED.min} to ${SUPPORTED.max}`,
    };
  }
  const missing = [...MODULES, SYSLIBS].filter((m) => pkgConfig(['--exists', m]) === null);
  if (missing.length) return { found: false, version, why: `SPDK ${version} found but missing ${missing.join(', ')}` };
  return { found: true, version };
}

/** "25.09.0" within SUPPORTED (major.minor compared as numbers). */
function supported(version) {
  const key = (v) => v.split('.').slice(0, 2).map(Number).reduce((a, n) => a * 100 + n, 0);
  return key(version) >= key(SUPPORTED.min) && key(version) <= key(SUPPORTED.max);
}

/** Linker flags: the modules, kept whether referenced or not, and an rpath to their directories. */
function libs() {
  const flags = pkgConfig(['--libs', ...MODULES]) || '';
  const sys = pkgConfig(['--libs', '--static', SYSLIBS]) || '';
  const dirs = [...new Set(flags.split(/\s+/).filter((f) => f.startsWith('-L')).map((f) => f.slice(2)))];
  const rpath = dirs.map((d) => `-Wl,-rpath,${d}`).join(' ');
  return `-Wl,--no-as-needed ${flags} ${sys} -Wl,--as-needed ${rpath}`.replace(/\s+/g, ' ').trim();
}

// The libspdk addon's sources (absent from trees before the engine existed).
const hasSources = fs.existsSync(path.join(__dirname, '..', 'native', 'libspdk', 'addon.cc'));

function main() {
  const arg = process.argv[2];
  const p = probe();
  if (arg === '--found') {
    process.stdout.write(p.found && hasSources ? 'true' : 'false');
  } else if (arg === '--cflags') {
    process.stdout.write(p.found ? pkgConfig(['--cflags', ...MODULES]) : '');
  } else if (arg === '--libs') {
    process.stdout.write(p.found ? libs() : '');
  } else if (arg === '--version') {
    process.stdout.write(p.found ? p.version : '');
  } else {
    // One line in the install log; a failure only when asked for (the builtin engine always builds).
    if (p.found && hasSources) {
      console.log(`spdk-node: SPDK ${p.version} found; building the libspdk engine too (supported: ${SUPPORTED.min} to ${SUPPORTED.max})`);
      return;
    }
    const why = p.found ? 'this copy of spdk-node has no libspdk sources' : p.why;
    if (process.env.SPDK_NODE_REQUIRE_LIBSPDK === '1') {
      console.error(`spdk-node: the libspdk engine cannot be built: ${why} (SPDK_NODE_REQUIRE_LIBSPDK=1)`);
      process.exitCode = 1;
      return;
    }
    console.log(`spdk-node: libspdk engine not built: ${why}. The builtin engine is built and used.`);
  }
}

module.exports = { probe, SUPPORTED, hasSources, supported };
if (require.main === module) main();
