/** The long network fuzz campaign against the builtin NVMe/TCP target (see test/helpers/nvmf-fuzz.ts). */
import { runNvmfFuzz } from '../helpers/nvmf-fuzz';

describe('long: NVMe/TCP target under a network fuzzer', function () {
  const rounds = Number(process.env.NVMF_FUZZ_ROUNDS ?? 20000);
  this.timeout(Math.max(120000, rounds * 50));

  it(`${rounds} fuzz connections; the witness host's verified I/O never stops, nothing leaks`, async () => {
    await runNvmfFuzz(rounds, 1_000_000, (s) => console.log(`      ${s}`));
  });
});
