/**
 * The mask editor's operations against masks drawn by hand: each expected
 * mask below is written out pixel by pixel ('#' lesion, '.' background).
 */
import { describe, expect, it } from 'vitest';
import type { BinaryMask } from '../src/core/io.ts';
import { emptyMask, fillHoles, fillPolygon, lesionPixels, MaskHistory, strokePath, strokeSegment } from '../src/core/active/mask-edit.ts';

function parse(rows: string[]): BinaryMask {
  const width = rows[0].length;
  const data = Uint8Array.from(rows.join('').split(''), (c) => (c === '#' ? 1 : 0));
  return { width, height: rows.length, data };
}

function show(mask: BinaryMask): string[] {
  const rows: string[] = [];
  for (let y = 0; y < mask.height; y++) {
    rows.push([...mask.data.subarray(y * mask.width, (y + 1) * mask.width)].map((v) => (v ? '#' : '.')).join(''));
  }
  return rows;
}

describe('brush and eraser', () => {
  it('a disc of radius 1.5 at a pixel centre covers the centres within 1.5 px: a 3x3 block', () => {
    const mask = emptyMask(5, 5);
    strokeSegment(mask, { x: 2.5, y: 2.5 }, { x: 2.5, y: 2.5 }, 1.5, 1);
    expect(show(mask)).toEqual(['.....', '.###.', '.###.', '.###.', '.....']);
  });

  it('a disc of radius 2 adds the four pixels straight out at distance 2, not the corners (2.83)', () => {
    const mask = emptyMask(5, 5);
    strokeSegment(mask, { x: 2.5, y: 2.5 }, { x: 2.5, y: 2.5 }, 2, 1);
    expect(show(mask)).toEqual(['..#..', '.###.', '#####', '.###.', '..#..']);
  });

  it('a segment paints the capsule around it, with no gap between its ends', () => {
    const mask = emptyMask(8, 4);
    strokeSegment(mask, { x: 1.5, y: 1.5 }, { x: 6.5, y: 1.5 }, 1, 1);
    expect(show(mask)).toEqual(['.######.', '########', '.######.', '........']);
  });

  it('the eraser clears what it passes over and nothing else', () => {
    const mask = parse(['######', '######', '######']);
    strokeSegment(mask, { x: 3, y: 0 }, { x: 3, y: 3 }, 0.5, 0);
    expect(show(mask)).toEqual(['##..##', '##..##', '##..##']);
  });

  it('a path of pointer samples joins its segments, and stays inside the image at the border', () => {
    const mask = emptyMask(5, 5);
    strokePath(mask, [{ x: 0.5, y: 0.5 }, { x: 4.5, y: 0.5 }, { x: 4.5, y: 4.5 }], 0.5, 1);
    expect(show(mask)).toEqual(['#####', '....#', '....#', '....#', '....#']);
  });
});

describe('fill holes', () => {
  it('fills background enclosed by lesion, keeps background that reaches the border', () => {
    const mask = parse([
      '.......',
      '.#####.',
      '.#..#..',
      '.####..',
      '.......',
    ]);
    fillHoles(mask);
    expect(show(mask)).toEqual([
      '.......',
      '.#####.',
      '.####..',
      '.####..',
      '.......',
    ]);
  });

  it('a hole closed only diagonally is still a hole: background is 4-connected', () => {
    const mask = parse([
      '.#...',
      '#.#..',
      '.#...',
    ]);
    fillHoles(mask);
    expect(show(mask)).toEqual(['.#...', '###..', '.#...']);
  });
});

