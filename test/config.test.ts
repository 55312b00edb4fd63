import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Spdk, SpdkError } from '../lib';
import { RpcClient } from '../lib/rpc';
import type { SpdkJsonConfig } from '../lib/config/subsystems';
import { fillPattern, tempDir, uniqueSocketPath } from './helpers/env';

const UUID1 = '1b3c5d7e-0000-4000-8000-00000000aaaa';

function threads(): number {
  return fs.readdirSync('/proc/self/task').length;
}

async function startFails(config: unknown, match: RegExp): Promise<SpdkError> {
  const before = threads();
  try {
    const spdk = await Spdk.start({ engine: 'builtin', cores: [0, 1], config: config as SpdkJsonConfig, warn: () => {} });
    await spdk.stop();
  } catch (e) {
    expect(e).to.be.instanceOf(SpdkError);
    expect((e as Error).message).to.match(match);
    // Nothing half-created: the engine that applied part of the config is gone, threads joined.
    expect(threads()).to.equal(before);
    return e as SpdkError;
  }
  throw new Error('start succeeded');
}

describe('SPDK JSON config: load, save_config, restart', function () {
  this.timeout(20000);
  let tmp: ReturnType<typeof tempDir>;
  beforeEach(() => (tmp = tempDir()));
  afterEach(() => tmp.cleanup());

  function file(name: string, size: number): string {
    const f = path.join(tmp.dir, name);
    fs.writeFileSync(f, Buffer.alloc(0));
    fs.truncateSync(f, size);
    return f;
  }

  it('starts from the example config in spdk/config', async () => {
    const spdk = await Spdk.start({ engine: 'builtin', cores: [0], config: path.join(__dirname, '..', '..', 'spdk', 'config', 'malloc.json') });
    try {
      const [b] = (await spdk.rpc.call('bdev_get_bdevs', { name: 'Malloc0' })) as Array<{ num_blocks: number }>;
      expect(b.num_blocks).to.equal(16384);
    } finally {
      await spdk.stop();
    }
  });

  it('save_config round-trips: a target restarted from it has the same bdevs and data', async () => {
    const aio = file('aio.img', 1 << 20);
    const uring = file('uring.img', 1 << 20);
    const config: SpdkJsonConfig = {
      subsystems: [
        {
          subsystem: 'bdev',
          config: [
            { method: 'bdev_malloc_create', params: { name: 'M0', num_blocks: 256, block_size: 512, uuid: UUID1 } },
            { method: 'bdev_aio_create', params: { name: 'A0', filename: aio, block_size: 4096, readonly: false, fallocate: true } },
            { method: 'bdev_uring_create', params: { name: 'U0', filename: uring } },
            { method: 'bdev_wait_for_examine' },
          ],
        },
      ],
    };
    const first = await Spdk.start({ engine: 'builtin', cores: [0], config });
    let saved: SpdkJsonConfig;
    let bdevsBefore: unknown;
    const pattern = new Uint8Array(4096);
    fillPattern(pattern, 77);
    try {
      await first.rpc.call('bdev_malloc_create', { name: 'M1', num_blocks: 128, block_size: 4096 });
      const a0 = await first.bdev.open('A0');
      const buf = first.allocBuffer(4096);
      buf.bytes.set(pattern);
      await a0.write(buf, { offsetBlocks: 3, numBlocks: 1 });
      await a0.flush();
      saved = first.saveConfig();
      bdevsBefore = await first.rpc.call('bdev_get_bdevs');
    } finally {
      await first.stop();
    }
    // nvmf is always saved (its start-up settings), as SPDK saves it.
    expect(saved.subsystems.map((s) => s.subsystem)).to.deep.equal(['bdev', 'nvmf']);
    const methods = (saved.subsystems[0].config ?? []).map((e) => e.method);
    expect(methods).to.deep.equal(['bdev_malloc_create', 'bdev_aio_create', 'bdev_uring_create', 'bdev_malloc_create', 'bdev_wait_for_examine']);
    // Through a file, as an operator would keep it.
    const cfgFile = path.join(tmp.dir, 'saved.json');
    fs.writeFileSync(cfgFile, JSON.stringify(saved, null, 2));
    const second = await Spdk.start({ engine: 'builtin', cores: [0], config: cfgFile });
    try {
      expect(await second.rpc.call('bdev_get_bdevs')).to.deep.equal(bdevsBefore);
      expect(second.saveConfig()).to.deep.equal(saved);
      const a0 = await second.bdev.open('A0');
      const buf = second.allocBuffer(4096);
      await a0.read(buf, { offsetBlocks: 3, numBlocks: 1 });
      expect(Buffer.compare(buf.bytes, pattern)).to.equal(0);
    } finally {
      await second.stop();
    }
  });

  it('framework_get_subsystems and framework_get_config answer as SPDK (what rpc.py save_config calls)', async () => {
    const sock = uniqueSocketPath('cfg');
    const spdk = await Spdk.start({ engine: 'builtin', cores: [0], rpcSocket: sock, config: { subsystems: [{ subsystem: 'bdev', config: [{ method: 'bdev_malloc_create', params: { name: 'M0', num_blocks: 64, block_size: 512 } }] }] } });
    const c = await RpcClient.connect(sock);
    try {
      expect(await c.call('framework_get_subsystems')).to.deep.equal([
        { subsystem: 'bdev', depends_on: [] },
        { subsystem: 'nvmf', depends_on: ['bdev'] },
      ]);
      const cfg = (await c.call('framework_get_config', { name: 'bdev' })) as Array<{ method: string }>;
      expect(cfg.map((e) => e.method)).to.deep.equal(['bdev_malloc_create', 'bdev_wait_for_examine']);
      await c.call('framework_get_config', { name: 'iscsi' }).then(
        () => expect.fail('resolved'),
        (e) => expect(e).to.include({ code: -32602, message: "Subsystem 'iscsi' not found" }),
      );
      await c.call('framework_get_config', {}).then(
        () => expect.fail('resolved'),
        (e) => expect(e).to.include({ code: -32602, message: 'Invalid arguments' }),
      );
      await c.call('framework_get_subsystems', { x: 1 }).then(
        () => expect.fail('resolved'),
        (e) => expect(e).to.include({ code: -32602, message: "'framework_get_subsystems' requires no arguments" }),
      );
    } finally {
      await c.close();
      await spdk.stop();
    }
  });

  it('a config saved by SPDK v25.09 loads: what has a meaning is applied, the rest warned about once each', async () => {
    // SPDK v25.09's own `rpc.py save_config` output (spdk_tgt with a malloc, an aio and a uring
    // bdev); its two files are recreated here, with the sizes SPDK had.
    const text = fs.readFileSync(path.join(__dirname, '..', '..', 'spdk', 'config', 'spdk-v25.09-saved.json'), 'utf8')
      .replace('/tmp/spdk-ref-files/aio0.img', file('aio0.img', 4 << 20))
      .replace('/tmp/spdk-ref-files/uring0.img', file('uring0.img', 4 << 20));
    const spdkSaved = JSON.parse(text) as SpdkJsonConfig;
    const warnings: string[] = [];
    const spdk = await Spdk.start({ engine: 'builtin', cores: [0], config: spdkSaved, warn: (l) => warnings.push(l) });
    try {
      const names = ((await spdk.rpc.call('bdev_get_bdevs')) as Array<{ name: string }>).map((b) => b.name);
      expect(names).to.deep.equal(['Malloc0', 'Aio0', 'Uring0']);
      const applied = ['bdev_malloc_create', 'bdev_aio_create', 'bdev_uring_create', 'bdev_wait_for_examine',
        'nvmf_set_config', 'nvmf_set_max_subsystems', 'nvmf_set_crdt'];
      const ignored = spdkSaved.subsystems.flatMap((s) => (s.config ?? []).filter((e) => !applied.includes(e.method)));
      expect(ignored.length).to.be.greaterThan(10);
      // What the engine saves again is exactly SPDK's bdev entries, minus the ignored settings.
      const ours = spdk.saveConfig().subsystems[0].config;
      const theirs = spdkSaved.subsystems.find((s) => s.subsystem === 'bdev')?.config?.filter((e) => applied.includes(e.method));
      expect(ours).to.deep.equal(theirs);
      // The nvmf start-up settings are applied and saved again exactly as SPDK saved them.
      const nvmf = (cfg: SpdkJsonConfig) => cfg.subsystems.find((s) => s.subsystem === 'nvmf')?.config;
      expect(nvmf(spdk.saveConfig())).to.deep.equal(nvmf(spdkSaved));
      expect(warnings.length).to.equal(ignored.length);
      for (const e of ignored) expect(warnings.some((w) => w.includes(`/${e.method}:`)), e.method).to.equal(true);
    } finally {
      await spdk.stop();
    }
  });

  describe('malformed configs stop start-up with a message naming what is wrong', () => {
    const bdev = (config: unknown[]): unknown => ({ subsystems: [{ subsystem: 'bdev', config }] });
    const good = { method: 'bdev_malloc_create', params: { name: 'M0', num_blocks: 64, block_size: 512 } };

    it('not an object / no subsystems array / bad entries', async () => {
      await startFails([], /config must be a JSON object/);
      await startFails({}, /"subsystems" must be an array/);
      await startFails({ subsystems: [{ config: [] }] }, /subsystems\[0\]\.subsystem must be a string/);
      await startFails({ subsystems: [{ subsystem: 'bdev', config: {} }] }, /subsystem 'bdev': "config" must be an array or null/);
      await startFails(bdev([good, { params: {} }]), /subsystem 'bdev', entry 1: "method" must be a string/);
      await startFails(bdev([{ method: 'bdev_malloc_create', params: [1] }]), /entry 0 \(bdev_malloc_create\): "params" must be an object/);
    });

    it('a file that is missing or not JSON', async () => {
      await startFails(path.join(tmp.dir, 'missing.json'), /cannot read .*missing\.json/);
      const bad = path.join(tmp.dir, 'bad.json');
      fs.writeFileSync(bad, '{"subsystems": [');
      await startFails(bad, /bad\.json is not valid JSON/);
    });

    it('an unsupported method fails before anything is created', async () => {
      await startFails(
        bdev([good, { method: 'bdev_nvme_attach_controller', params: { name: 'N0', trtype: 'pcie', traddr: '0000:01:00.0' } }]),
        /subsystem 'bdev', entry 1: method 'bdev_nvme_attach_controller' is not supported/,
      );
    });

    it('a wrong parameter names the subsystem, entry, method and parameter; earlier entries are undone', async () => {
      const f = file('x.img', 1 << 20);
      await startFails(
        bdev([good, { method: 'bdev_aio_create', params: { name: 'A0', filename: f } }, { method: 'bdev_malloc_create', params: { name: 'M1', num_blocks: '64', block_size: 512 } }]),
        /subsystem 'bdev', entry 2 \(bdev_malloc_create\): spdk_json_decode_object failed \(code -32603\): parameter 'num_blocks' must be a uint64/,
      );
      await startFails(bdev([{ method: 'bdev_malloc_create', params: { name: 'M0', num_blocks: 64, block_size: 512, colour: 'red' } }]), /unknown parameter 'colour'/);
      await startFails(bdev([good, good]), /entry 1 \(bdev_malloc_create\): File exists \(code -17\)/);
      // The file the failed config opened is free again: a new engine can use it at once.
      const spdk = await Spdk.start({ engine: 'builtin', cores: [0], config: bdev([{ method: 'bdev_aio_create', params: { name: 'A0', filename: f } }]) as SpdkJsonConfig });
      await spdk.stop();
    });
  });
});
