//! Non-maximum suppression as MTCNN's reference uses it: torchvision's IoU NMS (areas without
//! the +1) for the first two stages, and the original "Min" overlap (with +1) for the last.

/// An axis-aligned box `[x1, y1, x2, y2]` in pixels.
pub type Bbox = [f32; 4];

/// Overlap measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlap {
    /// torchvision's IoU: `inter / (a + b - inter)`, widths `x2 - x1`.
    Iou,
    /// Intersection over the smaller box, widths `x2 - x1 + 1` (the original MTCNN code).
    Min,
}

/// Indices of the boxes kept, highest score first; a box is dropped when it overlaps a kept one
/// by more than `threshold`.
pub fn nms(boxes: &[Bbox], scores: &[f32], threshold: f32, overlap: Overlap) -> Vec<usize> {
    let mut order: Vec<usize> = (0..boxes.len().min(scores.len())).collect();
    // Stable descending sort, as torchvision's CPU kernel does; NaN scores sort last.
    order.sort_by(|&a, &b| {
        scores[b]
            .partial_cmp(&scores[a])
            .unwrap_or_else(|| scores[a].is_nan().cmp(&scores[b].is_nan()))
    });
    let plus = if overlap == Overlap::Min { 1.0 } else { 0.0 };
    let area = |b: &Bbox| (b[2] - b[0] + plus) * (b[3] - b[1] + plus);
    let mut suppressed = vec![false; boxes.len()];
    let mut keep = Vec::new();
    for (n, &i) in order.iter().enumerate() {
        if suppressed[i] {
            continue;
        }
        keep.push(i);
        let a = &boxes[i];
        for &j in &order[n + 1..] {
            if suppressed[j] {
                continue;
            }
            let b = &boxes[j];
            let w = (a[2].min(b[2]) - a[0].max(b[0]) + plus).max(0.0);
            let h = (a[3].min(b[3]) - a[1].max(b[1]) + plus).max(0.0);
            let inter = w * h;
            let o = match overlap {
                Overlap::Iou => inter / (area(a) + area(b) - inter),
                Overlap::Min => inter / area(a).min(area(b)),
            };
            if o > threshold {
                suppressed[j] = true;
            }
        }
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_best_of_overlapping_boxes_and_every_separate_one() {
        let boxes = [
            [0.0, 0.0, 10.0, 10.0],
            [1.0, 1.0, 11.0, 11.0],
            [20.0, 20.0, 30.0, 30.0],
            [0.0, 0.0, 10.0, 10.0],
        ];
        let scores = [0.8, 0.9, 0.5, 0.1];
        assert_eq!(nms(&boxes, &scores, 0.5, Overlap::Iou), vec![1, 2]);
        // IoU of boxes 0 and 1 is 81/119 = 0.68: a threshold above it keeps both.
        assert_eq!(nms(&boxes, &scores, 0.7, Overlap::Iou), vec![1, 0, 2]);
    }

    #[test]
    fn min_overlap_drops_a_box_inside_a_bigger_one() {
        let boxes = [[0.0, 0.0, 99.0, 99.0], [10.0, 10.0, 29.0, 29.0]];
        // The small box lies wholly inside: IoU is 0.04, Min overlap is 1.
        assert_eq!(nms(&boxes, &[0.9, 0.95], 0.7, Overlap::Iou), vec![1, 0]);
        assert_eq!(nms(&boxes, &[0.9, 0.95], 0.7, Overlap::Min), vec![1]);
    }

    #[test]
    fn nan_scores_and_empty_input_do_not_panic() {
        assert!(nms(&[], &[], 0.5, Overlap::Iou).is_empty());
        let boxes = [[0.0, 0.0, 1.0, 1.0], [5.0, 5.0, 6.0, 6.0]];
        assert_eq!(nms(&boxes, &[f32::NAN, 0.5], 0.5, Overlap::Iou), vec![1, 0]);
    }
}