describe('polygon raster (even-odd, pixel centres)', () => {
  it('an axis-aligned rectangle on pixel edges covers exactly the pixels inside', () => {
    const mask = emptyMask(6, 5);
    fillPolygon(mask, [{ x: 1, y: 1 }, { x: 5, y: 1 }, { x: 5, y: 4 }, { x: 1, y: 4 }], 1);
    expect(show(mask)).toEqual(['......', '.####.', '.####.', '.####.', '......']);
  });

  it('a triangle keeps the pixels whose centres are inside', () => {
    const mask = emptyMask(6, 6);
    fillPolygon(mask, [{ x: 0, y: 0 }, { x: 6, y: 0 }, { x: 0, y: 6 }], 1);
    // Row y: centre (x+0.5, y+0.5) inside when x + 0.5 < 6 - (y + 0.5), i.e. x < 5 - y.
    expect(show(mask)).toEqual(['#####.', '####..', '###...', '##....', '#.....', '......']);
  });

  it('a self-crossing lasso leaves out its doubly wound part (even-odd rule)', () => {
    const mask = emptyMask(7, 7);
    // Two squares traced as one outline: 0..5 and 2..7 overlap in 2..5, wound twice.
    fillPolygon(mask, [
      { x: 0, y: 0 }, { x: 5, y: 0 }, { x: 5, y: 5 }, { x: 2, y: 5 }, { x: 2, y: 2 }, { x: 7, y: 2 }, { x: 7, y: 7 }, { x: 0, y: 7 },
    ].slice(0, 8), 1);
    expect(show(mask)).toEqual([
      '#####..',
      '#####..',
      '##...##',
      '##...##',
      '##...##',
      '#######',
      '#######',
    ]);
  });

  it('erases with value 0 and ignores a polygon of fewer than three points', () => {
    const mask = parse(['####', '####', '####', '####']);
    fillPolygon(mask, [{ x: 1, y: 1 }, { x: 3, y: 1 }], 0);
    expect(lesionPixels(mask)).toBe(16);
    fillPolygon(mask, [{ x: 1, y: 1 }, { x: 3, y: 1 }, { x: 3, y: 3 }, { x: 1, y: 3 }], 0);
    expect(show(mask)).toEqual(['####', '#..#', '#..#', '####']);
  });
});

describe('undo and redo', () => {
  it('undoes a stroke, an erase and a fill in reverse order and redoes them', () => {
    const mask = emptyMask(5, 5);
    const history = new MaskHistory(mask);
    const states: string[][] = [show(mask)];
    history.begin();
    fillPolygon(mask, [{ x: 0, y: 0 }, { x: 5, y: 0 }, { x: 5, y: 5 }, { x: 0, y: 5 }], 1);
    expect(history.commit()).toBe(true);
    states.push(show(mask));
    history.begin();
    strokeSegment(mask, { x: 2.5, y: 2.5 }, { x: 2.5, y: 2.5 }, 0.5, 0);
    history.commit();
    states.push(show(mask));
    expect(states[2]).toEqual(['#####', '#####', '##.##', '#####', '#####']);
    history.begin();
    fillHoles(mask);
    history.commit();
    expect(show(mask)).toEqual(states[1]);

    expect(history.undo()).toBe(true);
    expect(show(mask)).toEqual(states[2]);
    expect(history.undo()).toBe(true);
    expect(show(mask)).toEqual(states[1]);
    expect(history.undo()).toBe(true);
    expect(show(mask)).toEqual(states[0]);
    expect(history.undo()).toBe(false);
    expect(history.redo()).toBe(true);
    expect(history.redo()).toBe(true);
    expect(show(mask)).toEqual(states[2]);
  });

  it('an edit that changes nothing is no undo step, and a new edit drops the redo stack', () => {
    const mask = emptyMask(3, 3);
    const history = new MaskHistory(mask);
    history.begin();
    strokeSegment(mask, { x: 1.5, y: 1.5 }, { x: 1.5, y: 1.5 }, 0.5, 0);
    expect(history.commit()).toBe(false);
    expect(history.canUndo).toBe(false);
    history.replace(Uint8Array.from([1, 1, 1, 0, 0, 0, 0, 0, 0]));
    history.undo();
    expect(history.canRedo).toBe(true);
    history.replace(Uint8Array.from([0, 0, 0, 0, 0, 0, 1, 1, 1]));
    expect(history.canRedo).toBe(false);
    history.undo();
    expect(show(mask)).toEqual(['...', '...', '...']);
    expect(() => history.replace(new Uint8Array(4))).toThrow('mask of 4 pixels given for a 3x3 image');
  });
});
