"""The suite's evaluation computes each sample alone, so that a sample's lines do not depend on
its batch-mates, and ``bench.predict.Predictor`` (which answers a query without them) can give
the suite's lines to the last digit."""
import torch

from r2bench.bench.train import predict
from r2bench.datasets.formats.base import Sample
from r2bench.datasets.vtg import VTGDataset
from tests.tiny_models import tiny_model

QUERIES = ["a red circle", "a small blue square moving slowly to the left in the upper half",
           "green", "a large yellow triangle standing still", "a circle", "two shapes cross in the middle"]
HEAD = dict(nms="hard", nms_threshold=0.7, window_unit=2.0, strides=(1, 2, 4, 8), use_tef=True)


def _data(model, n=16, seed=1, fps=0.5):
    """``n`` samples on random cached features of 8-39 frames, queries of several lengths."""
    g = torch.Generator().manual_seed(seed)
    shape = (len(model.video_taps.layers), model.backbone.tokens_per_frame, model.backbone.video_width)
    lengths = torch.randint(8, 40, (n,), generator=g).tolist()
    videos = {f"v{i}": {"block": torch.randn(t, *shape, generator=g).half()} for i, t in enumerate(lengths)}
    samples = [Sample(qid=i, vid=f"v{i}", query=QUERIES[i % len(QUERIES)], duration=t / fps, windows=((2.0, 8.0),),
                      clip_ids=(), saliency=(), clip_seconds=2.0, num_clips=t, source=f"test:{i}", raw={})
               for i, t in enumerate(lengths)]
    return samples, videos


def test_a_samples_lines_do_not_depend_on_its_batch_mates():
    """Batched (16 samples of several video and query lengths, padded), one or two of these
    lines came out otherwise than alone, varying from run to run, on the machine this was
    written on (near-tied windows swap); alone, they are the same lines however grouped."""
    model = tiny_model("r2_tuning", None, HEAD)
    samples, videos = _data(model)

    def lines(subset):
        data = VTGDataset(subset, videos.__getitem__, model.backbone.tokenize, 0.5, "features")
        return predict(model, data, 16, torch.device("cpu"), amp=False, progress=False)[0]

    assert lines(samples) == [line for s in samples for line in lines([s])]
