import { expect } from 'chai';
import { requireLibFuzzer, runCampaign } from '../helpers/libfuzzer';

/** The longer libFuzzer pass: 3 minutes per target (see test/fuzz/run.sh for any length). */
describe('libFuzzer: NVMe/TCP codec and builtin target (long pass)', function () {
  this.timeout(900000);

  before(function () {
    requireLibFuzzer(this);
  });

  it('180 s per target: no crash, hang, leaked queue pair or memory error', () => {
    const r = runCampaign(180);
    for (const [name, t] of r.targets) {
      console.log(`      ${name}: ${t.runs} executions, coverage ${t.covStart} -> ${t.covEnd}`);
      expect(t.runs, `${name} executions`).to.be.greaterThan(10000);
    }
  });
});
