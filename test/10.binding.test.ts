import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { loadBuiltin, chooseEngine, libspdkUnavailableReason } from '../lib/engine/load';
import { Spdk, SpdkError } from '../lib';

describe('binding', () => {
  it('loads the builtin addon with its descriptor layout', () => {
    const addon = loadBuiltin();
    expect(addon.engine).to.equal('builtin');
    expect(addon.constants.DESC_WORDS).to.equal(8);
    expect(addon.constants.MAX_IOVS).to.be.greaterThan(1);
  });

  it("the package loads by name with both import and require", () => {
    const root = path.resolve(__dirname, '..', '..');
    const esm = execFileSync(process.execPath, ['--input-type=module', '-e', "import { Spdk, SpdkError } from 'spdk-node'; console.log(typeof Spdk.start, typeof SpdkError)"], { cwd: root }).toString();
    expect(esm.trim()).to.equal('function function');
    const cjs = execFileSync(process.execPath, ['-e', "const { Spdk } = require('spdk-node'); console.log(typeof Spdk.start)"], { cwd: root }).toString();
    expect(cjs.trim()).to.equal('function');
  });

  it("'auto' tries libspdk where its addon was built, else falls back to builtin and says why", () => {
    const c = chooseEngine('auto');
    if (libspdkUnavailableReason() === undefined) {
      // Starting it is covered by test/libspdk-engine.test.ts (in child processes).
      expect(c).to.deep.equal({ engine: 'libspdk', why: 'auto: SPDK found' });
    } else {
      expect(c.engine).to.equal('builtin');
      expect(c.why).to.match(/libspdk/);
    }
  });

  it("an explicit 'libspdk' without SPDK fails with a clear error", async function () {
    if (libspdkUnavailableReason() === undefined) this.skip(); // SPDK is here: see test/libspdk-engine.test.ts
    try {
      await Spdk.start({ engine: 'libspdk' });
      expect.fail('started');
    } catch (e) {
      expect(e).to.be.instanceOf(SpdkError);
      expect((e as SpdkError).message).to.match(/libspdk/);
    }
  });

  it('the SPDK probe links only supported SPDK releases and says why otherwise', () => {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const probe = require(path.resolve(__dirname, '..', '..', 'spdk', 'probe.js')) as { supported(v: string): boolean; SUPPORTED: { min: string; max: string } };
    expect(probe.SUPPORTED).to.deep.equal({ min: '25.05', max: '25.09' });
    expect(['25.05.0', '25.09.0', '25.09.1'].map(probe.supported)).to.deep.equal([true, true, true]);
    expect(['24.09.0', '25.01.0', '26.01.0', '25.10.0'].map(probe.supported)).to.deep.equal([false, false, false, false]);
    const root = path.resolve(__dirname, '..', '..');
    const report = execFileSync(process.execPath, ['spdk/probe.js', '--report'], { cwd: root, env: { ...process.env, SPDK_NODE_NO_LIBSPDK: '1' } }).toString();
    expect(report).to.match(/libspdk engine not built: SPDK_NODE_NO_LIBSPDK=1\. The builtin engine is built and used\./);
    let failed = false;
    try {
      execFileSync(process.execPath, ['spdk/probe.js', '--report'], { cwd: root, stdio: 'pipe', env: { ...process.env, SPDK_NODE_NO_LIBSPDK: '1', SPDK_NODE_REQUIRE_LIBSPDK: '1' } });
    } catch (e) {
      failed = /cannot be built: SPDK_NODE_NO_LIBSPDK=1/.test(String((e as { stderr: Buffer }).stderr));
    }
    expect(failed).to.equal(true);
  });

  it('rejects bad start options before starting anything', async () => {
    for (const cores of [[], [-1], [0, 0], [1.5]] as number[][]) {
      try {
        await Spdk.start({ engine: 'builtin', cores });
        expect.fail(`started with cores ${JSON.stringify(cores)}`);
      } catch (e) {
        expect((e as SpdkError).code).to.equal('ERR_INVALID_ARG');
      }
    }
  });

  it('errors from native code are SpdkErrors with errno and op', async () => {
    const spdk = await Spdk.start({ engine: 'builtin', cores: [0] });
    try {
      await spdk.bdev.open('nope');
      expect.fail('opened');
    } catch (e) {
      expect(e).to.be.instanceOf(SpdkError);
      expect((e as SpdkError).errno).to.equal(19);
      expect((e as SpdkError).code).to.equal('ENODEV');
    } finally {
      await spdk.stop();
    }
  });

  it('starts and stops repeatedly, with reactors on two cores', async () => {
    for (let i = 0; i < 3; i++) {
      const spdk = await Spdk.start({ engine: 'builtin', cores: [0, 1] });
      expect(spdk.reactorStats().length).to.equal(2);
      await spdk.stop();
      await spdk.stop();
      expect(spdk.running).to.equal(false);
    }
  });
});
