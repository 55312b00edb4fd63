/**
 * Network fuzz pass against the builtin NVMe/TCP target (test/helpers/nvmf-fuzz.ts): mutated PDUs
 * after a valid ICReq/Connect on many connections, while a witness host's verified I/O must keep
 * working; afterwards no fuzz connection is left. NVMF_FUZZ_ROUNDS sets the number of
 * connections (the long run in test/long/ uses thousands).
 */
import { runNvmfFuzz } from './helpers/nvmf-fuzz';

describe('NVMe/TCP target under a network fuzzer (short pass)', function () {
  const rounds = Number(process.env.NVMF_FUZZ_ROUNDS ?? 200);
  this.timeout(Math.max(60000, rounds * 200));

  it(`${rounds} connections of mutated PDUs after a valid ICReq/Connect: the witness keeps its verified I/O, nothing is left behind`, async () => {
    await runNvmfFuzz(rounds, 1);
  });
});
