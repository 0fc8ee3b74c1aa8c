import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { recogniseDatasets, summariseIndex, type DatasetIndex, type DatasetSet } from '../src/core/dataset/layouts.ts';
import { FsFileSource } from '../src/node/files.ts';
import { datasetsRoot } from './helpers/datasets.ts';

const datasets = datasetsRoot;

function setNamed(index: DatasetIndex, name: string): DatasetSet {
  const set = index.sets.find((candidate) => candidate.name === name);
  if (!set) throw new Error(`no set ${name} in ${index.sets.map((s) => s.name).join(', ')}`);
  return set;
}

function idOfFile(file: string): string {
  return path.basename(file).replace(/\.[^.]+$/, '');
}

describe('the shared data sets', async () => {
  const paths = await new FsFileSource([datasets]).list();
  const index = recogniseDatasets(paths);

  it('finds the three sets with their exact pair counts and no strays', () => {
    expect(index.sets.map((set) => [set.name, set.layout, set.labeled.length, set.unlabeled.length])).toEqual([
      ['isic2017', 'isic2017', 65, 0],
      ['isic2018', 'isic2018', 33, 0],
      ['ph2', 'ph2', 32, 0],
    ]);
    expect(index.strays).toEqual([]);
  });

  it('pairs exactly as MANIFEST.csv lists the pairs', () => {
    const listed = readFileSync(path.join(datasets, 'MANIFEST.csv'), 'utf8')
      .trim()
      .split('\n')
      .slice(1)
      .map((line) => line.split(',').slice(0, 4).join(' '))
      .sort();
    const found = index.sets
      .flatMap((set) => set.labeled)
      .map((s) => [s.set, s.id, s.image.slice('datasets/'.length), s.mask!.slice('datasets/'.length)].join(' '))
      .sort();
    expect(found).toEqual(listed);
  });

  it('takes the split from the folder names', () => {
    expect(setNamed(index, 'isic2018').countsBySplit.train).toEqual({ labeled: 33, unlabeled: 0 });
    expect(setNamed(index, 'isic2017').countsBySplit.val).toEqual({ labeled: 65, unlabeled: 0 });
    expect(setNamed(index, 'ph2').countsBySplit.unspecified).toEqual({ labeled: 32, unlabeled: 0 });
  });

  it('pairs every image with the mask of the same id, and both files exist', () => {
    for (const set of index.sets) {
      for (const sample of set.labeled) {
        expect(sample.set).toBe(set.name);
        expect(sample.mask).toBeDefined();
        expect(idOfFile(sample.image)).toBe(sample.id);
        expect(idOfFile(sample.mask!).toLowerCase()).toMatch(new RegExp(`^${sample.id.toLowerCase()}_(segmentation|lesion)$`));
        for (const file of [sample.image, sample.mask!]) {
          expect(existsSync(path.join(datasets, file.slice('datasets/'.length)))).toBe(true);
        }
      }
    }
  });

  it('summarises counts per set', () => {
    const summary = summariseIndex(index);
    expect(summary).toMatch(/^3 data sets: 130 labeled pairs, 0 unlabeled images, 0 strays/);
    expect(summary).toMatch(/isic2018\s+33 labeled \[train 33\]/);
  });
});

