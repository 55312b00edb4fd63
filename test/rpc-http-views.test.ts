import { expect } from 'chai';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { parseTargetArgs } from '../lib/cli/main';
import { readCredentialsFile, RpcHttpServer, serveRpcHttp } from '../lib/rpc/http';
import type { RpcTarget } from '../lib/rpc/dispatcher';
import { tempDir } from './helpers/env';
import { forEachEngine, useTarget } from './helpers/engines';
import { freePort, NvmeTcpController } from './helpers/nvme-tcp-host';

/*
 * Per-credential views of the NVMe-oF subsystems on the HTTP endpoint (lib/rpc/http.ts,
 * lib/rpc/methods/nvmf-common.ts inView): a credential with a view (an NQN prefix) sees the
 * discovery subsystem and the subsystems named with its prefix; any other subsystem answers as
 * one that does not exist, and none can be created outside the view. So Cinder's driver (which
 * needs every subsystem but discovery to be `...cnode<N>`) and a CSI driver share one target.
 */

type Json = Record<string, unknown>;

const DISCOVERY = 'nqn.2014-08.org.nvmexpress.discovery';
// Cinder's own unit tests use this target_prefix; it sorts before the discovery NQN.
const CINDER_VIEW = 'nqn.2014-08.io.spdk:cnode';
const CSI_VIEW = 'nqn.2020-04.io.spdk.csi:';
const CINDER1 = `${CINDER_VIEW}1`;
const CSI1 = `${CSI_VIEW}uuid:0a1b2c3d-0000-4000-8000-00000000c5a1`;
const OTHER = 'nqn.2016-06.io.spdk:cnode1';
const MISSING_IN_CSI = `${CSI_VIEW}uuid:0a1b2c3d-0000-4000-8000-0000000000ff`;

const USERS = {
  cinder: { user: 'cinder', password: 'cinder-pw', view: CINDER_VIEW },
  csi: { user: 'spdkcsiuser', password: 'spdkcsipass', view: CSI_VIEW },
  admin: { user: 'admin', password: 'admin-pw' },
};
type Who = keyof typeof USERS;

