"""BEIR loading (CRLF qrels with header, string ids, one split, format errors) and sessions."""

import shutil
from pathlib import Path

import pytest

from semantic.tools.evaluation import (
    BeirDataset,
    DatasetFormatError,
    Document,
    build_sessions,
    document_text,
    load_beir,
    session_qrels,
)

MINI = Path(__file__).parents[1] / "data" / "beir-mini"
NFCORPUS = Path(__file__).parents[3] / "shared" / "data" / "nfcorpus"


@pytest.fixture
def mini_copy(tmp_path: Path) -> Path:
    """A writable copy of beir-mini, for tests that break one of its files."""
    return Path(shutil.copytree(MINI, tmp_path / "beir-mini"))


def test_fixture_qrels_really_have_crlf_line_endings_and_a_header() -> None:
    raw = (MINI / "qrels" / "test.tsv").read_bytes()
    assert raw.startswith(b"query-id\tcorpus-id\tscore\r\n")
    assert raw.count(b"\r\n") == raw.count(b"\n")


def test_loads_corpus_in_file_order_with_string_ids() -> None:
    dataset = load_beir(MINI)
    assert dataset.name == "beir-mini"
    assert dataset.split == "test"
    assert list(dataset.corpus) == ["d1", "007", "d3", "d4", "d5"]
    assert dataset.corpus["007"] == Document(id="007", title="", text="A document without a title.")


def test_keeps_only_queries_judged_in_the_split_in_queries_file_order() -> None:
    dataset = load_beir(MINI)
    assert dataset.queries == {
        "q1": "does cholesterol matter",
        "q2": "leafy greens",
        "10": "sunlight",
    }
    assert list(dataset.queries) == ["q1", "q2", "10"]


def test_reads_crlf_qrels_skipping_the_header_with_int_grades_and_grade_zero_kept() -> None:
    dataset = load_beir(MINI)
    assert dataset.qrels == {
        "q1": {"d1": 2, "007": 1, "d4": 0},
        "q2": {"d4": 2},
        "10": {"d3": 1},
    }
    grades = [grade for judged in dataset.qrels.values() for grade in judged.values()]
    assert all(type(grade) is int for grade in grades)


def test_loads_another_split() -> None:
    dataset = load_beir(MINI, split="train")
    assert dataset.queries == {"q3": "a query judged only in train"}
    assert dataset.qrels == {"q3": {"d5": 1}}


def test_missing_split_names_the_splits_present() -> None:
    with pytest.raises(FileNotFoundError, match=r"present: \['test', 'train'\]"):
        load_beir(MINI, split="dev")


def test_document_text_is_title_space_text_or_text_alone() -> None:
    corpus = load_beir(MINI).corpus
    assert document_text(corpus["d1"]) == "Statins and cholesterol Statins lower LDL cholesterol."
    assert document_text(corpus["007"]) == "A document without a title."
    assert document_text(corpus["d3"]) == "Vitamin D Sunlight makes vitamin D."
    assert document_text(Document(id="t", title="Only a title", text="")) == "Only a title"


def test_reads_lf_qrels_and_qrels_without_header(mini_copy: Path) -> None:
    qrels = mini_copy / "qrels" / "test.tsv"
    qrels.write_bytes(b"q1\td1\t2\nq1\t007\t1\n\nq2\td4\t2\n")
    assert load_beir(mini_copy).qrels == {"q1": {"d1": 2, "007": 1}, "q2": {"d4": 2}}