describe('ISIC layouts', () => {
  it('pairs ISIC 2018 per split and ignores metadata files', () => {
    const index = recogniseDatasets([
      'isic/ISIC2018_Task1-2_Training_Input/ISIC_0000001.jpg',
      'isic/ISIC2018_Task1-2_Training_Input/ATTRIBUTION.txt',
      'isic/ISIC2018_Task1-2_Training_Input/LICENSE.txt',
      'isic/ISIC2018_Task1_Training_GroundTruth/ISIC_0000001_segmentation.png',
      'isic/ISIC2018_Task1-2_Validation_Input/ISIC_0000002.jpg',
      'isic/ISIC2018_Task1_Validation_GroundTruth/ISIC_0000002_segmentation.png',
      'isic/ISIC2018_Task1-2_Test_Input/ISIC_0000003.jpg',
      'isic/ISIC2018_Task1_Test_GroundTruth/ISIC_0000003_segmentation.png',
      'isic/ISIC2018_Task2_Training_GroundTruth_v3/ISIC_0000001_attribute_globules.png',
      'isic/.DS_Store',
      'isic/README.md',
    ]);
    expect(index.strays).toEqual([]);
    expect(index.sets).toHaveLength(1);
    const [set] = index.sets;
    expect(set).toMatchObject({ name: 'isic2018', layout: 'isic2018', root: 'isic' });
    expect(set.labeled.map((s) => [s.id, s.split])).toEqual([
      ['ISIC_0000001', 'train'],
      ['ISIC_0000002', 'val'],
      ['ISIC_0000003', 'test'],
    ]);
  });

  it('pairs ISIC 2017 with _Segmentation in any case, and ignores superpixels', () => {
    const index = recogniseDatasets([
      'ISIC-2017_Training_Data/ISIC_0000010.jpg',
      'ISIC-2017_Training_Data/ISIC_0000010_superpixels.png',
      'ISIC-2017_Training_Data/ISIC_0000011.jpg',
      'ISIC-2017_Training_Data/ISIC_0000011_superpixels.png',
      'ISIC-2017_Training_Data/ISIC-2017_Training_Data_metadata.csv',
      'ISIC-2017_Training_Part1_GroundTruth/ISIC_0000010_Segmentation.png',
      'ISIC-2017_Training_Part1_GroundTruth/ISIC_0000011_segmentation.png',
      'ISIC-2017_Test_v2_Data/ISIC_0000012.jpg',
      'ISIC-2017_Test_v2_Part1_GroundTruth/ISIC_0000012_SEGMENTATION.png',
      'ISIC-2017_Training_Part2_GroundTruth/ISIC_0000010_features.json',
    ]);
    expect(index.strays).toEqual([]);
    const [set] = index.sets;
    expect(set).toMatchObject({ name: 'isic2017', layout: 'isic2017', root: '' });
    expect(set.labeled.map((s) => [s.id, s.split, s.mask])).toEqual([
      ['ISIC_0000010', 'train', 'ISIC-2017_Training_Part1_GroundTruth/ISIC_0000010_Segmentation.png'],
      ['ISIC_0000011', 'train', 'ISIC-2017_Training_Part1_GroundTruth/ISIC_0000011_segmentation.png'],
      ['ISIC_0000012', 'test', 'ISIC-2017_Test_v2_Part1_GroundTruth/ISIC_0000012_SEGMENTATION.png'],
    ]);
  });
});

describe('PH2 layout', () => {
  it('pairs the dermoscopic image with the lesion mask and ignores the roi folders', () => {
    const root = 'PH2Dataset/PH2 Dataset images';
    const index = recogniseDatasets([
      `${root}/IMD002/IMD002_Dermoscopic_Image/IMD002.bmp`,
      `${root}/IMD002/IMD002_lesion/IMD002_lesion.bmp`,
      `${root}/IMD002/IMD002_roi/IMD002_R1_Label4.bmp`,
      `${root}/IMD003/IMD003_Dermoscopic_Image/IMD003.bmp`,
      `${root}/IMD003/IMD003_lesion/IMD003_lesion.bmp`,
      'PH2Dataset/PH2_dataset.xlsx',
      'PH2Dataset/PH2_dataset.txt',
    ]);
    expect(index.strays).toEqual([]);
    expect(index.sets).toHaveLength(1);
    expect(index.sets[0]).toMatchObject({ name: 'ph2', layout: 'ph2', root });
    expect(index.sets[0].labeled.map((s) => [s.id, s.split, s.mask])).toEqual([
      ['IMD002', 'unspecified', `${root}/IMD002/IMD002_lesion/IMD002_lesion.bmp`],
      ['IMD003', 'unspecified', `${root}/IMD003/IMD003_lesion/IMD003_lesion.bmp`],
    ]);
  });
});

