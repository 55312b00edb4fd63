import { expect } from 'chai';
import { powerCutCampaign } from './helpers/powercut';

describe('lvol store: power cut after every write of a run of metadata operations', function () {
  this.timeout(120000);
  it('reopens to the state before or after the operation in flight, with every answered operation there', async () => {
    const r = await powerCutCampaign(2, 12345);
    expect(r.cuts).to.be.greaterThan(20);
  });
});
