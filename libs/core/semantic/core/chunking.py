"""Word-piece windows: long texts split into overlapping chunks the model can read whole.

The model reads at most ``window`` word-pieces including [CLS] and [SEP]; a text that
fits is one chunk. A longer one is cut into windows of ``window - 2`` word-pieces that
overlap by ``overlap``; each chunk carries its character span in the source text, so
a hit can show the passage that matched. Chunk boundaries fall on word-piece
boundaries (never inside a character).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer


@dataclass(frozen=True)
class Chunk:
    """One window of a text."""

    index: int
    start: int  # character offset in the source text, inclusive
    end: int  # character offset, exclusive
    text: str


class Chunker:
    """Splits texts with the model's own tokenizer (tokenizer.json)."""

    def __init__(self, tokenizer_file: Path, *, window: int, overlap: int) -> None:
        if window < 8:
            raise ValueError("window must be at least 8 word-pieces")
        if not 0 <= overlap < window - 2:
            raise ValueError("overlap must be between 0 and window - 3")
        tokenizer = Tokenizer.from_file(str(tokenizer_file))
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self._tokenizer = tokenizer
        self.window = window
        self.overlap = overlap

    def split(self, texts: Sequence[str]) -> list[list[Chunk]]:
        """The chunks of each text, in order (at least one per non-empty text)."""
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        body = self.window - 2
        stride = body - self.overlap
        out: list[list[Chunk]] = []
        for text, encoding in zip(texts, encodings, strict=True):
            offsets = encoding.offsets
            if len(offsets) <= body:
                out.append([Chunk(0, 0, len(text), text)])
                continue
            chunks: list[Chunk] = []
            start_token = 0
            while True:
                end_token = min(start_token + body, len(offsets))
                start = offsets[start_token][0]
                end = offsets[end_token - 1][1]
                chunks.append(Chunk(len(chunks), start, end, text[start:end]))
                if end_token == len(offsets):
                    break
                start_token += stride
            out.append(chunks)
        return out