describe('generic layouts', () => {
  it('pairs images/ with masks/ siblings, with or without a mask suffix, split folders on either side', () => {
    const index = recogniseDatasets([
      'mine/train/images/a.jpg',
      'mine/train/masks/a.png',
      'mine/train/images/b.jpg',
      'mine/train/masks/b_mask.png',
      'mine/val/images/c.jpg',
      'mine/val/masks/c_segmentation.png',
      'other/images/test/d.png',
      'other/masks/test/d_lesion.png',
    ]);
    expect(index.strays).toEqual([]);
    expect(index.sets.map((set) => [set.name, set.layout, set.root])).toEqual([
      ['mine', 'images-masks', 'mine'],
      ['other', 'images-masks', 'other'],
    ]);
    expect(index.sets[0].labeled.map((s) => [s.id, s.split, s.mask])).toEqual([
      ['a', 'train', 'mine/train/masks/a.png'],
      ['b', 'train', 'mine/train/masks/b_mask.png'],
      ['c', 'val', 'mine/val/masks/c_segmentation.png'],
    ]);
    expect(index.sets[1].labeled.map((s) => [s.id, s.split])).toEqual([['d', 'test']]);
  });

  it('pairs x.jpg with x_mask.png in the same folder', () => {
    const index = recogniseDatasets(['lesions/x.jpg', 'lesions/x_mask.png', 'lesions/y.png', 'lesions/y_Segmentation.png']);
    expect(index.strays).toEqual([]);
    expect(index.sets[0]).toMatchObject({ name: 'lesions', layout: 'same-folder' });
    expect(index.sets[0].labeled.map((s) => [s.id, s.mask])).toEqual([
      ['x', 'lesions/x_mask.png'],
      ['y', 'lesions/y_Segmentation.png'],
    ]);
  });

  it('turns folders of images without masks into unlabeled pools, not strays', () => {
    const index = recogniseDatasets([
      'archive/ISIC2019_Training_Input/ISIC_0060001.jpg',
      'archive/ISIC2019_Training_Input/ISIC_0060002.jpg',
      'archive/ISIC2019_Training_Input/ISIC_2019_Training_Metadata.csv',
      'pool/images/p.jpg',
    ]);
    expect(index.strays).toEqual([]);
    expect(index.sets.map((set) => [set.name, set.layout, set.labeled.length, set.unlabeled.length])).toEqual([
      ['ISIC2019_Training_Input', 'unlabeled', 0, 2],
      ['images', 'unlabeled', 0, 1],
    ]);
    expect(index.sets[0].unlabeled[0]).toEqual({
      id: 'ISIC_0060001',
      set: 'ISIC2019_Training_Input',
      layout: 'unlabeled',
      split: 'unspecified',
      image: 'archive/ISIC2019_Training_Input/ISIC_0060001.jpg',
    });
  });
});

describe('strays', () => {
  const index = recogniseDatasets([
    'isic/ISIC2018_Task1-2_Training_Input/ISIC_0000001.jpg',
    'isic/ISIC2018_Task1_Training_GroundTruth/ISIC_0000001_segmentation.png',
    'isic/ISIC2018_Task1-2_Training_Input/ISIC_0000002.jpg',
    'isic/ISIC2018_Task1_Training_GroundTruth/ISIC_0000003_segmentation.png',
    'isic/ISIC2018_Task1-2_Validation_Input/ISIC_0000001.jpg',
    'isic/ISIC2018_Task1_Validation_GroundTruth/ISIC_0000001_segmentation.png',
    'isic/ISIC2018_Task1-2_Training_Input/ISIC_0000004.tif',
  ]);
  const kindOf = (file: string) => index.strays.filter((stray) => stray.path === file).map((stray) => stray.kind);

  it('reports an image without mask and still offers it as unlabeled', () => {
    expect(kindOf('isic/ISIC2018_Task1-2_Training_Input/ISIC_0000002.jpg')).toEqual(['image-without-mask']);
    expect(index.sets[0].unlabeled.map((s) => s.id)).toEqual(['ISIC_0000002']);
    expect(index.sets[0].countsBySplit.train).toEqual({ labeled: 1, unlabeled: 1 });
  });

  it('reports a mask without image', () => {
    expect(kindOf('isic/ISIC2018_Task1_Training_GroundTruth/ISIC_0000003_segmentation.png')).toEqual([
      'mask-without-image',
    ]);
  });

  it('reports the same id in two folders once, keeping the first', () => {
    expect(kindOf('isic/ISIC2018_Task1-2_Validation_Input/ISIC_0000001.jpg')).toEqual(['duplicate-id']);
    expect(index.sets[0].labeled.map((s) => s.image)).toEqual(['isic/ISIC2018_Task1-2_Training_Input/ISIC_0000001.jpg']);
    const duplicate = index.strays.find((stray) => stray.kind === 'duplicate-id')!;
    expect(duplicate.detail).toContain('isic/ISIC2018_Task1-2_Training_Input/ISIC_0000001.jpg');
    expect(duplicate.detail).toContain('ISIC2018_Task1_Validation_GroundTruth/ISIC_0000001_segmentation.png');
  });

  it('reports a file that is not a supported image', () => {
    expect(kindOf('isic/ISIC2018_Task1-2_Training_Input/ISIC_0000004.tif')).toEqual(['unsupported-file']);
  });

  it('lists exactly those four strays, and the summary counts them by kind', () => {
    expect(index.strays).toHaveLength(4);
    expect(summariseIndex(index)).toContain('Strays, duplicate-id: 1');
  });

  it('prefers the labeled copy of a duplicated id', () => {
    const duplicated = recogniseDatasets(['d/val/images/a.jpg', 'd/train/images/a.jpg', 'd/val/masks/a.png', 'd/train/masks/x.png']);
    expect(duplicated.sets[0].labeled.map((s) => s.image)).toEqual(['d/val/images/a.jpg']);
    expect(duplicated.strays.map((s) => [s.path, s.kind])).toEqual([
      ['d/train/images/a.jpg', 'duplicate-id'],
      ['d/train/masks/x.png', 'mask-without-image'],
    ]);
  });
});

