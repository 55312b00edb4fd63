/**
 * RpcHttpClient (lib/rpc/http-client.ts) against spdk-node's own HTTP endpoint: results, SPDK's
 * error objects, refused credentials, a server that is not there, and kept-alive connections.
 */
import { expect } from 'chai';
import { Spdk, SpdkError } from '../lib';
import { JsonRpcError } from '../lib/rpc/errors';
import { RpcHttpClient } from '../lib/rpc/http-client';
import { freePort } from './helpers/nvme-tcp-host';

describe('RpcHttpClient', function () {
  this.timeout(20000);
  let spdk: Spdk;
  let url: string;

  before(async () => {
    spdk = await Spdk.start({ engine: 'builtin', cores: [0] });
    const server = await spdk.serveRpcHttp({ listen: '127.0.0.1:0', user: 'u', password: 'p' });
    url = server.url as string;
  });

  after(async () => {
    await spdk.stop();
  });

  it('returns results and rejects with SPDK\'s error objects; many calls share kept-alive connections', async () => {
    const c = new RpcHttpClient(url, { user: 'u', password: 'p' });
    try {
      expect(await c.call('bdev_malloc_create', { name: 'H0', num_blocks: 256, block_size: 512 })).to.equal('H0');
      const [b] = (await c.call('bdev_get_bdevs', { name: 'H0' })) as Array<{ name: string; num_blocks: number }>;
      expect(b).to.include({ name: 'H0', num_blocks: 256 });
      const e = await c.call('bdev_get_bdevs', { name: 'nope' }).catch((x: unknown) => x);
      expect(e).to.be.instanceOf(JsonRpcError);
      expect(e).to.include({ code: -19, message: 'No such device' });
      const many = await Promise.all(Array.from({ length: 40 }, () => c.call('spdk_get_version')));
      expect(many.every((v) => typeof (v as { version: string }).version === 'string')).to.equal(true);
    } finally {
      c.close();
    }
  });

  it('wrong credentials are an SpdkError EACCES (HTTP 401); no server is one with the connect errno; bad options throw', async () => {
    const wrong = new RpcHttpClient(url, { user: 'u', password: 'nope' });
    const e1 = await wrong.call('spdk_get_version').catch((x: unknown) => x);
    wrong.close();
    expect(e1).to.be.instanceOf(SpdkError);
    expect(e1).to.include({ errno: 13, code: 'EACCES' });
    expect((e1 as Error).message).to.match(/HTTP 401/);
    const none = new RpcHttpClient(`http://127.0.0.1:${await freePort()}/`, { timeoutMs: 5000 });
    const e2 = await none.call('spdk_get_version').catch((x: unknown) => x);
    none.close();
    expect(e2).to.be.instanceOf(SpdkError);
    expect(e2).to.include({ code: 'ECONNREFUSED' });
    expect(() => new RpcHttpClient('ftp://x/')).to.throw(SpdkError, /scheme/);
    expect(() => new RpcHttpClient(url, { user: 'u' })).to.throw(SpdkError, /both user and password/);
  });
});
