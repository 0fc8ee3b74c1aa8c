/**
 * Which prediction file scores which ground truth, the way the ISIC
 * challenge scorer pairs them: by the image, not by one exact file name, and
 * never by guessing between two candidates. The scorer takes any file whose
 * name holds the ISIC number (`ISIC_0000003_segmentation_prediction.png`,
 * `0000003.png`) and refuses a ground truth with "No matching submission" or
 * "Multiple matching submissions".
 */

export interface Truth {
  id: string;
  /** The folder below the predictions' root where this truth's set may have its own files (see predict). */
  setFolder: string;
}

export interface Matching<T extends Truth> {
  matched: { truth: T; file: string }[];
  missing: T[];
  /** Truths with two or more candidate files: scoring either would be a guess. */
  ambiguous: { truth: T; files: string[] }[];
}

const ISIC_NUMBER = /ISIC_(\d{7})/i;
/** What may follow a non-ISIC id in a prediction's name: the words predict and other tools add. */
const SUFFIX_WORDS = /^([_-](segmentation|prediction|pred|mask|lesion))*$/i;

/**
 * Whether `stem` (a file name without its extension) names the image `id`:
 * for ISIC images, it holds the 7-digit ISIC number with no digit either
 * side (the scorer's substring rule, without letting 0000003 match inside
 * 10000003); for any other id, it is the id, followed by nothing but the
 * words above (so that `x` does not claim `x_2_segmentation`).
 */
export function namesImage(stem: string, id: string): boolean {
  const isic = ISIC_NUMBER.exec(id);
  if (isic) {
    for (let at = stem.indexOf(isic[1]); at >= 0; at = stem.indexOf(isic[1], at + 1)) {
      if (!/\d/.test(stem[at - 1] ?? '') && !/\d/.test(stem[at + isic[1].length] ?? '')) return true;
    }
    return false;
  }
  return stem.toLowerCase().startsWith(id.toLowerCase()) && SUFFIX_WORDS.test(stem.slice(id.length));
}

/**
 * Pairs each truth with the files (paths relative to the predictions' root,
 * '/'-separated) in the root itself or in the truth's set folder that name
 * its image. Files deeper down, or in another set's folder, are never
 * candidates, as the scorer reads one flat folder.
 */
export function matchPredictions<T extends Truth>(truths: readonly T[], files: readonly string[]): Matching<T> {
  const byFolder = new Map<string, { path: string; stem: string }[]>();
  for (const path of files) {
    const slash = path.lastIndexOf('/');
    const folder = slash < 0 ? '' : path.slice(0, slash);
    const name = path.slice(slash + 1);
    const dot = name.lastIndexOf('.');
    const entry = { path, stem: dot > 0 ? name.slice(0, dot) : name };
    const list = byFolder.get(folder.toLowerCase());
    if (list) list.push(entry);
    else byFolder.set(folder.toLowerCase(), [entry]);
  }
  const matching: Matching<T> = { matched: [], missing: [], ambiguous: [] };
  for (const truth of truths) {
    const folders = [...new Set(['', truth.setFolder.toLowerCase()])];
    const candidates = folders.flatMap((folder) => byFolder.get(folder) ?? []).filter((f) => namesImage(f.stem, truth.id)).map((f) => f.path);
    if (candidates.length === 0) matching.missing.push(truth);
    else if (candidates.length === 1) matching.matched.push({ truth, file: candidates[0] });
    else matching.ambiguous.push({ truth, files: candidates });
  }
  return matching;
}
