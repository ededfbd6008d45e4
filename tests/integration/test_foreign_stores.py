"""Moving in from and out to other vector stores: files written by the real FAISS, Annoy,
Chroma, Qdrant (local mode) and pyarrow libraries, holding vectors of the real model for
some texts and vectors of a wrong dimension for others, imported through a real search
service; and a FAISS export re-imported into an empty database."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from foreign_kit import (
    DOCS,
    QUERIES,
    WRONG_DIM,
    Stack,
    assert_finds,
    cli,
    doc,
    start_stack,
    wrong,
)

from semantic.common.errors import InvalidArgument
from semantic.tools.devstack.postgres import EmbeddedPostgres
from semantic.tools.foreign.formats import detect, open_source
from semantic.tools.foreign.records import ReadOptions

pytestmark = pytest.mark.integration


# --- FAISS ----------------------------------------------------------------------------


def _write_faiss(folder: Path, index: Any, ids: list[str], docs: list[dict[str, Any]]) -> Path:
    import faiss

    folder.mkdir(parents=True)
    faiss.write_index(index, str(folder / "index.faiss"))
    (folder / "ids.json").write_text(json.dumps(ids))
    (folder / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    return folder


async def test_faiss_flat_index_keeps_model_vectors_only_for_the_same_model(
    stack: Stack, model_vectors: dict[str, np.ndarray], tmp_path: Path
) -> None:
    import faiss

    ids = list(DOCS)
    index = faiss.IndexFlatIP(stack.dim)
    index.add(np.stack([model_vectors[i] for i in ids]))
    docs = [doc(i, content_type="article") if i in QUERIES.values() else doc(i) for i in ids]
    folder = _write_faiss(tmp_path / "flat", index, ids, docs)
    assert detect(folder) == "faiss"

    same = await stack.load("auto", folder, model=stack.model_id)
    assert (same.records, same.kept_vectors, same.embedded, same.failed) == (8, 8, 0, 0)
    nodes = await stack.nodes(ids)
    assert nodes["cache"].content_type == "article"
    assert nodes["bread"].content_type == "document"
    assert nodes["cache"].title == "Caching HTTP responses"
    assert dict(nodes["cache"].metadata) == {"source": "test"}  # title and type taken out
    assert all((await stack.kept(ids)).values())
    await assert_finds(stack)

    # Without --model (or with another model) equal dimensions are not trusted.
    other = await stack.load("faiss", folder, tenant="t2", model="some-other-model")
    assert (other.kept_vectors, other.embedded) == (0, 8)
    assert not any((await stack.kept(ids, "t2")).values())
    await assert_finds(stack, "t2")


async def test_faiss_hnsw_index_of_another_dimension_is_re_embedded(
    stack: Stack, tmp_path: Path
) -> None:
    import faiss

    ids = [*DOCS, "orphan"]
    index = faiss.IndexHNSWFlat(WRONG_DIM, 8)
    index.add(np.stack([wrong(i) for i in ids]))
    docs = [doc(i) for i in DOCS]  # "orphan" has a vector but no text
    folder = _write_faiss(tmp_path / "hnsw", index, ids, docs)

    summary = await stack.load("faiss", folder / "index.faiss", keep_vectors=True)
    assert (summary.records, summary.kept_vectors, summary.embedded, summary.failed) == (9, 0, 8, 1)
    assert "orphan" in summary.failures[0]["record"]
    assert f"{WRONG_DIM} dimensions" in summary.failures[0]["error"]
    assert set(await stack.nodes(ids)) == set(DOCS)
    await assert_finds(stack)


# --- Annoy ----------------------------------------------------------------------------


async def test_annoy_index_with_meta(
    stack: Stack, model_vectors: dict[str, np.ndarray], tmp_path: Path
) -> None:
    from annoy import AnnoyIndex

    ids = list(DOCS)
    index = AnnoyIndex(stack.dim, "angular")
    for position, key in enumerate(ids):
        index.add_item(position, model_vectors[key].tolist())
    index.build(4)
    folder = tmp_path / "annoy"
    folder.mkdir()
    index.save(str(folder / "index.ann"))
    docs = {key: {"text": DOCS[key][1], "metadata": {"title": DOCS[key][0]}} for key in ids}
    meta = {"dim": stack.dim, "metric": "angular", "ids": ids, "docs": docs}
    (folder / "meta.json").write_text(json.dumps(meta))

    summary = await stack.load("auto", folder, model=stack.model_id, id_prefix="annoy:")
    assert (summary.kept_vectors, summary.failed) == (8, 0)
    kept = await stack.kept([f"annoy:{i}" for i in ids])
    assert kept == {f"annoy:{i}": True for i in ids}
    assert (await stack.top("how do I cache HTTP responses"))[0] == "annoy:cache"


# --- Chroma ---------------------------------------------------------------------------


async def test_chroma_persistent_directory(
    stack: Stack, model_vectors: dict[str, np.ndarray], tmp_path: Path
) -> None:
    from semantic.tools.foreign.chroma_dir import client

    folder = tmp_path / "chroma"
    chroma = client(folder)
    good = chroma.create_collection("docs", embedding_function=None)
    ids = list(DOCS)
    good.add(
        ids=ids,
        embeddings=[model_vectors[i].tolist() for i in ids],
        documents=[DOCS[i][1] for i in ids],
        metadatas=[
            {"title": DOCS[i][0], "content_type": "faq", "rank": n} for n, i in enumerate(ids)
        ],
    )
    small = chroma.create_collection("small", embedding_function=None)
    small.add(
        ids=["x1", "x2"],
        embeddings=[wrong("a").tolist(), wrong("bb").tolist()],
        documents=["Caching HTTP responses with ETags", None],
        metadatas=[{"lang": "en"}, {"lang": "en"}],
    )
    del chroma
    assert detect(folder) == "chroma"

    with pytest.raises(InvalidArgument, match="choose one of docs, small"):
        open_source("chroma", folder, ReadOptions())
    summary = await stack.load("chroma", folder, collection="docs", model=stack.model_id)
    assert (summary.records, summary.kept_vectors, summary.failed) == (8, 8, 0)
    nodes = await stack.nodes(ids)
    assert {n.content_type for n in nodes.values()} == {"faq"}
    assert nodes["pasta"].title == "Fresh pasta at home"
    assert dict(nodes["pasta"].metadata) == {"rank": 1.0}
    await assert_finds(stack)

    mixed = await stack.load("chroma", folder, collection="small", keep_vectors=True, tenant="t2")
    assert (mixed.kept_vectors, mixed.embedded, mixed.failed) == (0, 1, 1)
    assert "'x2'" in mixed.failures[0]["record"]


# --- Qdrant ---------------------------------------------------------------------------


async def test_qdrant_local_collection_with_named_vectors(
    stack: Stack, model_vectors: dict[str, np.ndarray], tmp_path: Path
) -> None:
    from qdrant_client import QdrantClient, models

    folder = tmp_path / "qdrant"
    qdrant = QdrantClient(path=str(folder))
    qdrant.create_collection(
        "docs",
        vectors_config={
            "dense": models.VectorParams(size=stack.dim, distance=models.Distance.COSINE),
            "tiny": models.VectorParams(size=WRONG_DIM, distance=models.Distance.COSINE),
        },
    )
    point_ids: dict[str, int | str] = {}
    for n, key in enumerate(DOCS):
        point_ids[key] = n + 1 if n % 2 else str(uuid.uuid5(uuid.NAMESPACE_URL, key))
    qdrant.upsert(
        "docs",
        points=[
            models.PointStruct(
                id=point_ids[key],
                vector={"dense": model_vectors[key].tolist(), "tiny": wrong(key).tolist()},
                payload={"text": DOCS[key][1], "title": DOCS[key][0], "tags": ["a", "b"]},
            )
            for key in DOCS
        ],
    )
    qdrant.close()
    assert detect(folder) == "qdrant"

    with pytest.raises(InvalidArgument, match="--vector-name"):
        await stack.load("qdrant", folder)
    dense = await stack.load("qdrant", folder, vector_name="dense", model=stack.model_id)
    assert (dense.records, dense.kept_vectors, dense.failed) == (8, 8, 0)
    ids = [str(point_ids[key]) for key in DOCS]
    nodes = await stack.nodes(ids)
    assert nodes[str(point_ids["cache"])].title == "Caching HTTP responses"
    assert dict(nodes[ids[1]].metadata) == {"tags": ["a", "b"]}
    assert all((await stack.kept(ids)).values())
    assert (await stack.top("how do I cache HTTP responses"))[0] == str(point_ids["cache"])

    tiny = await stack.load("qdrant", folder, vector_name="tiny", keep_vectors=True, tenant="t2")
    assert (tiny.kept_vectors, tiny.embedded) == (0, 8)
    assert not any((await stack.kept(ids, "t2")).values())


# --- JSONL and Parquet ----------------------------------------------------------------


def _rows(model_vectors: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for n, key in enumerate(DOCS):
        vector = model_vectors[key] if n % 2 == 0 else wrong(key)
        rows.append(
            {
                "id": key,
                "vector": vector.tolist(),
                "text": DOCS[key][1],
                "metadata": json.dumps({"title": DOCS[key][0], "n": n}),
            }
        )
    rows.append(
        {"id": "lonely", "vector": wrong("lonely").tolist(), "text": None, "metadata": None}
    )
    rows.append({"id": "", "vector": None, "text": "An id is needed", "metadata": None})
    return rows


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
async def test_tabular_files_mix_kept_embedded_and_failed_records(
    fmt: str, stack: Stack, model_vectors: dict[str, np.ndarray], tmp_path: Path
) -> None:
    rows = _rows(model_vectors)
    path = tmp_path / f"records.{fmt}"
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    assert detect(path) == fmt

    summary = await stack.load("auto", path, model=stack.model_id, batch_size=3)
    assert (summary.records, summary.kept_vectors, summary.embedded, summary.failed) == (
        10,
        4,
        4,
        2,
    )
    problems = " | ".join(f"{f['record']}: {f['error']}" for f in summary.failures)
    assert "'lonely'" in problems
    assert "record 9 (id '').id: must not be empty" in problems
    kept = await stack.kept(list(DOCS))
    assert kept == {key: n % 2 == 0 for n, key in enumerate(DOCS)}
    await assert_finds(stack)


# --- the command line and a round trip ------------------------------------------------


@pytest.fixture
def empty_stack(
    pg_server: EmbeddedPostgres,
    embedder_address: str,
    fp32_model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[[], AbstractAsyncContextManager[Stack]]:
    """Starts another search service on another, empty database."""

    @asynccontextmanager
    async def start() -> AsyncIterator[Stack]:
        name = f"t_{uuid.uuid4().hex}"
        pg_server.create_database(name)
        try:
            url = pg_server.url(name)
            async with start_stack(url, embedder_address, fp32_model_dir, monkeypatch) as running:
                yield running
        finally:
            pg_server.drop_database(name)

    return start


async def test_faiss_export_re_imported_into_an_empty_database_keeps_search_results(
    stack: Stack,
    database_url: str,
    empty_stack: Callable[[], AbstractAsyncContextManager[Stack]],
    tmp_path: Path,
) -> None:
    source = tmp_path / "docs.jsonl"
    source.write_text("".join(json.dumps(doc(k)) + "\n" for k in DOCS))
    loaded = await cli("import-from", "jsonl", str(source), "--search", stack.address)
    assert (loaded["records"], loaded["embedded"], loaded["failed"]) == (8, 8, 0)
    queries = [*QUERIES, "baking at home", "exercise plan", "music practice"]
    before = {q: await stack.top(q) for q in queries}

    out = tmp_path / "export"
    database = {"DATABASE_URL": database_url}
    exported = await cli("export-to", "faiss", "--out", str(out), env=database)
    assert (exported["nodes"], exported["written"]) == (8, 8)
    assert json.loads((out / "ids.json").read_text()) == sorted(DOCS)
    from_faiss = {r.id: r for r in open_source("faiss", out, ReadOptions()).records}

    # The same rows as JSONL and as a Chroma directory; a content type filter.
    lines = tmp_path / "export.jsonl"
    await cli("export-to", "jsonl", "--out", str(lines), env=database)
    chroma = tmp_path / "chroma"
    await cli("export-to", "chroma", "--out", str(chroma), env=database)
    for fmt, path in (("jsonl", lines), ("chroma", chroma)):
        again = {r.id: r for r in open_source(fmt, path, ReadOptions()).records}
        assert set(again) == set(DOCS), fmt
        for key, record in again.items():
            assert record.text == DOCS[key][1]
            assert record.vector is not None
            assert np.allclose(record.vector, from_faiss[key].vector, atol=1e-6), fmt
    none = await cli(
        "export-to", "jsonl", "--out", str(lines), "--content-type", "recipe", env=database
    )
    assert (none["nodes"], lines.read_text()) == (0, "")

    async with empty_stack() as empty:
        moved = await cli(
            "import-from", "faiss", str(out), "--model", empty.model_id, "--search", empty.address
        )
        assert (moved["kept_vectors"], moved["failed"]) == (8, 0)
        after = {q: await empty.top(q) for q in queries}
        assert (await empty.nodes(["cache"]))["cache"].title == DOCS["cache"][0]
    assert after == before
