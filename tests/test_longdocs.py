"""Building blocks of the long-document evaluation: chunks, pooling, the probe."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest
import torch
from longdoc_tasks import CUES, FILLER, long_range_probe

from longzoo.models.stride import chunk_spans, masked_mean


@pytest.mark.parametrize(
    ("n", "length", "stride"), [(1, 512, 128), (512, 512, 128), (513, 512, 128), (4096, 512, 128), (5000, 510, 0)]
)
def test_chunks_cover_every_token_with_the_stated_overlap(n, length, stride):
    spans = chunk_spans(n, length, stride)
    assert len(spans) == 1 + math.ceil(max(0, n - length) / (length - stride))
    covered = set()
    for start, end in spans:
        assert end - start <= length
        covered.update(range(start, end))
    assert covered == set(range(n))
    for (_, end), (start, _) in pairwise(spans):
        assert end - start == stride  # consecutive chunks overlap by exactly the stride


def test_chunk_cap_and_bad_arguments():
    assert len(chunk_spans(10_000, 512, 128, max_chunks=4)) == 4
    for length, stride in ((0, 0), (512, 512), (512, -1)):
        with pytest.raises(ValueError):
            chunk_spans(100, length, stride)


def test_masked_mean_ignores_padding_chunks():
    embeddings = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]], [[5.0, 5.0], [0.0, 0.0], [-9.0, 9.0]]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert torch.equal(masked_mean(embeddings, mask), torch.tensor([[2.0, 3.0], [5.0, 5.0]]))
    assert torch.equal(masked_mean(embeddings, torch.zeros(2, 3)), torch.zeros(2, 2))  # no chunk: no NaN


def test_probe_label_lives_only_beyond_the_cue_position():
    docs = long_range_probe(40, seed=3)
    assert [label for _, label in docs].count(1) == 20
    for text, label in docs:
        words = text.split()
        assert len(words) == 900
        cues = [i for i, w in enumerate(words) if w in CUES]
        assert len(cues) == 1 and cues[0] >= 600 and words[cues[0]] == CUES[label]
        assert set(words[:600]) <= set(FILLER)  # the first 600 words carry no label information
    assert long_range_probe(4, seed=3) == docs[:4]  # reproducible
