import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { JsonRpcError, RpcClient } from '../lib/rpc';
import { tempDir } from './helpers/env';
import { forEachEngine, fresh, useTarget } from './helpers/engines';
import { RawSocket } from './helpers/raw-socket';

const DECODE_FAILED = { code: -32603, message: 'spdk_json_decode_object failed' };
const UUID = '6f1f0c8e-5a4b-4c3d-9e2f-0123456789ab';

type Bdev = Record<string, unknown> & { name: string; uuid: string; num_blocks: number };

/**
 * The validation paths of the bdev methods (SPDK v25.09 decoders and create/delete checks),
 * through the Unix socket of a running target, on both engines: the builtin engine's dispatcher,
 * server and client, and SPDK's own server (libspdk, in a child). Every failure is checked to
 * have created or deleted nothing. Where the builtin engine refuses what SPDK does on purpose
 * (docs/differences.md, "bdev methods"), the expectation is per engine.
 */
forEachEngine((engine) =>
describe(`bdev RPC methods: parameter decoding and validation (${engine} engine)`, () => {
  const t = useTarget(engine, { tag: 'bdev-decode' });
  const builtin = engine === 'builtin';
  let tmp: { dir: string; cleanup: () => void };
  // The socket and its client, as the tests have always called them.
  let sock: string;
  let client: RpcClient;

  beforeEach(() => {
    tmp = tempDir();
    sock = t.rpcSocket;
    client = t.client;
  });

  afterEach(() => {
    tmp.cleanup();
  });

  const listBdevs = async (): Promise<Bdev[]> => (await client.call('bdev_get_bdevs')) as Bdev[];
  const names = async (): Promise<string[]> => (await listBdevs()).map((b) => b.name);

  /** Calls and expects an error with exactly this code and message, and no change to the bdev list. */
  async function expectError(method: string, params: unknown, want: { code: number; message: string | RegExp }): Promise<void> {
    const before = JSON.stringify(await listBdevs());
    const err = await client.call(method, params).then(
      (r) => expect.fail(`${method} ${JSON.stringify(params)} succeeded with ${JSON.stringify(r)}`),
      (e: unknown) => e,
    );
    expect(err, `${method} ${JSON.stringify(params)}`).to.be.instanceOf(JsonRpcError);
    const e = err as JsonRpcError;
    expect(e.code, `${method} ${JSON.stringify(params)}: ${e.message}`).to.equal(want.code);
    if (typeof want.message === 'string') expect(e.message).to.equal(want.message);
    else expect(e.message).to.match(want.message);
    expect(JSON.stringify(await listBdevs()), 'nothing changed').to.equal(before);
  }

  const file = (name: string, size: number): string => {
    const p = path.join(tmp.dir, name);
    fs.writeFileSync(p, Buffer.alloc(size));
    return p;
  };

  describe('bdev_malloc_create', () => {
    const ok = { name: 'M0', num_blocks: 16, block_size: 512 };

    it('decode failures answer -32603 "spdk_json_decode_object failed"', async () => {
      for (const params of [
        undefined,
        [],
        [16, 512],
        {},
        { num_blocks: 16 },
        { block_size: 512 },
        { ...ok, num_blocks: '16' },
        { ...ok, num_blocks: 1.5 },
        { ...ok, num_blocks: -1 },
        { ...ok, block_size: 2 ** 32 },
        { ...ok, block_size: true },
        { ...ok, name: 5 },
        { ...ok, name: null },
        { ...ok, name: 'a\u0000b' },
        { ...ok, uuid: 'not-a-uuid' },
        { ...ok, uuid: `${UUID}0` },
        { ...ok, md_interleave: 1 },
        { ...ok, dif_type: 2 ** 31 },
        { ...ok, numa_id: 0 }, // not a bdev_malloc_create parameter in v25.09
        { ...ok, extra: true },
      ]) {
        await expectError('bdev_malloc_create', params, DECODE_FAILED);
      }
      // uint64 parameters stop at 2^53 - 1 on the builtin engine (exact in JavaScript); SPDK
      // decodes 2^53 and then cannot allocate the disk (docs/differences.md, "Numbers").
      await expectError('bdev_malloc_create', { ...ok, num_blocks: 2 ** 53 }, builtin ? DECODE_FAILED : { code: -12, message: 'Cannot allocate memory' });
    });

    it('a key given twice is a decode failure', async () => {
      const s = await RawSocket.connect(sock);
      await s.write('{"jsonrpc":"2.0","method":"bdev_malloc_create","id":1,' + '"params":{"name":"M0","num_blocks":16,"block_size":512,"block_size":512}}');
      const [r] = await s.responses(1);
      s.destroy();
      expect(r).to.deep.equal({ jsonrpc: '2.0', id: 1, error: DECODE_FAILED });
      expect(await names()).to.deep.equal([]);
    });

    it('integers are judged by value like spdk_json_number_to_uint64: 16.0 and 1.6e1 pass, -0 fails', async () => {
      const s = await RawSocket.connect(sock);
      const req = (id: number, name: string, n: string): string =>
        `{"jsonrpc":"2.0","method":"bdev_malloc_create","id":${id},"params":{"name":"${name}","num_blocks":${n},"block_size":512}}`;
      await s.write(req(1, 'A', '16.0') + req(2, 'B', '1.6e1') + req(3, 'C', '-0'));
      const rs = await s.responses(3);
      s.destroy();
      expect(rs).to.deep.equal([
        { jsonrpc: '2.0', id: 1, result: 'A' },
        { jsonrpc: '2.0', id: 2, result: 'B' },
        { jsonrpc: '2.0', id: 3, error: DECODE_FAILED },
      ]);
      expect((await listBdevs()).map((b) => b.num_blocks)).to.deep.equal([16, 16]);
    });

    it("create_malloc_disk's checks answer -errno with strerror text", async () => {
      const EINVAL = { code: -22, message: 'Invalid argument' };
      await expectError('bdev_malloc_create', { ...ok, num_blocks: 0 }, EINVAL);
      await expectError('bdev_malloc_create', { ...ok, block_size: 1000 }, EINVAL);
      await expectError('bdev_malloc_create', { ...ok, physical_block_size: 100 }, EINVAL);
      await expectError('bdev_malloc_create', { ...ok, md_size: 7 }, EINVAL);
      await expectError('bdev_malloc_create', { ...ok, dif_type: 1 }, EINVAL);
      await expectError('bdev_malloc_create', { ...ok, name: '' }, EINVAL);
      await expectError('bdev_malloc_create', { ...ok, block_size: 0 }, { code: -12, message: 'Cannot allocate memory' });
    });

    it('metadata, DIF and I/O boundary values the engine cannot honour are refused with -95 (builtin); SPDK makes them', async () => {
      const cases = [
        { ...ok, name: 'X1', md_size: 8 },
        { ...ok, name: 'X2', md_size: 16, dif_type: 1 },
        { ...ok, name: 'X3', optimal_io_boundary: 8 },
        { ...ok, name: 'X4', physical_block_size: 4096 },
      ];
      if (builtin) {
        // Refused rather than silently ignored (docs/differences.md, "bdev methods").
        for (const c of cases) await expectError('bdev_malloc_create', c, { code: -95, message: /^Operation not supported: / });
        return;
      }
      for (const c of cases) expect(await client.call('bdev_malloc_create', c)).to.equal(c.name);
      const [x1, x2] = (await listBdevs()) as Array<Bdev & { md_size?: number; dif_type?: number }>;
      expect(x1).to.include({ md_size: 8, dif_type: 0 });
      expect(x2).to.include({ md_size: 16, dif_type: 1 });
    });

    it('accepts the defaults rpc.py sends and values that change nothing', async () => {
      expect(
        await client.call('bdev_malloc_create', {
          ...ok,
          md_interleave: false,
          dif_is_head_of_md: false,
          md_size: 0,
          dif_type: 0,
          dif_pi_format: 0,
          optimal_io_boundary: 0,
          physical_block_size: 512,
        }),
      ).to.equal('M0');
      expect(await client.call('bdev_malloc_create', { name: 'M1', num_blocks: 8, block_size: 4096, md_interleave: true })).to.equal('M1');
      expect(await names()).to.deep.equal(['M0', 'M1']);
    });

    // Fresh: SPDK's malloc module numbers generated names for the life of the process.
    fresh(it('duplicate name or UUID answers -17 "File exists"; generated names count up', async () => {
      expect(await client.call('bdev_malloc_create', { ...ok, uuid: UUID.toUpperCase() })).to.equal('M0');
      const EEXIST = { code: -17, message: 'File exists' };
      await expectError('bdev_malloc_create', ok, EEXIST);
      await expectError('bdev_malloc_create', { ...ok, name: 'M9', uuid: UUID }, EEXIST);
      await expectError('bdev_malloc_create', { ...ok, name: UUID }, EEXIST); // the UUID is an alias
      expect(await client.call('bdev_malloc_create', { num_blocks: 8, block_size: 512 })).to.equal('Malloc0');
      expect(await client.call('bdev_malloc_create', { num_blocks: 8, block_size: 512, uuid: '00000000-0000-0000-0000-000000000000' })).to.equal('Malloc1');
      expect(await names()).to.deep.equal(['M0', 'Malloc0', 'Malloc1']);
      expect(((await client.call('bdev_get_bdevs', { name: 'M0' })) as Bdev[])[0].uuid).to.equal(UUID);
    }));
  });

  describe('bdev_malloc_delete / bdev_aio_delete / bdev_uring_delete', () => {
    it('decode failures, unknown names and other modules’ bdevs', async () => {
      await client.call('bdev_malloc_create', { name: 'M0', num_blocks: 8, block_size: 512 });
      await client.call('bdev_aio_create', { name: 'A0', filename: file('a0', 4096), block_size: 512 });
      for (const m of ['bdev_malloc_delete', 'bdev_aio_delete', 'bdev_uring_delete']) {
        for (const params of [undefined, {}, { name: 1 }, { name: 'M0', force: true }, ['M0']]) {
          await expectError(m, params, DECODE_FAILED);
        }
        await expectError(m, { name: 'nope' }, { code: -19, message: 'No such device' });
      }
      await expectError('bdev_malloc_delete', { name: 'A0' }, { code: -19, message: 'No such device' });
      await expectError('bdev_aio_delete', { name: 'M0' }, { code: -19, message: 'No such device' });
      expect(await names()).to.deep.equal(['M0', 'A0']);
    });

    it('delete by name or by UUID alias answers true', async () => {
      await client.call('bdev_malloc_create', { name: 'M0', num_blocks: 8, block_size: 512, uuid: UUID });
      await client.call('bdev_malloc_create', { name: 'M1', num_blocks: 8, block_size: 512 });
      expect(await client.call('bdev_malloc_delete', { name: UUID })).to.equal(true);
      expect(await client.call('bdev_malloc_delete', { name: 'M1' })).to.equal(true);
      expect(await names()).to.deep.equal([]);
    });
  });

  describe('bdev_aio_create', () => {
    it('decode failures', async () => {
      const f = file('f', 4096);
      for (const params of [
        undefined,
        { name: 'A0' },
        { filename: f },
        { name: 'A0', filename: f, block_size: '512' },
        { name: 'A0', filename: f, readonly: 'yes' },
        { name: 'A0', filename: f, fallocate: 0 },
        { name: 'A0', filename: f, uuid: 'x' },
        { name: 'A0', filename: f, direct: true },
      ]) {
        await expectError('bdev_aio_create', params, DECODE_FAILED);
      }
    });

    it('engine failures answer -errno', async () => {
      await expectError('bdev_aio_create', { name: 'A0', filename: path.join(tmp.dir, 'missing') }, { code: -2, message: 'No such file or directory' });
      await expectError('bdev_aio_create', { name: 'A0', filename: file('odd', 1000), block_size: 512 }, { code: -22, message: 'Invalid argument' });
      await expectError('bdev_aio_create', { name: 'A0', filename: file('f', 8192), block_size: 1536 }, { code: -22, message: 'Invalid argument' });
      await expectError('bdev_aio_create', { name: '', filename: file('g', 8192), block_size: 512 }, { code: -22, message: 'Invalid argument' });
    });

    it('creates, returns the name, refuses a duplicate', async () => {
      const f = file('f', 8192);
      expect(await client.call('bdev_aio_create', { name: 'A0', filename: f, block_size: 4096, readonly: true, fallocate: false })).to.equal('A0');
      await expectError('bdev_aio_create', { name: 'A0', filename: f, block_size: 4096 }, { code: -17, message: 'File exists' });
      const [b] = (await client.call('bdev_get_bdevs', { name: 'A0' })) as Record<string, unknown>[];
      expect(b).to.include({ name: 'A0', product_name: 'AIO disk', block_size: 4096, num_blocks: 2 });
      expect(b.driver_specific).to.deep.equal({ aio: { filename: f, block_size_override: true, readonly: true, fallocate: false } });
      expect(b).to.not.have.property('memory_domains');
      // Without block_size: the builtin engine takes 512 for a regular file (its O_DIRECT
      // alignment); SPDK v25.09 finds a block size only for block devices (BLKSSZGET) and refuses.
      const g = file('g2', 8192);
      if (builtin) {
        expect(await client.call('bdev_aio_create', { name: 'A1', filename: g, fallocate: true })).to.equal('A1');
        const [c] = (await client.call('bdev_get_bdevs', { name: 'A1' })) as Record<string, unknown>[];
        expect(c.driver_specific).to.deep.equal({ aio: { filename: g, block_size_override: false, readonly: false, fallocate: true } });
      } else {
        await expectError('bdev_aio_create', { name: 'A1', filename: g, fallocate: true }, { code: -22, message: 'Invalid argument' });
        await expectError('bdev_uring_create', { name: 'U1', filename: g }, { code: -32603, message: 'Unable to create URING bdev.' });
      }
    });
  });

  describe('bdev_uring_create', () => {
    it('decode failures answer -32603 "spdk_json_decode_object failed"', async () => {
      const f = file('f', 4096);
      for (const params of [undefined, { name: 'U0' }, { name: 'U0', filename: f, readonly: true }, { name: 'U0', filename: f, block_size: -1 }]) {
        await expectError('bdev_uring_create', params, DECODE_FAILED);
      }
    });

    it('every creation failure answers -32603 "Unable to create URING bdev."', async () => {
      const failed = { code: -32603, message: 'Unable to create URING bdev.' };
      await expectError('bdev_uring_create', { name: 'U0', filename: path.join(tmp.dir, 'missing') }, failed);
      await expectError('bdev_uring_create', { name: 'U0', filename: file('f', 8192), block_size: 100 }, failed);
      expect(await client.call('bdev_uring_create', { name: 'U0', filename: file('g', 8192), block_size: 512 })).to.equal('U0');
      await expectError('bdev_uring_create', { name: 'U0', filename: file('h', 8192), block_size: 512 }, failed);
      expect(await names()).to.deep.equal(['U0']);
      expect(await client.call('bdev_uring_delete', { name: 'U0' })).to.equal(true);
    });
  });

  describe('bdev_get_bdevs', () => {
    it('decode failures, unknown name -19, timeout -110', async () => {
      for (const params of [[], { name: 5 }, { timeout: -1 }, { timeout: 'x' }, { name: 'M0', extra: 1 }]) {
        await expectError('bdev_get_bdevs', params, DECODE_FAILED);
      }
      await expectError('bdev_get_bdevs', { name: 'nope' }, { code: -19, message: 'No such device' });
      await expectError('bdev_get_bdevs', { name: 'nope', timeout: 0 }, { code: -19, message: 'No such device' });
      const t0 = Date.now();
      await expectError('bdev_get_bdevs', { name: 'nope', timeout: 150 }, { code: -110, message: 'Connection timed out' });
      expect(Date.now() - t0).to.be.at.least(150);
    });

    it('waits up to timeout for a bdev to appear', async () => {
      const other = await RpcClient.connect(sock);
      const wait = client.call('bdev_get_bdevs', { name: 'Late', timeout: 2000 });
      await new Promise((r) => setTimeout(r, 150));
      await other.call('bdev_malloc_create', { name: 'Late', num_blocks: 8, block_size: 512 });
      const [b] = (await wait) as { name: string }[];
      expect(b.name).to.equal('Late');
      await other.close();
    });

    it("lists bdevs in creation order with SPDK's keys in SPDK's order", async () => {
      expect(await client.call('bdev_get_bdevs')).to.deep.equal([]);
      expect(await client.call('bdev_get_bdevs', {})).to.deep.equal([]);
      await client.call('bdev_malloc_create', { name: 'Z', num_blocks: 8, block_size: 512, uuid: UUID });
      await client.call('bdev_malloc_create', { name: 'A', num_blocks: 16, block_size: 4096 });
      const list = (await client.call('bdev_get_bdevs')) as Record<string, unknown>[];
      expect(list.map((b) => b.name)).to.deep.equal(['Z', 'A']);
      expect(Object.keys(list[0])).to.deep.equal([
        'name',
        'aliases',
        'product_name',
        'block_size',
        'num_blocks',
        'preferred_write_alignment',
        'preferred_write_granularity',
        'optimal_write_size',
        'preferred_unmap_alignment',
        'preferred_unmap_granularity',
        'uuid',
        'assigned_rate_limits',
        'claimed',
        'zoned',
        'supported_io_types',
        'memory_domains',
        'driver_specific',
      ]);
      expect(list[0]).to.deep.include({ aliases: [UUID], uuid: UUID, product_name: 'Malloc disk', driver_specific: {} });
      expect(Object.keys(list[0].supported_io_types as object)).to.have.length(21);
      // Lookup by UUID alias returns that one bdev.
      expect(await client.call('bdev_get_bdevs', { name: UUID })).to.deep.equal([list[0]]);
    });
  });

  describe('bdev_get_iostat', () => {
    it('decode failures and SPDK checks', async () => {
      for (const params of [[], { name: 1 }, { per_channel: 'yes' }, { reset_mode: 'bogus' }, { reset_mode: 1 }, { mode: 'all' }]) {
        await expectError('bdev_get_iostat', params, DECODE_FAILED);
      }
      await expectError('bdev_get_iostat', { per_channel: true }, { code: -22, message: 'Invalid argument' });
      await expectError('bdev_get_iostat', { name: 'nope' }, { code: -19, message: 'No such device' });
      await client.call('bdev_malloc_create', { name: 'M0', num_blocks: 8, block_size: 512 });
      if (builtin) {
        // Not modelled by the builtin engine (docs/differences.md, "bdev methods").
        await expectError('bdev_get_iostat', { name: 'M0', per_channel: true }, { code: -95, message: /^Operation not supported/ });
        await expectError('bdev_get_iostat', { reset_mode: 'all' }, { code: -95, message: /^Operation not supported/ });
      } else {
        expect(await client.call('bdev_get_iostat', { name: 'M0', per_channel: true })).to.include({ name: 'M0' }).and.to.have.property('channels');
        expect(await client.call('bdev_get_iostat', { reset_mode: 'all' })).to.have.property('bdevs');
      }
    });

    it('reports tick_rate, ticks and one entry per bdev', async () => {
      await client.call('bdev_malloc_create', { name: 'M0', num_blocks: 8, block_size: 512 });
      await client.call('bdev_malloc_create', { name: 'M1', num_blocks: 8, block_size: 512 });
      const a = (await client.call('bdev_get_iostat')) as { tick_rate: number; ticks: number; bdevs: Record<string, unknown>[] };
      expect(Object.keys(a)).to.deep.equal(['tick_rate', 'ticks', 'bdevs']);
      // builtin: nanoseconds of the monotonic clock (docs/differences.md); SPDK: its tick source (the TSC).
      if (builtin) expect(a.tick_rate).to.equal(1_000_000_000);
      else expect(a.tick_rate).to.be.a('number').greaterThan(0);
      expect(a.bdevs.map((b) => b.name)).to.deep.equal(['M0', 'M1']);
      expect(Object.keys(a.bdevs[0])[0]).to.equal('name');
      if (builtin) expect(a.bdevs[0]).to.include({ bytes_read: 0, num_read_ops: 0, min_read_latency_ticks: 0 });
      else {
        // SPDK's examine modules (gpt, lvol) read every new bdev, and those reads are counted;
        // the builtin engine has no examine step.
        expect(a.bdevs[0]).to.include({ bytes_written: 0, num_write_ops: 0 });
        expect(a.bdevs[0].num_read_ops).to.be.greaterThan(0);
      }
      expect(a.bdevs[0].io_error).to.deep.equal({});
      const b = (await client.call('bdev_get_iostat', { name: 'M1', reset_mode: 'maxmin' })) as typeof a;
      expect(b.bdevs.map((x) => x.name)).to.deep.equal(['M1']);
      expect(b.ticks).to.be.greaterThan(a.ticks);
    });
  });
}),
);
