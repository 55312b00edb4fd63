import { expect } from 'chai';
import { ChildProcessWithoutNullStreams, execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { RpcClient } from '../lib/rpc/client';
import { fillPattern, tempDir, uniqueSocketPath } from './helpers/env';
import { FeatureId, freePort, LogId, NvmeTcpController } from './helpers/nvme-tcp-host';
import { requireLibspdk } from './helpers/spdk-install';
import { forEachEngine } from './helpers/engines';

/*
 * OpenStack Cinder's SPDK volume driver (python3-cinder: cinder.volume.drivers.spdk.SPDKDriver
 * with the spdk-nvmeof target helper), unchanged, against `spdk-node target`:
 *
 * - the target runs as an operator would run it for Cinder (docs/cinder.md): the shipped
 *   spdk/config/cinder.json (a file bdev, the TCP transport), an lvstore made once with
 *   bdev_lvol_create_lvstore, and the HTTP endpoint with a credentials file giving Cinder a view
 *   of the NVMe-oF subsystems; a CSI client's subsystem lives on the same target;
 * - test/helpers/cinder-driver.py loads a real cinder.conf with oslo.config, builds the driver as
 *   cinder-volume's manager does, and calls its public methods on Cinder's own versioned objects,
 *   one JSON line per call; every RPC the driver makes goes through python-requests over HTTP;
 * - this file checks the results, the target's state over the Unix socket, and the data through
 *   the exports with the project's NVMe/TCP host, connecting with the connection info the driver
 *   returned.
 *
 * Cinder's target_prefix here is the one its own unit tests use, nqn.2014-08.io.spdk: it sorts
 * before the discovery NQN, so against SPDK's listing order the driver would fail on the second
 * export; through the view it works.
 */

const GiB = 1024 ** 3;
const BLOCK = 4096;
const CINDER_PREFIX = 'nqn.2014-08.io.spdk';
const CINDER_VIEW = `${CINDER_PREFIX}:cnode`;
const CSI_VIEW = 'nqn.2020-04.io.spdk.csi:';
const CSI_NQN = `${CSI_VIEW}uuid:0a1b2c3d-0000-4000-8000-00000000c5a1`;
const DISCOVERY = 'nqn.2014-08.org.nvmexpress.discovery';
const USERS = {
  cinder: { user: 'cinder', password: 'cinder-secret-1f2e' },
  csi: { user: 'spdkcsiuser', password: 'spdkcsipass' },
  admin: { user: 'admin', password: 'admin-secret-9c8b' },
};
const CONNECTOR = { initiator: 'iqn.1993-08.org.debian:01:cinder-test', nqn: 'nqn.2014-08.org.nvmexpress:uuid:0a1b2c3d-0000-4000-8000-0000000000a1', host: 'cinder-test' };

// Cinder volume and snapshot ids (their names are volume-<id> and snapshot-<id>).
const V1 = '1b9e2c44-0001-4c2a-9d3e-000000000001';
const V2 = '1b9e2c44-0002-4c2a-9d3e-000000000002';
const V3 = '1b9e2c44-0003-4c2a-9d3e-000000000003';
const V4 = '1b9e2c44-0004-4c2a-9d3e-000000000004';
const V5 = '1b9e2c44-0005-4c2a-9d3e-000000000005';
const V6 = '1b9e2c44-0006-4c2a-9d3e-000000000006';
const V7 = '1b9e2c44-0007-4c2a-9d3e-000000000007';
const S1 = '5a7d0f31-0001-4b1c-8e2f-000000000001';

/** Where the tests write: LBAs (4 KiB blocks) at the start, across a cluster boundary, at the end of 1 GiB. */
const SPOTS = [0, 1020, GiB / BLOCK - 16];
const SPOT_BLOCKS = 16;
/** Past 1 GiB: what a volume grown to 2 GiB holds there. */
const HIGH_SPOT = (1.5 * GiB) / BLOCK;

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** A python interpreter that imports Cinder's SPDK driver, or undefined. */
function cinderPython(): string | undefined {
  // Debian's python3-cinder lives in the system interpreter's dist-packages; a python3 earlier
  // on PATH (pyenv, a venv) may not see it.
  for (const py of ['/usr/bin/python3', 'python3']) {
    try {
      execFileSync(py, ['-c', 'import cinder.volume.drivers.spdk, cinder.volume.targets.spdknvmf'], { stdio: 'ignore', timeout: 20000 });
      return py;
    } catch {
      // next
    }
  }
  return undefined;
}

/** A child process that answers one JSON line per line sent. */
class LineChild {
  private buf = '';
  private readonly lines: string[] = [];
  private waiter: (() => void) | undefined;
  private out = '';
  readonly exited: Promise<number | null>;

  constructor(readonly proc: ChildProcessWithoutNullStreams) {
    proc.stdout.on('data', (d: Buffer) => {
      this.buf += d.toString();
      let i;
      while ((i = this.buf.indexOf('\n')) >= 0) {
        this.lines.push(this.buf.slice(0, i));
        this.buf = this.buf.slice(i + 1);
      }
      this.waiter?.();
    });
    proc.stderr.on('data', (d: Buffer) => {
      this.out += d.toString();
    });
    this.exited = new Promise((resolve) =>
      proc.on('exit', (code) => {
        this.waiter?.();
        resolve(code);
      }),
    );
  }

  get stderr(): string {
    return this.out;
  }

  async line(timeoutMs = 60000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (this.lines.length === 0) {
      if (this.proc.exitCode !== null) throw new Error(`child exited (${this.proc.exitCode}):\n${this.out.slice(-3000)}`);
      if (Date.now() > deadline) throw new Error(`no answer in ${timeoutMs} ms:\n${this.out.slice(-3000)}`);
      await new Promise<void>((r) => {
        this.waiter = r;
        setTimeout(r, 100).unref();
      });
    }
    return this.lines.shift() as string;
  }

  /** Ends stdin (with `endInput`), then SIGTERM, then SIGKILL, by pid, until the process has exited. */
  async stop(endInput: boolean): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    const gone = (ms: number): Promise<boolean> => Promise.race([this.exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms).unref())]);
    this.proc.stdin.end();
    if (endInput && (await gone(3000))) return;
    this.proc.kill('SIGTERM');
    if (await gone(5000)) return;
    this.proc.kill('SIGKILL');
    await this.exited;
  }
}

