"""A BEIR-format dataset on disk (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) read into memory.

The layout is the one the BEIR benchmark publishes:

- ``corpus.jsonl``: one JSON object per line with ``_id``, ``title``, ``text`` (and an ignored
  ``metadata``); read as a stream, line by line, so a large corpus is never held twice.
- ``queries.jsonl``: one JSON object per line with ``_id`` and ``text``.
- ``qrels/<split>.tsv``: a header line (``query-id  corpus-id  score``), then one tab-separated
  judgement per line; LF or CRLF line endings.

Ids are always strings (an integer ``_id`` in a JSON file is turned into its decimal string, as
qrels ids are text). Grades are ints and kept as written, grade 0 included: a grade-0 judgement
means "judged, not relevant"; the metrics give it no gain and never count it as relevant.

A malformed line raises ``DatasetFormatError`` (a ``ValueError``) naming the file and line.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CORPUS_FILE = "corpus.jsonl"
QUERIES_FILE = "queries.jsonl"
QRELS_DIR = "qrels"

_QRELS_FIELDS = 3


class DatasetFormatError(ValueError):
    """A dataset file has a line that cannot be read; names the file, the line and why."""

    def __init__(self, path: Path, line: int | None, problem: str) -> None:
        self.path = path
        self.line = line
        self.problem = problem
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True, slots=True)
class Document:
    """One corpus entry."""

    id: str
    title: str
    text: str


@dataclass(frozen=True)
class BeirDataset:
    """A dataset restricted to one split: its whole corpus, and the queries judged in the split.

    ``corpus`` keeps the file's order; ``queries`` keeps the order of queries.jsonl;
    ``qrels`` maps query id to {document id: grade} in the order of the qrels file.
    """

    name: str
    split: str
    corpus: dict[str, Document]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


def document_text(doc: Document) -> str:
    """The text BEIR benchmarks embed for a document: title + " " + text, or the text alone."""
    title = doc.title.strip()
    text = doc.text.strip()
    if not title:
        return text
    if not text:
        return title
    return f"{title} {text}"


def load_beir(path: Path, split: str = "test") -> BeirDataset:
    """Read the dataset in ``path``: the whole corpus, and the queries and qrels of ``split``."""
    qrels = read_qrels(qrels_path(path, split))
    queries = read_queries(path / QUERIES_FILE, only=qrels.keys())
    missing = [query_id for query_id in qrels if query_id not in queries]
    if missing:
        raise DatasetFormatError(
            path / QUERIES_FILE,
            None,
            f"{len(missing)} query id(s) of the {split!r} qrels are absent, e.g. {missing[:5]}",
        )
    corpus = {doc.id: doc for doc in iter_corpus(path / CORPUS_FILE)}
    return BeirDataset(
        name=path.resolve().name, split=split, corpus=corpus, queries=queries, qrels=qrels
    )


def qrels_path(path: Path, split: str) -> Path:
    """The qrels file of ``split``; FileNotFoundError listing the splits present if it is absent."""
    file = path / QRELS_DIR / f"{split}.tsv"
    if not file.is_file():
        present = sorted(p.stem for p in (path / QRELS_DIR).glob("*.tsv"))
        raise FileNotFoundError(f"{file}: no qrels for split {split!r}; present: {present}")
    return file


def iter_corpus(file: Path) -> Iterator[Document]:
    """Stream the documents of a corpus.jsonl in file order; duplicate ids are an error."""
    seen: set[str] = set()
    for line_no, record in _iter_jsonl(file):
        doc_id = _id_field(record, file, line_no)
        if doc_id in seen:
            raise DatasetFormatError(file, line_no, f"duplicate document id {doc_id!r}")
        seen.add(doc_id)
        yield Document(
            id=doc_id,
            title=_text_field(record, "title", file, line_no),
            text=_text_field(record, "text", file, line_no),
        )


def read_queries(file: Path, only: Iterable[str] | None = None) -> dict[str, str]:
    """The queries of a queries.jsonl in file order, limited to the ids in ``only`` if given."""
    wanted = None if only is None else set(only)
    queries: dict[str, str] = {}
    for line_no, record in _iter_jsonl(file):
        query_id = _id_field(record, file, line_no)
        if query_id in queries:
            raise DatasetFormatError(file, line_no, f"duplicate query id {query_id!r}")
        text = _text_field(record, "text", file, line_no)
        if wanted is None or query_id in wanted:
            queries[query_id] = text
    return queries


def read_qrels(file: Path) -> dict[str, dict[str, int]]:
    """The judgements of a qrels .tsv: {query id: {document id: grade}} in file order.

    The first line is skipped when it is a header (its score column is not an integer). Blank
    lines are ignored; a pair judged twice with different grades is an error.
    """
    qrels: dict[str, dict[str, int]] = {}
    with file.open(encoding="utf-8", newline="") as lines:
        for line_no, raw in enumerate(lines, start=1):
            line = raw.rstrip("\r\n")
            if not line.strip():
                continue
            fields = [field.strip() for field in line.split("\t")]
            if len(fields) != _QRELS_FIELDS:
                raise DatasetFormatError(
                    file, line_no, f"expected 3 tab-separated fields, got {len(fields)}"
                )
            query_id, doc_id, score = fields
            try:
                grade = int(score)
            except ValueError:
                if line_no == 1:
                    continue  # the header: query-id, corpus-id, score
                raise DatasetFormatError(
                    file, line_no, f"score {score!r} is not an integer"
                ) from None
            if not query_id or not doc_id:
                raise DatasetFormatError(file, line_no, "empty query or document id")
            judged = qrels.setdefault(query_id, {})
            if judged.get(doc_id, grade) != grade:
                raise DatasetFormatError(
                    file, line_no, f"({query_id!r}, {doc_id!r}) judged again with another grade"
                )
            judged[doc_id] = grade
    return qrels


def _iter_jsonl(file: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of a JSON-lines file."""
    with file.open(encoding="utf-8") as lines:
        for line_no, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetFormatError(file, line_no, f"invalid JSON: {exc.msg}") from exc
            if not isinstance(record, dict):
                raise DatasetFormatError(file, line_no, "expected a JSON object")
            yield line_no, record


def _id_field(record: dict[str, Any], file: Path, line_no: int) -> str:
    value = record.get("_id")
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise DatasetFormatError(file, line_no, "missing or non-string '_id'")
    value = str(value)
    if not value:
        raise DatasetFormatError(file, line_no, "empty '_id'")
    return value


def _text_field(record: dict[str, Any], key: str, file: Path, line_no: int) -> str:
    value = record.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DatasetFormatError(file, line_no, f"{key!r} is not a string")
    return value
