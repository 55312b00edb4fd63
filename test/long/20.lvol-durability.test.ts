import { expect } from 'chai';
import { crashCampaign } from '../helpers/lvol-crash';
import { powerCutCampaign } from '../helpers/powercut';

describe('lvol durability campaigns', function () {
  this.timeout(1500000);
  it('200 SIGKILL rounds', async () => {
    await crashCampaign(200, 600);
  });
  it('power cut after every event, 200 rounds of random fates over the run', async () => {
    let cuts = 0;
    for (let seed = 1; cuts < 200 * 40; seed++) cuts += (await powerCutCampaign(3, seed)).cuts;
    expect(cuts).to.be.at.least(8000);
  });
});
