"""Moving in from another pgvector database: a Supabase / LangChain style `documents`
table (bigint id, content, jsonb metadata, vector(384) of the real model) in a second
database with the real pgvector extension, imported through a real search service; the
same rows as halfvec and as real[] through --query; a dimension that does not fit is
re-embedded from the text; a wrong table, column or query is refused before anything is
written."""

from __future__ import annotations

import json
from collections.abc import Iterator

import asyncpg
import numpy as np
import pytest
from db_kit import fresh_database
from foreign_kit import DOCS, QUERIES, Stack, assert_finds, cli

from semantic.common.errors import InvalidArgument
from semantic.tools.devstack.postgres import EmbeddedPostgres
from semantic.tools.foreign.formats import open_source
from semantic.tools.foreign.records import ReadOptions

pytestmark = pytest.mark.integration


@pytest.fixture
def source_url(pg_server: EmbeddedPostgres) -> Iterator[str]:
    """Another application's database."""
    yield from fresh_database(pg_server)


async def _fill(url: str, vectors: dict[str, np.ndarray]) -> list[int]:
    """The Supabase vector-store quickstart's table, one row per document; the row ids."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        await conn.execute(
            "CREATE TABLE public.documents (id bigserial PRIMARY KEY, content text,"
            " metadata jsonb, embedding vector(384), embedding_half halfvec(384),"
            " embedding_array real[], small vector(3))"
        )
        ids = []
        for key, (title, body) in DOCS.items():
            vector = "[" + ",".join(f"{x:.8f}" for x in vectors[key]) + "]"
            ids.append(
                await conn.fetchval(
                    "INSERT INTO public.documents (content, metadata, embedding, embedding_half,"
                    " embedding_array, small) VALUES ($1, $2::jsonb, $3::vector, $3::halfvec,"
                    " $3::vector::real[], '[1,2,3]') RETURNING id",
                    f"{title} {body}",
                    json.dumps({"key": key, "content_type": "article", "source": "supabase"}),
                    vector,
                )
            )
        return ids
    finally:
        await conn.close()


async def test_a_supabase_documents_table_moves_in_with_its_vectors(
    stack: Stack, source_url: str, model_vectors: dict[str, np.ndarray]
) -> None:
    ids = [str(i) for i in await _fill(source_url, model_vectors)]
    summary = await stack.load(
        "pgvector", None, source=ReadOptions(source_dsn=source_url, table="public.documents"),
        model=stack.model_id, id_prefix="sb:",
    )  # fmt: skip
    assert (summary.records, summary.kept_vectors, summary.embedded, summary.failed) == (
        len(DOCS), len(DOCS), 0, 0,
    )  # fmt: skip
    nodes = await stack.nodes([f"sb:{i}" for i in ids])
    assert len(nodes) == len(DOCS)
    first = nodes[f"sb:{ids[0]}"]
    assert first.content_type == "article"  # the content_type metadata key
    assert dict(first.metadata) == {"key": "cache", "source": "supabase"}
    stored = np.frombuffer(
        next(v for v in first.vectors if v.name == "content").vector.packed, dtype="<f4"
    )
    assert np.allclose(stored, model_vectors["cache"], atol=1e-6)  # kept, not re-embedded
    hits = await stack.top(next(iter(QUERIES)))
    assert hits[0] == f"sb:{ids[0]}"


async def test_halfvec_and_real_arrays_through_a_query_and_a_dimension_that_does_not_fit(
    stack: Stack, source_url: str, model_vectors: dict[str, np.ndarray]
) -> None:
    await _fill(source_url, model_vectors)
    half = await stack.load(
        "pgvector", None,
        source=ReadOptions(
            source_dsn=source_url,
            query="SELECT metadata->>'key' AS id, embedding_half AS vector, content AS text"
            " FROM documents",
        ),
        model=stack.model_id, tenant="half",
    )  # fmt: skip
    assert (half.kept_vectors, half.failed) == (len(DOCS), 0)
    await assert_finds(stack, "half")  # float16 precision keeps the ranking
    arrays = await stack.load(
        "pgvector", None,
        source=ReadOptions(
            source_dsn=source_url, table="documents", columns={"vector": "embedding_array"}
        ),
        model=stack.model_id, tenant="arrays",
    )  # fmt: skip
    assert (arrays.kept_vectors, arrays.failed) == (len(DOCS), 0)
    small = await stack.load(
        "pgvector", None,
        source=ReadOptions(source_dsn=source_url, table="documents", columns={"vector": "small"}),
        model=stack.model_id, tenant="small", keep_vectors=True,
    )  # fmt: skip
    assert (small.kept_vectors, small.embedded, small.failed) == (0, len(DOCS), 0)
    assert not any((await stack.kept([str(i) for i in range(1, 9)], "small")).values())


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"table": "missing_table"}, "table"),
        ({"table": "documents; DROP TABLE documents"}, "table"),
        ({"table": "documents", "columns": {"vector": "nope"}}, "vector_column"),
        ({"table": "documents", "columns": {"id": ""}}, "id_column"),
        ({"query": "SELECT content FROM documents"}, "query"),
        ({"query": "SELECT id FROM nowhere"}, "query"),
        ({"query": "DELETE FROM documents RETURNING id"}, "query"),
        ({}, "table"),
    ],
)
async def test_a_wrong_source_is_refused_before_anything_is_read(
    source_url: str,
    model_vectors: dict[str, np.ndarray],
    options: dict[str, object],
    field: str,
) -> None:
    await _fill(source_url, model_vectors)
    with pytest.raises(InvalidArgument) as refused:
        open_source("pgvector", None, ReadOptions(source_dsn=source_url, **options))  # type: ignore[arg-type]
    assert refused.value.field == field
    conn = await asyncpg.connect(source_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM documents") == len(DOCS)  # untouched
    finally:
        await conn.close()


async def test_the_command_reads_the_source_dsn_from_the_environment(
    stack: Stack, source_url: str, model_vectors: dict[str, np.ndarray]
) -> None:
    await _fill(source_url, model_vectors)
    result = await cli(
        "import-from", "pgvector", "--table", "documents", "--tenant", "cli",
        "--model", stack.model_id, "--search", stack.address,
        env={"SOURCE_DATABASE_URL": source_url},
    )  # fmt: skip
    assert (result["format"], result["records"], result["kept_vectors"]) == (
        "pgvector", len(DOCS), len(DOCS),
    )  # fmt: skip
