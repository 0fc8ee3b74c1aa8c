"""src/core/scoring/metrics.ts in numpy: the same four figures, the same
empty-mask conventions, the same per-batch paper mIoU, so a stage's figures
here are the ones the studio and `lesion-studio eval` compute."""
import numpy as np

ISIC_JACCARD_THRESHOLD = 0.65


def confusion(pred, target):
    p = np.asarray(pred).ravel() != 0
    t = np.asarray(target).ravel() != 0
    if p.size != t.size:
        raise ValueError(f'prediction has {p.size} pixels, target {t.size}')
    tp = int(np.count_nonzero(p & t))
    fp = int(np.count_nonzero(p & ~t))
    fn = int(np.count_nonzero(~p & t))
    return {'tp': tp, 'fp': fp, 'fn': fn, 'tn': p.size - tp - fp - fn}


def macro_iou(c):
    """torchmetrics 0.9.3 macro Jaccard with absent_score=0."""
    lesion_union = c['tp'] + c['fp'] + c['fn']
    background_union = c['tn'] + c['fp'] + c['fn']
    lesion = 0 if lesion_union == 0 else c['tp'] / lesion_union
    background = 0 if background_union == 0 else c['tn'] / background_union
    return (lesion + background) / 2


def lesion_jaccard(c):
    union = c['tp'] + c['fp'] + c['fn']
    return 1 if union == 0 else c['tp'] / union


def lesion_dice(c):
    denominator = 2 * c['tp'] + c['fp'] + c['fn']
    return 1 if denominator == 0 else 2 * c['tp'] / denominator


class MetricAccumulator:
    """Each add_batch is one batch of the paper's mIoU, as in metrics.ts."""

    def __init__(self):
        self.pooled = {'tp': 0, 'fp': 0, 'fn': 0, 'tn': 0}
        self.weighted_batch_iou = 0.0
        self.thresholded_sum = 0.0
        self.scores = []

    def add_batch(self, preds, targets, ids=None):
        if len(preds) != len(targets):
            raise ValueError(f'batch has {len(preds)} predictions, {len(targets)} targets')
        if not preds:
            return
        batch = {'tp': 0, 'fp': 0, 'fn': 0, 'tn': 0}
        for i, (p, t) in enumerate(zip(preds, targets)):
            c = confusion(p, t)
            for k in batch:
                batch[k] += c[k]
            iou = lesion_jaccard(c)
            self.thresholded_sum += 0 if iou < ISIC_JACCARD_THRESHOLD else iou
            self.scores.append({'id': ids[i] if ids else str(len(self.scores)), 'lesionIoU': iou, 'dice': lesion_dice(c)})
        for k in batch:
            self.pooled[k] += batch[k]
        self.weighted_batch_iou += macro_iou(batch) * len(preds)

    def summary(self):
        """metrics.ts report() without perImage (evaluate.ts summary); NaN before any image, as there."""
        n = len(self.scores)
        if n == 0:
            nan = float('nan')
            return {'paperMIoU': nan, 'pooledMIoU': nan, 'lesionIoU': nan, 'dice': nan, 'thresholdedJaccard': nan, 'images': 0}
        return {
            'paperMIoU': self.weighted_batch_iou / n,
            'pooledMIoU': macro_iou(self.pooled),
            'lesionIoU': lesion_jaccard(self.pooled),
            'dice': lesion_dice(self.pooled),
            'thresholdedJaccard': self.thresholded_sum / n,
            'images': n,
        }
