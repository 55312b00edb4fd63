import { expect } from 'chai';
import { requireLibFuzzer, runCampaign } from './helpers/libfuzzer';

/**
 * A short coverage-guided pass (libFuzzer, ASan, UBSan) on the NVMe/TCP codec and on the builtin
 * target as a host sees it, seeded with recorded valid sessions (test/fuzz/). The long pass is in
 * test/long; a campaign of any length is `test/fuzz/run.sh --seconds N`.
 */
describe('libFuzzer: NVMe/TCP codec and builtin target (short pass)', function () {
  this.timeout(300000);

  before(function () {
    requireLibFuzzer(this);
  });

  it('15 s per target: no crash, hang, leaked queue pair or memory error', () => {
    const r = runCampaign(15);
    for (const [name, t] of r.targets) expect(t.runs, `${name} executions`).to.be.greaterThan(1000);
    // The seeds carry the target well past the first header checks (Connect, I/O commands).
    expect(r.targets.get('nvmf_target_fuzz')!.covStart).to.be.greaterThan(1000);
  });
});