describe('ids that differ only in case', () => {
  const pairs = (index: DatasetIndex) => index.sets.flatMap((set) => set.labeled.map((s) => [s.image, s.mask]));
  const T = 'isic/ISIC2018_Task1-2_Training_Input/';
  const G = 'isic/ISIC2018_Task1_Training_GroundTruth/';

  it('pair an image with the mask of its exact name first, and with one that differs only in case when it is the only one', () => {
    const index = recogniseDatasets([
      `${T}isic_0000001.jpg`,
      `${G}ISIC_0000001_segmentation.png`,
      `${G}isic_0000001_segmentation.png`,
      `${T}ISIC_0000002.jpg`,
      `${G}isic_0000002_segmentation.png`,
    ]);
    expect(pairs(index).sort()).toEqual([
      [`${T}ISIC_0000002.jpg`, `${G}isic_0000002_segmentation.png`],
      [`${T}isic_0000001.jpg`, `${G}isic_0000001_segmentation.png`],
    ]);
    expect(index.strays).toEqual([
      {
        path: `${G}ISIC_0000001_segmentation.png`,
        kind: 'duplicate-id',
        detail: `mask id ISIC_0000001 differs only in case from ${G}isic_0000001_segmentation.png, which is used (Windows and macOS would see one file); this mask is not used`,
      },
    ]);
  });

  it('report the image that differs only in case as the stray, not the one whose mask matches', () => {
    const index = recogniseDatasets(['d/images/a.jpg', 'd/images/A.jpg', 'd/masks/a.png']);
    expect(pairs(index)).toEqual([['d/images/a.jpg', 'd/masks/a.png']]);
    expect(index.sets[0].unlabeled).toEqual([]);
    expect(index.strays).toEqual([
      {
        path: 'd/images/A.jpg',
        kind: 'duplicate-id',
        detail: 'id A differs only in case from d/images/a.jpg, which is used (Windows and macOS would see one file); this image is not used',
      },
    ]);
  });

  it('use one of two complete pairs whose ids differ only in case and name both files of the other', () => {
    const index = recogniseDatasets(['d/images/a.jpg', 'd/images/A.jpg', 'd/masks/a.png', 'd/masks/A.png']);
    // Code-unit order: upper case first, the same on every machine.
    expect(pairs(index)).toEqual([['d/images/A.jpg', 'd/masks/A.png']]);
    expect(index.strays).toEqual([
      {
        path: 'd/images/a.jpg',
        kind: 'duplicate-id',
        detail: 'id a differs only in case from d/images/A.jpg, which is used (Windows and macOS would see one file); this image and its mask d/masks/a.png are not used',
      },
    ]);
  });
});

describe('scale', () => {
  // How long indexing takes is measured by bench/scale.ts, not asserted here: a busy CI machine is no stopwatch.
  it('indexes 30,000 paths the same whatever their order', () => {
    const paths: string[] = [];
    for (let i = 0; i < 10_000; i++) {
      const id = `ISIC_${String(i).padStart(7, '0')}`;
      paths.push(`isic/ISIC2018_Task1-2_Training_Input/${id}.jpg`);
      paths.push(`isic/ISIC2018_Task1_Training_GroundTruth/${id}_segmentation.png`);
      paths.push(`isic2019/ISIC2019_Training_Input/ISIC_${String(i + 50_000).padStart(7, '0')}.jpg`);
    }
    const index = recogniseDatasets(paths);
    expect(index.sets.map((set) => [set.name, set.labeled.length, set.unlabeled.length])).toEqual([
      ['ISIC2019_Training_Input', 0, 10_000],
      ['isic2018', 10_000, 0],
    ]);
    expect(recogniseDatasets([...paths].reverse())).toEqual(index);
  });
});
