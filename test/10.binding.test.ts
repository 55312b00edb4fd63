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