def test_malformed_corpus_line_names_file_and_line(mini_copy: Path) -> None:
    corpus = mini_copy / "corpus.jsonl"
    lines = corpus.read_text().splitlines()
    lines[2] = '{"_id": "d3", "title": "broken'
    corpus.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetFormatError, match=r"corpus\.jsonl:3: invalid JSON") as error:
        load_beir(mini_copy)
    assert isinstance(error.value, ValueError)
    assert error.value.path == corpus
    assert error.value.line == 3


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('["not", "an", "object"]', "expected a JSON object"),
        ('{"title": "no id", "text": "x"}', "missing or non-string '_id'"),
        ('{"_id": "d9", "title": 5, "text": "x"}', "'title' is not a string"),
        ('{"_id": "d1", "title": "", "text": "again"}', "duplicate document id 'd1'"),
    ],
)
def test_invalid_corpus_records_are_refused(mini_copy: Path, line: str, problem: str) -> None:
    corpus = mini_copy / "corpus.jsonl"
    corpus.write_text(corpus.read_text() + line + "\n")
    with pytest.raises(DatasetFormatError, match=rf"corpus\.jsonl:6: {problem}"):
        load_beir(mini_copy)


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        (b"q2\td5\thigh", "score 'high' is not an integer"),
        (b"q2\td5", "expected 3 tab-separated fields, got 2"),
        (b"q1\td1\t1", r"\('q1', 'd1'\) judged again with another grade"),
    ],
)
def test_invalid_qrels_rows_are_refused(mini_copy: Path, row: bytes, problem: str) -> None:
    qrels = mini_copy / "qrels" / "test.tsv"
    qrels.write_bytes(qrels.read_bytes() + row + b"\r\n")
    with pytest.raises(DatasetFormatError, match=rf"test\.tsv:7: {problem}"):
        load_beir(mini_copy)


def test_qrels_query_absent_from_queries_file_is_refused(mini_copy: Path) -> None:
    qrels = mini_copy / "qrels" / "test.tsv"
    qrels.write_bytes(qrels.read_bytes() + b"ghost\td1\t1\r\n")
    with pytest.raises(DatasetFormatError, match=r"queries\.jsonl: 1 query id\(s\).*'ghost'"):
        load_beir(mini_copy)


# --- sessions for recommendation evaluation ---------------------------------------------------


def test_sessions_hold_out_one_relevant_document_and_skip_short_journeys() -> None:
    sessions = build_sessions(load_beir(MINI), seed=7)
    # q1 has two relevant documents (d4 is grade 0); q2 and "10" have one each: skipped.
    assert [session.user_id for session in sessions] == ["q1"]
    (session,) = sessions
    assert {*session.history, session.held_out} == {"d1", "007"}
    assert len(session.history) == 1
    assert session_qrels(sessions) == {"q1": {session.held_out: 1}}


def test_sessions_are_deterministic_by_seed_and_vary_across_seeds() -> None:
    qrels = {f"q{i}": {f"d{j}": 1 for j in range(6)} for i in range(20)}
    corpus = {f"d{j}": Document(id=f"d{j}", title="", text="") for j in range(6)}
    dataset = BeirDataset(name="synthetic", split="test", corpus=corpus, queries={}, qrels=qrels)
    first = build_sessions(dataset, seed=1)
    assert first == build_sessions(dataset, seed=1)
    assert first != build_sessions(dataset, seed=2)
    orders = {(*session.history, session.held_out) for session in first}
    assert len(orders) > 1  # shuffled per query, not one order for all
    assert build_sessions(dataset, seed=1, max_history=2)[0].history == first[0].history[-2:]


# --- the real NFCorpus, where the shared data is present -----------------------------------------


@pytest.fixture(scope="module")
def nfcorpus() -> BeirDataset:
    if not (NFCORPUS / "corpus.jsonl").is_file():
        pytest.skip(f"NFCorpus not present at {NFCORPUS}")
    return load_beir(NFCORPUS)


def test_nfcorpus_test_split_has_published_sizes(nfcorpus: BeirDataset) -> None:
    assert nfcorpus.name == "nfcorpus"
    assert len(nfcorpus.corpus) == 3633
    assert len(nfcorpus.queries) == 323
    assert set(nfcorpus.qrels) == set(nfcorpus.queries)
    assert sum(len(judged) for judged in nfcorpus.qrels.values()) == 12334
    assert all(doc_id in nfcorpus.corpus for judged in nfcorpus.qrels.values() for doc_id in judged)
