/**
 * Pairing prediction files with ground truths as the ISIC scorer does:
 * by the ISIC number or the image id, refusing two candidates.
 */
import { describe, expect, it } from 'vitest';
import { matchPredictions, namesImage } from '../src/core/scoring/match.ts';

describe('namesImage', () => {
  it('takes any name holding the ISIC number, as the scorer does, but not a number inside a longer one', () => {
    for (const stem of ['ISIC_0000003_segmentation', 'ISIC_0000003_segmentation_prediction', 'isic_0000003', '0000003', 'pred0000003', 'ISIC_0000003_Segmentation']) {
      expect(namesImage(stem, 'ISIC_0000003'), stem).toBe(true);
    }
    for (const stem of ['ISIC_0000030_segmentation', '10000003', 'ISIC_00000031', 'ISIC_0000004']) expect(namesImage(stem, 'ISIC_0000003'), stem).toBe(false);
  });

  it('takes another id followed only by the words predictions carry, so x does not claim x_2', () => {
    for (const stem of ['IMD002', 'IMD002_segmentation', 'imd002_lesion', 'IMD002_segmentation_prediction', 'IMD002-mask']) expect(namesImage(stem, 'IMD002'), stem).toBe(true);
    for (const stem of ['IMD0021', 'IMD002_2_segmentation', 'xIMD002', 'IMD002_old']) expect(namesImage(stem, 'IMD002'), stem).toBe(false);
  });
});

describe('matchPredictions', () => {
  const truth = (id: string, setFolder = 'isic2018') => ({ id, setFolder });

  it('pairs files in the root or the truth\'s set folder, never another set\'s folder or deeper ones', () => {
    const [a, b, c, d] = [truth('ISIC_0000001'), truth('ISIC_0000002'), truth('ISIC_0000003'), truth('IMD004', 'ph2')];
    const m = matchPredictions([a, b, c, d], [
      'ISIC_0000001_segmentation_prediction.png',
      'isic2018/ISIC_0000002_segmentation.png',
      'isic2017/ISIC_0000003_segmentation.png',
      'old/isic2018/ISIC_0000003_segmentation.png',
      'ph2/IMD004_segmentation.png',
      'notes.txt',
    ]);
    expect(m.matched).toEqual([
      { truth: a, file: 'ISIC_0000001_segmentation_prediction.png' },
      { truth: b, file: 'isic2018/ISIC_0000002_segmentation.png' },
      { truth: d, file: 'ph2/IMD004_segmentation.png' },
    ]);
    expect(m.missing).toEqual([c]);
    expect(m.ambiguous).toEqual([]);
  });

  it('refuses two candidates for one truth, naming both: a flat file beside its set folder\'s, or two namings', () => {
    const [a, b] = [truth('ISIC_0000001'), truth('ISIC_0000002')];
    const m = matchPredictions([a, b], [
      'ISIC_0000001_segmentation.png',
      'isic2018/ISIC_0000001_segmentation.png',
      'ISIC_0000002.png',
      'ISIC_0000002_segmentation_prediction.png',
    ]);
    expect(m.ambiguous).toEqual([
      { truth: a, files: ['ISIC_0000001_segmentation.png', 'isic2018/ISIC_0000001_segmentation.png'] },
      { truth: b, files: ['ISIC_0000002.png', 'ISIC_0000002_segmentation_prediction.png'] },
    ]);
    expect(m.matched).toEqual([]);
  });
});
