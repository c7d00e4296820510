"""adaptive-dff evaluate: CamVid mIoU per frame and under DFF, against direct computations."""

import numpy as np
import pytest
from helpers import tiny_dff
from sklearn.metrics import confusion_matrix as sk_confusion

from adaptive_dff.evaluate import evaluate_camvid
from adaptive_dff.data.camvid import load_split


def sk_miou(truths, guesses):
    truth = np.concatenate([t.ravel() for t in truths])
    guess = np.concatenate([g.ravel() for g in guesses])
    keep = truth != 11
    matrix = sk_confusion(truth[keep], guess[keep], labels=list(range(11))).astype(float)
    tp = np.diag(matrix)
    union = matrix.sum(0) + matrix.sum(1) - tp
    return float(np.mean(tp[union > 0] / union[union > 0]))


@pytest.mark.data
def test_evaluate_matches_sklearn_and_a_hand_written_dff_loop(data_root):
    model = tiny_dff(classes=11)
    result = evaluate_camvid(model, str(data_root), split="test", interval=5, log=lambda *_: None)

    test_frames, test_labels = load_split(str(data_root), "test")
    assert result["split_frames"] == len(test_frames) == 233
    guesses = [np.argmax(model.key_step(f)[0].numpy()[0], -1) for f in test_frames]
    assert result["per_frame_miou"] == pytest.approx(sk_miou(test_labels, guesses), abs=1e-9)
    frames, labels = load_split(str(data_root), "val")
    per_frame = [np.argmax(model.key_step(f)[0].numpy()[0], -1) for f in frames]
    assert result["clip_per_frame_miou"] == pytest.approx(sk_miou(labels, per_frame), abs=1e-9)

    dff = []
    for t, frame in enumerate(frames):
        if t % 5 == 0:
            logits, key = model.key_step(frame)
        else:
            logits, _ = model.propagate_step(frame, key)
        dff.append(np.argmax(logits.numpy()[0], -1))
    assert result["clip_dff_miou"] == pytest.approx(sk_miou(labels, dff), abs=1e-6)
    assert result["clip_dff_share"] == pytest.approx(result["clip_dff_miou"] / result["clip_per_frame_miou"])

    every = evaluate_camvid(model, str(data_root), split="val", interval=1, log=lambda *_: None)
    assert every["split_frames"] == len(frames)
    # The runner upsamples logits in its fused XLA program (equal to tf.image.resize to ~1e-6),
    # so a near-tie may flip a pixel's argmax against key_step's: the same tolerance as above.
    assert every["clip_dff_miou"] == pytest.approx(every["clip_per_frame_miou"], abs=1e-6)
    with pytest.raises(ValueError, match="predicts 5 classes; CamVid has 11"):
        evaluate_camvid(tiny_dff(classes=5), str(data_root))
    with pytest.raises(ValueError, match="needs a DFF model"):
        evaluate_camvid(model.flow_net, str(data_root))