function post(port: number, who: Who, method: string, params?: unknown): Promise<Json> {
  const u = USERS[who];
  const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method, ...(params === undefined ? {} : { params }) });
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: '/',
        agent: false,
        headers: { authorization: 'Basic ' + Buffer.from(`${u.user}:${u.password}`).toString('base64'), 'content-length': Buffer.byteLength(body) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          try {
            expect(res.statusCode).to.equal(200);
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

/*
 * On both engines: builtin, the engine's method table applies the views; libspdk, the engine's
 * RpcForwarder (what spdk.serveRpcHttp serves on libspdk) in front of SPDK in a child, one for the
 * block (the tests share the subsystems made in `before`, as on builtin).
 */
forEachEngine((engine) =>
describe(`HTTP credentials with views of the NVMe-oF subsystems (${engine} engine)`, function () {
  const t = useTarget(engine, { tag: 'views', sharedBuiltin: true, resetEachTest: false });
  const builtin = engine === 'builtin';
  /** Parsing and construction checks that involve no engine: builtin only. */
  const pureIt = (title: string, fn: () => void): void => {
    if (builtin) it(title, fn);
  };
  let target: RpcTarget;
  let server: RpcHttpServer;
  let port: number;
  let nvmfPort: number;

  const call = async (who: Who, method: string, params?: unknown): Promise<unknown> => {
    const r = await post(port, who, method, params);
    if ('error' in r) throw Object.assign(new Error(JSON.stringify(r.error)), { rpc: r.error });
    return r.result;
  };
  const nqns = async (who: Who): Promise<string[]> => ((await call(who, 'nvmf_get_subsystems')) as Array<{ nqn: string }>).map((s) => s.nqn);
  /** Everything the target holds, as the Unix socket (no view) sees it. */
  const everything = async (): Promise<unknown> => t.client.call('nvmf_get_subsystems');

  before(async () => {
    target = builtin ? t.spdk!.dispatcher : (t.rpc as RpcTarget);
    server = new RpcHttpServer(target, { credentials: Object.values(USERS) });
    ({ port } = await server.listen('127.0.0.1', 0));
    nvmfPort = await freePort();
    await t.client.call('nvmf_create_transport', { trtype: 'TCP' });
    for (const b of ['v_cinder', 'v_csi', 'v_other', 'v_spare']) {
      await t.client.call('bdev_malloc_create', { name: b, num_blocks: 2048, block_size: 512 });
    }
    // Each client makes its own subsystem through its own credential, as it would.
    const listen = { trtype: 'tcp', traddr: '127.0.0.1', trsvcid: String(nvmfPort) };
    await call('cinder', 'nvmf_create_subsystem', { nqn: CINDER1, allow_any_host: true, serial_number: 'CINDER0000001' });
    await call('cinder', 'nvmf_subsystem_add_listener', { nqn: CINDER1, listen_address: listen });
    await call('cinder', 'nvmf_subsystem_add_ns', { nqn: CINDER1, namespace: { bdev_name: 'v_cinder', nsid: 10 } });
    await call('csi', 'nvmf_create_subsystem', { nqn: CSI1, allow_any_host: true, serial_number: 'spdkcsi-sn', model_number: 'v_csi' });
    await call('csi', 'nvmf_subsystem_add_ns', { nqn: CSI1, namespace: { bdev_name: 'v_csi' } });
    await call('csi', 'nvmf_subsystem_add_listener', { nqn: CSI1, listen_address: { ...listen, trtype: 'TCP', adrfam: 'IPv4' } });
    await call('admin', 'nvmf_create_subsystem', { nqn: OTHER, allow_any_host: true });
    await call('admin', 'nvmf_subsystem_add_ns', { nqn: OTHER, namespace: { bdev_name: 'v_other' } });
  });

  after(async () => {
    await server?.close();
  });

  it('lists the discovery subsystem first, then the view\'s own subsystems', async () => {
    expect(await nqns('cinder')).to.deep.equal([DISCOVERY, CINDER1]);
    expect(await nqns('csi')).to.deep.equal([DISCOVERY, CSI1]);
    // Without a view: SPDK's order (by NQN), where Cinder's NQN sorts before discovery.
    expect(await nqns('admin')).to.deep.equal([CINDER1, DISCOVERY, OTHER, CSI1]);
    expect(((await everything()) as Array<{ nqn: string }>).map((s) => s.nqn)).to.deep.equal([CINDER1, DISCOVERY, OTHER, CSI1]);
    // The entries themselves are what the unrestricted listing shows.
    const all = (await everything()) as Json[];
    expect(await call('cinder', 'nvmf_get_subsystems')).to.deep.equal([all[1], all[0]]);
    // Cinder's driver: entry 0 skipped, every other NQN must split on "cnode" into an int.
    const cinderSees = (await nqns('cinder')).slice(1).map((n) => Number.parseInt(n.split('cnode')[1], 10));
    expect(cinderSees).to.deep.equal([1]);
  });

  it('answers {nqn} outside the view with -19 "No such device", as for an NQN that does not exist', async () => {
    const hidden = await post(port, 'csi', 'nvmf_get_subsystems', { nqn: CINDER1 });
    const missing = await post(port, 'csi', 'nvmf_get_subsystems', { nqn: MISSING_IN_CSI });
    expect(hidden).to.deep.equal({ jsonrpc: '2.0', id: 1, error: { code: -19, message: 'No such device' } });
    expect(hidden).to.deep.equal(missing);
    expect(await call('cinder', 'nvmf_get_subsystems', { nqn: DISCOVERY })).to.have.length(1);
    expect(await call('cinder', 'nvmf_get_subsystems', { nqn: CINDER1 })).to.have.length(1);
  });

  // Every method that names a subsystem, with params that would succeed on Cinder's subsystem.
  const listen = (): Json => ({ trtype: 'TCP', adrfam: 'IPv4', traddr: '127.0.0.1', trsvcid: String(nvmfPort) });
  const naming: Array<[string, (nqn: string) => Json]> = [
    ['nvmf_subsystem_get_listeners', (nqn) => ({ nqn })],
    ['nvmf_subsystem_get_controllers', (nqn) => ({ nqn })],
    ['nvmf_subsystem_get_qpairs', (nqn) => ({ nqn })],
    ['nvmf_subsystem_add_ns', (nqn) => ({ nqn, namespace: { bdev_name: 'v_spare' } })],
    ['nvmf_subsystem_remove_ns', (nqn) => ({ nqn, nsid: 10 })],
    ['nvmf_subsystem_add_host', (nqn) => ({ nqn, host: 'nqn.2014-08.org.nvmexpress:uuid:0a1b2c3d-0000-4000-8000-0000000000a1' })],
    ['nvmf_subsystem_remove_host', (nqn) => ({ nqn, host: 'nqn.2014-08.org.nvmexpress:uuid:0a1b2c3d-0000-4000-8000-0000000000a1' })],
    ['nvmf_subsystem_allow_any_host', (nqn) => ({ nqn, allow_any_host: false })],
    ['nvmf_subsystem_add_listener', (nqn) => ({ nqn, listen_address: { ...listen(), trsvcid: '1' } })],
    ['nvmf_subsystem_remove_listener', (nqn) => ({ nqn, listen_address: listen() })],
    ['nvmf_delete_subsystem', (nqn) => ({ nqn })],
  ];
  for (const [method, params] of naming) {
    it(`${method}: a subsystem outside the view answers as a missing one and nothing changes`, async () => {
      const before = await everything();
      const hidden = await post(port, 'csi', method, params(CINDER1));
      const missing = await post(port, 'csi', method, params(MISSING_IN_CSI));
      expect(hidden).to.have.property('error');
      expect(hidden).to.deep.equal(missing);
      expect(hidden).to.deep.equal({ jsonrpc: '2.0', id: 1, error: { code: -32602, message: 'Invalid parameters' } });
      // And the other way round, for a subsystem no view holds.
      expect(await post(port, 'cinder', method, params(OTHER))).to.deep.equal(hidden);
      expect(await everything()).to.deep.equal(before);
    });
  }

  it('nvmf_create_subsystem outside the view is refused as an invalid NQN is, and creates nothing', async () => {
    const before = await everything();
    for (const nqn of [`${CINDER_VIEW}9`, CINDER1, 'nqn.2016-06.io.spdk:cnode7']) {
      const r = await post(port, 'csi', 'nvmf_create_subsystem', { nqn, allow_any_host: true });
      expect(r).to.deep.equal({ jsonrpc: '2.0', id: 1, error: { code: -32603, message: `Unable to create subsystem ${nqn}` } });
    }
    expect(await post(port, 'csi', 'nvmf_create_subsystem', { nqn: 'not-an-nqn' })).to.deep.equal({
      jsonrpc: '2.0',
      id: 1,
      error: { code: -32603, message: 'Unable to create subsystem not-an-nqn' },
    });
    expect(await everything()).to.deep.equal(before);
  });

  it('works as usual inside the view: create, namespace, listener, host, delete', async () => {
    const nqn = `${CSI_VIEW}uuid:0a1b2c3d-0000-4000-8000-00000000c5a2`;
    expect(await call('csi', 'nvmf_create_subsystem', { nqn, model_number: 'm' })).to.equal(true);
    expect(await call('csi', 'nvmf_subsystem_add_ns', { nqn, namespace: { bdev_name: 'v_spare' } })).to.equal(1);
    expect(await call('csi', 'nvmf_subsystem_add_listener', { nqn, listen_address: listen() })).to.equal(true);
    expect(await call('csi', 'nvmf_subsystem_add_host', { nqn, host: 'nqn.2016-06.io.spdk:host1' })).to.equal(true);
    expect(await call('csi', 'nvmf_subsystem_get_listeners', { nqn })).to.have.length(1);
    expect(await nqns('csi')).to.deep.equal([DISCOVERY, CSI1, nqn]);
    expect(await nqns('cinder')).to.deep.equal([DISCOVERY, CINDER1]);
    // A subsystem created inside one view is refused (as taken) there, and (as outside) in others.
    expect(await post(port, 'csi', 'nvmf_create_subsystem', { nqn })).to.have.nested.property('error.code', -32603);
    expect(await call('csi', 'nvmf_delete_subsystem', { nqn })).to.equal(true);
    expect(await nqns('admin')).not.to.include(nqn);
  });

  it('shows the discovery subsystem in every view', async () => {
    for (const who of ['cinder', 'csi', 'admin'] as const) {
      expect(await call(who, 'nvmf_subsystem_get_listeners', { nqn: DISCOVERY })).to.deep.equal([]);
    }
  });

  it('does not touch methods that name no subsystem (transports, bdevs)', async () => {
    expect(await call('cinder', 'nvmf_get_transports')).to.have.length(1);
    expect(await post(port, 'cinder', 'nvmf_create_transport', { trtype: 'rdma', max_queue_depth: 64 })).to.deep.equal({
      jsonrpc: '2.0',
      id: 1,
      error: { code: -32602, message: "Invalid transport type 'rdma'" },
    });
    expect(((await call('csi', 'bdev_get_bdevs')) as unknown[]).length).to.equal(4);
  });

  it('serves data to hosts whatever the view: a view is a naming partition, not a data path rule', async () => {
    const c = await NvmeTcpController.connect({ host: '127.0.0.1', port: nvmfPort, subnqn: CSI1 } as never);
    try {
      expect(await c.activeNamespaces()).to.deep.equal([1]);
    } finally {
      await c.close();
    }
  });

  pureIt('refuses a view that is not an NQN prefix', () => {
    for (const view of ['csi', '', 'NQN.2014-08.io.spdk', 'nqn.' + 'x'.repeat(220), 'nqn.a\nb']) {
      expect(() => new RpcHttpServer(target, { credentials: [{ user: 'u', password: 'p', view }] })).to.throw(/must be an NQN prefix/);
    }
    expect(new RpcHttpServer(target, { credentials: [{ user: 'u', password: 'p', view: 'nqn.' }] }).users).to.deep.equal([{ user: 'u', view: 'nqn.' }]);
  });

  describe('credentials file (--http-credentials)', () => {
    let tmp: { dir: string; cleanup: () => void };
    const write = (name: string, text: string): string => {
      const f = path.join(tmp.dir, name);
      fs.writeFileSync(f, text, { mode: 0o600 });
      return f;
    };
    before(() => {
      tmp = tempDir('spdk-node-views-');
    });
    after(() => tmp.cleanup());

    pureIt('reads users, passwords or password files (relative to the file), and views', () => {
      write('cinder.pw', 'from-a-file\n');
      const f = write(
        'creds.json',
        JSON.stringify({
          credentials: [
            { user: 'cinder', password_file: 'cinder.pw', nqn_prefix: CINDER_VIEW },
            { user: 'spdkcsiuser', password: 'spdkcsipass', nqn_prefix: CSI_VIEW },
            { user: 'admin', password: 'x' },
          ],
        }),
      );
      expect(readCredentialsFile(f)).to.deep.equal([
        { user: 'cinder', password: 'from-a-file', view: CINDER_VIEW },
        { user: 'spdkcsiuser', password: 'spdkcsipass', view: CSI_VIEW },
        { user: 'admin', password: 'x' },
      ]);
    });

    const bad: Array<[string, string, RegExp]> = [
      ['not JSON', '{"credentials": [{"user": "a", "password": "hunter2"', /not valid JSON/],
      ['an array', '[]', /want an object/],
      ['another top-level key', '{"credentials": [], "x": 1}', /want an object/],
      ['no credentials', '{"credentials": []}', /is empty/],
      ['an entry that is not an object', '{"credentials": ["a"]}', /entry 0 is not an object/],
      ['a misspelt key', '{"credentials": [{"user": "a", "password": "hunter2", "nqn-prefix": "nqn.x"}]}', /entry 0: unknown key 'nqn-prefix'/],
      ['no user', '{"credentials": [{"password": "hunter2"}]}', /"user" must be a string/],
      ['no password', '{"credentials": [{"user": "a"}]}', /needs a password for user 'a'/],
      ['both password forms', '{"credentials": [{"user": "a", "password": "hunter2", "password_file": "p"}]}', /either a password or a password file for user 'a'/],
      ['a missing password file', '{"credentials": [{"user": "a", "password_file": "nope"}]}', /cannot read password file .*nope: ENOENT/],
      ['a view that is not a string', '{"credentials": [{"user": "a", "password": "hunter2", "nqn_prefix": 1}]}', /"nqn_prefix" for user 'a' must be a string/],
    ];
    for (const [what, text, re] of bad) {
      pureIt(`refuses ${what}, saying where and never showing the password`, () => {
        const f = write('bad.json', text);
        let err: Error | undefined;
        try {
          readCredentialsFile(f);
        } catch (e) {
          err = e as Error;
        }
        expect(err?.message).to.match(re);
        expect(err?.message).to.contain(f);
        expect(err?.message).not.to.contain('hunter2');
      });
    }

    it('serveRpcHttp serves the file\'s users beside --user, each with its view; views are checked', async () => {
      const f = write('serve.json', JSON.stringify({ credentials: [{ user: 'spdkcsiuser', password: 'spdkcsipass', nqn_prefix: CSI_VIEW }] }));
      const s = await serveRpcHttp(target, { listen: '127.0.0.1:0', user: 'admin', password: 'admin-pw', credentialsFile: f });
      try {
        expect(s.users).to.deep.equal([{ user: 'admin' }, { user: 'spdkcsiuser', view: CSI_VIEW }]);
        const p = s.address!.port;
        expect(((await post(p, 'csi', 'nvmf_get_subsystems')).result as Json[]).map((x) => x.nqn)).to.deep.equal([DISCOVERY, CSI1]);
        expect(((await post(p, 'admin', 'nvmf_get_subsystems')).result as Json[]).length).to.equal(4);
      } finally {
        await s.close();
      }
      const refusal = (o: Parameters<typeof serveRpcHttp>[1]): Promise<string> =>
        serveRpcHttp(target, o).then(
          async (srv) => {
            await srv.close();
            return 'served';
          },
          (e: Error) => e.message,
        );
      const dup = write('dup.json', JSON.stringify({ credentials: [{ user: 'admin', password: 'y' }] }));
      expect(await refusal({ listen: '127.0.0.1:0', user: 'admin', password: 'x', credentialsFile: dup })).to.match(/listed twice/);
      const badView = write('badview.json', JSON.stringify({ credentials: [{ user: 'a', password: 'y', nqn_prefix: 'cinder' }] }));
      expect(await refusal({ listen: '127.0.0.1:0', credentialsFile: badView })).to.match(/NQN prefix/);
      expect(await refusal({ listen: '127.0.0.1:0' })).to.match(/needs a user and a password, or a credentials file/);
    });

    pureIt('the CLI takes --http-credentials with or without --user', () => {
      expect(parseTargetArgs(['--http', '127.0.0.1:0', '--http-credentials', '/c.json']).http).to.deep.include({ credentialsFile: '/c.json', user: undefined });
      expect(parseTargetArgs(['--http', '127.0.0.1:0', '--user', 'u', '--password', 'p', '--http-credentials', '/c.json']).http).to.deep.include({
        credentialsFile: '/c.json',
        user: 'u',
      });
      expect(() => parseTargetArgs(['--http-credentials', '/c.json'])).to.throw(/need --http/);
      expect(() => parseTargetArgs(['--http', '127.0.0.1:0', '--password', 'p', '--http-credentials', '/c.json'])).to.throw(/need --user/);
      expect(() => parseTargetArgs(['--http', '127.0.0.1:0'])).to.throw(/--http needs --user \(or --http-credentials\)/);
    });
  });
}),
);