function httpCall(port: number, who: keyof typeof USERS, method: string, params?: unknown): Promise<Json> {
  const u = USERS[who];
  const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method, ...(params === undefined ? {} : { params }) });
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, method: 'POST', path: '/', agent: false, headers: { authorization: 'Basic ' + Buffer.from(`${u.user}:${u.password}`).toString('base64'), 'content-length': Buffer.byteLength(body) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          try {
            resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')) as Json);
          } catch (e) {
            reject(e);
          }
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

function pattern(seed: number): Buffer {
  const b = Buffer.alloc(SPOT_BLOCKS * BLOCK);
  fillPattern(b, seed);
  return b;
}

forEachEngine((engine) =>
describe(`OpenStack Cinder SPDK driver against spdk-node target (${engine} engine)`, function () {
  this.timeout(60000);

  let python: string | undefined;
  let tmp: { dir: string; cleanup: () => void } | undefined;
  let target: LineChild | undefined;
  let driver: LineChild | undefined;
  /** The driver script's first line, once the driver is built and set up. */
  let ready: Json = {};
  let rpc: RpcClient | undefined;
  let httpPort = 0;
  let nvmfPort = 0;
  const hosts: NvmeTcpController[] = [];

  /** Runs one driver method; returns its result, or throws with the driver's error. */
  const drv = async (op: string, args: Json = {}): Promise<any> => {
    const reply = await drvReply(op, args);
    if (!reply.ok) throw new Error(`${op}: ${reply.error}: ${reply.message}\n${reply.trace}`);
    return reply.result;
  };
  const drvReply = async (op: string, args: Json = {}): Promise<Json> => {
    driver!.proc.stdin.write(JSON.stringify({ op, ...args }) + '\n');
    return JSON.parse(await driver!.line()) as Json;
  };
  const call = <T = any>(method: string, params?: unknown): Promise<T> => rpc!.call<T>(method, params);
  const bdev = async (name: string): Promise<Json> => (await call<Json[]>('bdev_get_bdevs', { name }))[0];
  const lvs = async (name = 'cinder'): Promise<Json> => (await call<Json[]>('bdev_lvol_get_lvstores', { lvs_name: name }))[0];
  const vol = (id: string, size?: number): Json => ({ id, ...(size === undefined ? {} : { size }) });

  /** Exports a volume through the driver, then connects to it with what initialize_connection returned. */
  const attach = async (id: string, size?: number): Promise<{ ctrl: NvmeTcpController; nsid: number; conn: Json }> => {
    await drv('create_export', { volume: vol(id, size), connector: CONNECTOR });
    const conn = await drv('initialize_connection', { volume: vol(id), connector: CONNECTOR });
    expect(conn.driver_volume_type).to.equal('nvmeof');
    const d = conn.data;
    const ctrl = await NvmeTcpController.connect({ host: d.target_portal, port: Number(d.target_port), subnqn: d.nqn, hostnqn: CONNECTOR.nqn } as never);
    hosts.push(ctrl);
    const nsid = Number(d.ns_id);
    await ctrl.identifyNamespace(nsid);
    return { ctrl, nsid, conn };
  };
  const sizeOf = async (ctrl: NvmeTcpController, nsid: number): Promise<number> => {
    const ns = await ctrl.identifyNamespace(nsid);
    return Number(ns.nsze) * ns.blockSize;
  };
  const readSpot = (ctrl: NvmeTcpController, nsid: number, lba: number): Promise<Buffer> => ctrl.read(nsid, lba, SPOT_BLOCKS);
  const expectSpots = async (ctrl: NvmeTcpController, nsid: number, seed: number): Promise<void> => {
    for (const [i, lba] of SPOTS.entries()) {
      expect((await readSpot(ctrl, nsid, lba)).equals(pattern(seed + i)), `LBA ${lba}: pattern ${seed + i}`).to.equal(true);
    }
  };
  const writeSpots = async (ctrl: NvmeTcpController, nsid: number, seed: number): Promise<void> => {
    for (const [i, lba] of SPOTS.entries()) await ctrl.write(nsid, lba, pattern(seed + i));
  };
  const zero = Buffer.alloc(SPOT_BLOCKS * BLOCK);

  before(async function () {
    if (engine === 'libspdk') requireLibspdk(this, 'Cinder on the libspdk engine');
    python = cinderPython();
    if (python === undefined) {
      if (process.env.CI === 'true') throw new Error('python3-cinder is not installed (apt-get install python3-cinder); with CI=true this is a failure');
      console.log('      (skipped: python3-cinder not installed; apt-get install python3-cinder)');
      this.skip();
    }
    tmp = tempDir('spdk-node-cinder-');
    const dir = tmp.dir;

    // The operator's set-up (docs/cinder.md): the shipped config with the file bdev's path set.
    const disk = path.join(dir, 'cinder0.img');
    fs.closeSync(fs.openSync(disk, 'w'));
    fs.truncateSync(disk, 16 * GiB); // sparse
    const config = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'spdk', 'config', 'cinder.json'), 'utf8'));
    const aio = config.subsystems.find((s: Json) => s.subsystem === 'bdev').config.find((e: Json) => e.method === 'bdev_aio_create');
    aio.params.filename = disk;
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
    fs.writeFileSync(path.join(dir, 'cinder.pw'), USERS.cinder.password + '\n', { mode: 0o600 });
    fs.writeFileSync(
      path.join(dir, 'http-credentials.json'),
      JSON.stringify({
        credentials: [
          { user: USERS.cinder.user, password_file: 'cinder.pw', nqn_prefix: CINDER_VIEW },
          { user: USERS.csi.user, password: USERS.csi.password, nqn_prefix: CSI_VIEW },
          { user: USERS.admin.user, password: USERS.admin.password },
        ],
      }),
      { mode: 0o600 },
    );
    const socket = uniqueSocketPath('cinder');
    const cli = path.join(__dirname, '..', 'lib', 'cli', 'main.js');
    const t = new LineChild(
      spawn(process.execPath, [cli, 'target', '--engine', engine, ...(engine === 'libspdk' ? ['--no-huge'] : []), '--cores', '0', '--rpc-socket', socket, '--config', path.join(dir, 'config.json'), '--http', '127.0.0.1:0', '--http-credentials', path.join(dir, 'http-credentials.json')], {
        stdio: ['pipe', 'pipe', 'pipe'],
      }),
    );
    target = t;
    for (;;) {
      const l = await t.line(20000);
      const m = /over HTTP on http:\/\/127\.0\.0\.1:(\d+)\//.exec(l);
      if (m) {
        httpPort = Number(m[1]);
        break;
      }
    }
    rpc = await RpcClient.connect(socket);
    // Made once by the operator (rpc.py bdev_lvol_create_lvstore cinder0 cinder); found again by
    // tasting at every later start. A second, small lvstore is a second Cinder pool.
    await call('bdev_lvol_create_lvstore', { bdev_name: 'cinder0', lvs_name: 'cinder' });
    await call('bdev_malloc_create', { name: 'small0', num_blocks: 32768, block_size: 4096 });
    await call('bdev_lvol_create_lvstore', { bdev_name: 'small0', lvs_name: 'small' });

    // A CSI client's export on the same target, through its own credential (spdk-csi's calls).
    nvmfPort = await freePort();
    const csiReply = await httpCall(httpPort, 'csi', 'bdev_lvol_create', { lvol_name: 'pvc-1', size: 16 * 1024 * 1024, lvs_name: 'small', clear_method: 'unmap', thin_provision: true });
    const csiLvol = csiReply.result;
    if (csiLvol === undefined) throw new Error(`bdev_lvol_create through the CSI credential: ${JSON.stringify(csiReply)}`);
    expect(csiLvol, 'bdev_lvol_create through the CSI credential').to.be.a('string');
    for (const [method, params] of [
      ['nvmf_create_subsystem', { nqn: CSI_NQN, allow_any_host: true, serial_number: 'spdkcsi-sn', model_number: csiLvol }],
      ['nvmf_subsystem_add_ns', { nqn: CSI_NQN, namespace: { bdev_name: csiLvol } }],
      ['nvmf_subsystem_add_listener', { nqn: CSI_NQN, listen_address: { trtype: 'TCP', adrfam: 'IPv4', traddr: '127.0.0.1', trsvcid: String(nvmfPort) } }],
    ] as const) {
      expect(await httpCall(httpPort, 'csi', method, params), method).to.have.property('result');
    }

    const conf = path.join(dir, 'cinder.conf');
    fs.writeFileSync(
      conf,
      [
        '[DEFAULT]',
        'enabled_backends = spdk-1',
        '',
        '[spdk-1]',
        'volume_driver = cinder.volume.drivers.spdk.SPDKDriver',
        'volume_backend_name = spdk-1',
        'target_helper = spdk-nvmeof',
        'target_protocol = nvmet_tcp',
        'target_ip_address = 127.0.0.1',
        `target_port = ${nvmfPort}`,
        `target_prefix = ${CINDER_PREFIX}`,
        'spdk_rpc_ip = 127.0.0.1',
        `spdk_rpc_port = ${httpPort}`,
        `spdk_rpc_username = ${USERS.cinder.user}`,
        `spdk_rpc_password = ${USERS.cinder.password}`,
        '',
      ].join('\n'),
    );
    driver = new LineChild(spawn(python as string, [path.join(__dirname, '..', '..', 'test', 'helpers', 'cinder-driver.py'), conf, 'spdk-1'], { stdio: ['pipe', 'pipe', 'pipe'] }));
    ready = JSON.parse(await driver.line()) as Json;
  });

  after(async () => {
    for (const h of hosts) await h.close().catch(() => undefined);
    await driver?.stop(true);
    await rpc?.close();
    await target?.stop(false);
    tmp?.cleanup();
  });

  it('starts as cinder-volume starts it: the RDMA transport it asks for is refused with SPDK\'s error; the operator\'s TCP transport serves', async () => {
    expect(ready).to.deep.include({
      ready: true,
      driver: 'cinder.volume.drivers.spdk.SPDKDriver',
      target_helper: 'cinder.volume.targets.spdknvmf.SpdkNvmf',
      transport: 'tcp',
      url: `http://127.0.0.1:${httpPort}/`,
    });
    expect(await drv('check_for_setup_error')).to.equal(null);
    // SpdkNvmf.__init__ asked for {trtype: 'rdma', max_queue_depth: 64} and swallowed the answer;
    // this is that answer, which SPDK built without RDMA gives.
    expect(await httpCall(httpPort, 'cinder', 'nvmf_create_transport', { trtype: 'rdma', max_queue_depth: 64 })).to.deep.equal({
      jsonrpc: '2.0',
      id: 1,
      error: { code: -32602, message: "Invalid transport type 'rdma'" },
    });
    expect((await call<Json[]>('nvmf_get_transports')).map((t) => t.trtype)).to.deep.equal(['TCP']);
  });

  it('get_volume_stats(refresh=True): one pool per lvstore, capacities from its clusters', async () => {
    const stats = await drv('get_volume_stats');
    expect(stats).to.deep.include({ volume_backend_name: 'SPDK', vendor_name: 'Open Source', storage_protocol: 'NVMe-oF' });
    const stores = await call<Json[]>('bdev_lvol_get_lvstores');
    expect(stats.pools.map((p: Json) => p.pool_name)).to.deep.equal(stores.map((s) => s.name));
    for (const [i, s] of stores.entries()) {
      expect(stats.pools[i].total_capacity_gb).to.equal((s.total_data_clusters * s.cluster_size) / GiB);
      expect(stats.pools[i].free_capacity_gb).to.equal((s.free_clusters * s.cluster_size) / GiB);
    }
    expect(stats.pools.find((p: Json) => p.pool_name === 'cinder').total_capacity_gb).to.be.above(15.9);
  });

  it('create_volume: a thick lvol volume-<id> of the size in GiB (legacy size in bytes), in the first lvstore with room', async () => {
    const free = (await lvs()).free_clusters;
    expect(await drv('create_volume', { volume: vol(V1, 1) })).to.equal(null);
    const b = await bdev(`cinder/volume-${V1}`);
    expect(b.num_blocks * b.block_size).to.equal(GiB);
    expect(b.aliases).to.deep.equal([`cinder/volume-${V1}`]);
    expect(b.driver_specific.lvol).to.deep.include({ lvol_store_uuid: (await lvs()).uuid, thin_provision: false, clone: false });
    expect((await lvs()).free_clusters).to.equal(free - GiB / (await lvs()).cluster_size);
  });

  it('create_volume larger than every lvstore: VolumeBackendAPIException, nothing created', async () => {
    const before = await call('bdev_get_bdevs');
    const r = await drvReply('create_volume', { volume: vol('1b9e2c44-00ff-4c2a-9d3e-0000000000ff', 64) });
    expect(r).to.deep.include({ ok: false, error: 'VolumeBackendAPIException' });
    expect(await call('bdev_get_bdevs')).to.deep.equal(before);
  });

  it('create_export, ensure_export, initialize_connection: a subsystem in Cinder\'s view; a host with that connection info writes and reads', async () => {
    const exp = await drv('create_export', { volume: vol(V1), connector: CONNECTOR });
    const nqn = `${CINDER_PREFIX}:cnode1`;
    expect(exp).to.deep.equal({ provider_location: `127.0.0.1:${nvmfPort} tcp ${nqn} 10`, provider_auth: '' });
    // Idempotent: the driver finds its subsystem again by the volume's namespace.
    expect(await drv('create_export', { volume: vol(V1), connector: CONNECTOR })).to.deep.equal(exp);
    expect(await drv('ensure_export', { volume: vol(V1) })).to.equal(null);
    expect(await drv('validate_connector', { connector: CONNECTOR })).to.equal(true);
    const conn = await drv('initialize_connection', { volume: vol(V1), connector: CONNECTOR });
    expect(conn).to.deep.equal({
      driver_volume_type: 'nvmeof',
      data: { target_portal: '127.0.0.1', target_port: String(nvmfPort), nqn, transport_type: 'tcp', ns_id: '10' },
    });
    const sub = (await call<Json[]>('nvmf_get_subsystems', { nqn }))[0];
    expect(sub).to.deep.include({ allow_any_host: true, model_number: 'SPDK bdev Controller' });
    expect(sub.serial_number).to.match(/^[A-Z0-9]{12}$/);
    expect(sub.listen_addresses).to.deep.equal([{ trtype: 'TCP', adrfam: 'IPv4', traddr: '127.0.0.1', trsvcid: String(nvmfPort) }]);
    expect(sub.namespaces.map((n: Json) => [n.nsid, n.bdev_name])).to.deep.equal([[10, (await bdev(`cinder/volume-${V1}`)).name]]);
    // The CSI subsystem is still there, outside Cinder's view, and Cinder's outside CSI's.
    expect((await call<Json[]>('nvmf_get_subsystems')).map((s) => s.nqn)).to.deep.equal([nqn, DISCOVERY, CSI_NQN]);
    expect((await httpCall(httpPort, 'csi', 'nvmf_get_subsystems')).result.map((s: Json) => s.nqn)).to.deep.equal([DISCOVERY, CSI_NQN]);

    const { ctrl, nsid } = await attach(V1);
    expect(await sizeOf(ctrl, nsid)).to.equal(GiB);
    await writeSpots(ctrl, nsid, 100);
    await expectSpots(ctrl, nsid, 100);
  });

  it('create_snapshot: a read-only snapshot-<id> keeps the data; the volume is inflated (no longer its clone) and stays exported', async () => {
    const free = (await lvs()).free_clusters;
    expect(await drv('create_snapshot', { snapshot: { id: S1, volume_id: V1 } })).to.equal(null);
    const snap = await bdev(`cinder/snapshot-${S1}`);
    expect(snap.num_blocks * snap.block_size).to.equal(GiB);
    expect(snap.driver_specific.lvol).not.to.have.property('clones'); // the volume was inflated
    const v = await bdev(`cinder/volume-${V1}`);
    expect(v.driver_specific.lvol).to.deep.include({ clone: false, thin_provision: false });
    expect(v.driver_specific.lvol).not.to.have.property('base_snapshot');
    expect((await lvs()).free_clusters).to.equal(free - GiB / (await lvs()).cluster_size);
    // New data on the volume after the snapshot (the snapshot keeps pattern 100).
    const { ctrl, nsid } = { ctrl: hosts[0], nsid: 10 };
    await expectSpots(ctrl, nsid, 100);
    await writeSpots(ctrl, nsid, 200);
    await expectSpots(ctrl, nsid, 200);
  });

  it('create_volume_from_snapshot, same size and larger: the snapshot\'s data, zeroes beyond it, inflated', async () => {
    expect(await drv('create_volume_from_snapshot', { volume: vol(V2, 1), snapshot: { id: S1 } })).to.equal(null);
    expect(await drv('create_volume_from_snapshot', { volume: vol(V3, 2), snapshot: { id: S1 } })).to.equal(null);
    for (const [id, size] of [
      [V2, 1],
      [V3, 2],
    ] as const) {
      const b = await bdev(`cinder/volume-${id}`);
      expect(b.num_blocks * b.block_size).to.equal(size * GiB);
      expect(b.driver_specific.lvol).to.deep.include({ clone: false, thin_provision: false });
      const { ctrl, nsid } = await attach(id);
      expect(await sizeOf(ctrl, nsid)).to.equal(size * GiB);
      await expectSpots(ctrl, nsid, 100);
      if (size > 1) expect((await readSpot(ctrl, nsid, HIGH_SPOT)).equals(zero)).to.equal(true);
    }
    expect((await bdev(`cinder/snapshot-${S1}`)).driver_specific.lvol).not.to.have.property('clones');
  });

  it('create_cloned_volume, same size and larger: the source\'s data now; the temporary snp-volume-<id> snapshot is gone', async () => {
    expect(await drv('create_cloned_volume', { volume: vol(V4, 1), src_volume: vol(V1) })).to.equal(null);
    expect(await drv('create_cloned_volume', { volume: vol(V5, 2), src_volume: vol(V2) })).to.equal(null);
    const all = await call<Json[]>('bdev_get_bdevs');
    expect(all.flatMap((b) => b.aliases).filter((a: string) => a.includes('snp-'))).to.deep.equal([]);
    for (const [id, size, seed] of [
      [V4, 1, 200],
      [V5, 2, 100],
    ] as const) {
      const b = await bdev(`cinder/volume-${id}`);
      expect(b.num_blocks * b.block_size).to.equal(size * GiB);
      expect(b.driver_specific.lvol).to.deep.include({ clone: false, thin_provision: false });
      const { ctrl, nsid } = await attach(id);
      expect(await sizeOf(ctrl, nsid)).to.equal(size * GiB);
      await expectSpots(ctrl, nsid, seed);
      if (size > 1) expect((await readSpot(ctrl, nsid, HIGH_SPOT)).equals(zero)).to.equal(true);
    }
    // The sources are whole, inflated volumes again.
    for (const id of [V1, V2]) expect((await bdev(`cinder/volume-${id}`)).driver_specific.lvol).to.deep.include({ clone: false });
  });

  it('extend_volume while exported and with a snapshot: the host is told, sees the new size, writes past the old end, keeps its data', async () => {
    const ctrl = hosts[0];
    await ctrl.setFeatures(FeatureId.AsyncEventConfig, 1 << 8);
    const aer = ctrl.asyncEventRequest();
    expect(await drv('extend_volume', { volume: vol(V1), new_size: 2 })).to.equal(null);
    const b = await bdev(`cinder/volume-${V1}`);
    expect(b.num_blocks * b.block_size).to.equal(2 * GiB);
    // The namespace changed notice a kernel host re-reads the size on (SPDK's resize event).
    const ev = await Promise.race([aer, new Promise<never>((_, no) => setTimeout(() => no(new Error('no namespace changed notice after extend_volume')), 10000).unref())]);
    expect((ev.cqe.dw0 >> 16) & 0xff).to.equal(LogId.ChangedNsList);
    expect(await ctrl.changedNsList()).to.deep.equal([10]);
    expect(await sizeOf(ctrl, 10)).to.equal(2 * GiB);
    await expectSpots(ctrl, 10, 200);
    expect((await readSpot(ctrl, 10, HIGH_SPOT)).equals(zero)).to.equal(true);
    await ctrl.write(10, HIGH_SPOT, pattern(300));
    expect((await readSpot(ctrl, 10, HIGH_SPOT)).equals(pattern(300))).to.equal(true);
    // The snapshot is as it was.
    expect((await bdev(`cinder/snapshot-${S1}`)).num_blocks * BLOCK).to.equal(GiB);
  });

  it('bdev_get_bdevs lists bdevs in creation order (the driver takes the first alias that contains the name)', async () => {
    const aliases = (await call<Json[]>('bdev_get_bdevs')).filter((b) => b.aliases.some((a: string) => a.startsWith('cinder/'))).map((b) => b.aliases[0]);
    expect(aliases).to.deep.equal([`cinder/volume-${V1}`, `cinder/snapshot-${S1}`, ...[V2, V3, V4, V5].map((id) => `cinder/volume-${id}`)]);
  });

  it('delete_snapshot of a snapshot with a clone (a create from it cut short): the clone is inflated, keeps the data, the snapshot goes', async () => {
    // What create_volume_from_snapshot leaves when it stops after bdev_lvol_clone.
    await call('bdev_lvol_clone', { snapshot_name: `cinder/snapshot-${S1}`, clone_name: `volume-${V6}` });
    expect((await bdev(`cinder/snapshot-${S1}`)).driver_specific.lvol.clones).to.deep.equal([`volume-${V6}`]);
    expect((await bdev(`cinder/volume-${V6}`)).driver_specific.lvol).to.deep.include({ clone: true, base_snapshot: `snapshot-${S1}` });
    expect(await drv('delete_snapshot', { snapshot: { id: S1, volume_id: V1 } })).to.equal(null);
    expect(await rpc!.call('bdev_get_bdevs', { name: `cinder/snapshot-${S1}` }).catch((e: Json) => e.code)).to.equal(-19);
    expect((await bdev(`cinder/volume-${V6}`)).driver_specific.lvol).to.deep.include({ clone: false, thin_provision: false });
    // Cinder's record of the volume (1 GiB): the driver exports it like any other.
    const { ctrl, nsid } = await attach(V6, 1);
    await expectSpots(ctrl, nsid, 100);
    // A snapshot that is not there: nothing to do.
    expect(await drv('delete_snapshot', { snapshot: { id: S1, volume_id: V1 } })).to.equal(null);
  });

  it('terminate_connection, remove_export, delete_volume: exports and lvols gone, capacity back, the CSI export untouched', async () => {
    const csiBefore = await call<Json[]>('nvmf_get_subsystems', { nqn: CSI_NQN });
    // V1's host stays connected: removing the export disconnects it and releases the lvol,
    // which bdev_lvol_delete then deletes (nvmf_delete_subsystem, then bdev_lvol_delete).
    const [v1Host, ...others] = hosts.splice(0);
    for (const h of others) await h.close();
    hosts.push(v1Host);
    for (const id of [V1, V2, V3, V4, V5, V6]) {
      expect(await drv('terminate_connection', { volume: vol(id), connector: CONNECTOR })).to.equal(null);
      expect(await drv('remove_export', { volume: vol(id) })).to.equal(null);
      if (id === V1) expect(await v1Host.read(10, 0, 1).then(() => 'read', (e: Error) => e.message)).not.to.equal('read');
      expect(await drv('delete_volume', { volume: vol(id) })).to.equal(null);
      expect(await rpc!.call('bdev_get_bdevs', { name: `cinder/volume-${id}` }).catch((e: Json) => e.code)).to.equal(-19);
    }
    expect((await call<Json[]>('nvmf_get_subsystems')).map((s) => s.nqn)).to.deep.equal([DISCOVERY, CSI_NQN]);
    expect(await call('nvmf_get_subsystems', { nqn: CSI_NQN })).to.deep.equal(csiBefore);
    const s = await lvs();
    expect(s.free_clusters).to.equal(s.total_data_clusters);
    const stats = await drv('get_volume_stats');
    const pool = stats.pools.find((p: Json) => p.pool_name === 'cinder');
    expect(pool.free_capacity_gb).to.equal(pool.total_capacity_gb);
    // A volume exported outside Cinder's view (by an admin): remove_export does not see it, and
    // delete_volume still deletes it, hot-removing that namespace (as SPDK does).
    await drv('create_volume', { volume: vol(V7, 1) });
    const other = 'nqn.2016-06.io.spdk:backup1';
    await call('nvmf_create_subsystem', { nqn: other, allow_any_host: true });
    await call('nvmf_subsystem_add_ns', { nqn: other, namespace: { bdev_name: `cinder/volume-${V7}` } });
    expect(await drv('remove_export', { volume: vol(V7) })).to.equal(null);
    expect(await drv('delete_volume', { volume: vol(V7) })).to.equal(null);
    expect((await call<Json[]>('nvmf_get_subsystems', { nqn: other }))[0].namespaces).to.deep.equal([]);
    await call('nvmf_delete_subsystem', { nqn: other });
    expect((await lvs()).free_clusters).to.equal(s.total_data_clusters);
    // Deleting what is not there is a silent success, as the driver means it to be.
    expect(await drv('delete_volume', { volume: vol(V1, 2) })).to.equal(null);
    expect(await drv('remove_export', { volume: vol(V1, 2) })).to.equal(null);
  });
}),
);
