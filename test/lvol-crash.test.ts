import { crashCampaign } from './helpers/lvol-crash';

describe('lvol store: SIGKILL at random points (short pass; test:long runs 200)', function () {
  this.timeout(180000);
  it('each restart shows every answered operation, exact cluster accounting and flushed data', async () => {
    await crashCampaign(6, 400);
  });
});
