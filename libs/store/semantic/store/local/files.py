"""The local index on disk: ``vectors.usearch`` (the HNSW graph with its vectors) and
``nodes.sqlite`` (the space, the sync cursor, the node fields, what each usearch key is).

Saving writes both files under temporary names, then renames the graph and last the
SQLite file, which records the graph file's sha256: a crash between the two renames leaves
a pair whose checksum differs, which a load reports as corrupt (the index is then rebuilt
from PostgreSQL). A load also refuses an unknown format, a graph of another dimension or
one whose size differs from the keys recorded.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import structlog
from usearch.index import Index

from semantic.core.degraded import IndexedNode, Key
from semantic.core.spaces import Space

log = structlog.get_logger(__name__)

FORMAT = 1
GRAPH = "vectors.usearch"
NODES = "nodes.sqlite"

Ref = tuple[int, Key, str, int, int, int]
"""(usearch key, node key, vector name, chunk, span start, span end)."""


@dataclass
class Contents:
    """Everything saved beside the graph."""

    space: Space
    cursor: int
    synced_at: float
    next_key: int
    nodes: list[IndexedNode]
    refs: list[Ref]


_SCHEMA = """
CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE nodes (
    tenant TEXT NOT NULL, id TEXT NOT NULL, slug TEXT, content_type TEXT NOT NULL,
    title TEXT NOT NULL, tags TEXT NOT NULL, version INTEGER NOT NULL, updated_at TEXT,
    PRIMARY KEY (tenant, id)
);
CREATE TABLE refs (
    key INTEGER PRIMARY KEY, tenant TEXT NOT NULL, node_id TEXT NOT NULL, name TEXT NOT NULL,
    chunk INTEGER NOT NULL, span_start INTEGER NOT NULL, span_end INTEGER NOT NULL
);
"""


def save(folder: Path, contents: Contents, graph: Index) -> None:
    """Write ``contents`` and ``graph`` to ``folder`` (module doc)."""
    folder.mkdir(parents=True, exist_ok=True)
    graph_tmp = folder / f"{GRAPH}.tmp"
    nodes_tmp = folder / f"{NODES}.tmp"
    graph.save(str(graph_tmp))
    digest = _sha256(graph_tmp)
    nodes_tmp.unlink(missing_ok=True)
    with closing(sqlite3.connect(nodes_tmp)) as db:
        db.executescript(_SCHEMA)
        state = {
            "format": str(FORMAT),
            "space": json.dumps(_space_json(contents.space)),
            "cursor": str(contents.cursor),
            "synced_at": repr(contents.synced_at),
            "next_key": str(contents.next_key),
            "graph_sha256": digest,
            "vectors": str(len(contents.refs)),
        }
        db.executemany("INSERT INTO state VALUES (?, ?)", state.items())
        db.executemany(
            "INSERT INTO nodes VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                (
                    n.tenant,
                    n.id,
                    n.slug,
                    n.content_type,
                    n.title,
                    json.dumps(list(n.tags)),
                    n.version,
                    n.updated_at.isoformat() if n.updated_at is not None else None,
                )
                for n in contents.nodes
            ),
        )
        db.executemany(
            "INSERT INTO refs VALUES (?, ?, ?, ?, ?, ?, ?)",
            ((k, node[0], node[1], name, c, s, e) for k, node, name, c, s, e in contents.refs),
        )
        db.commit()
    os.replace(graph_tmp, folder / GRAPH)
    os.replace(nodes_tmp, folder / NODES)


def load(folder: Path) -> tuple[Contents, Index] | None:
    """The saved index, or None when missing or corrupt (logged)."""
    graph_path, nodes_path = folder / GRAPH, folder / NODES
    if not graph_path.exists() or not nodes_path.exists():
        return None
    try:
        return _load(graph_path, nodes_path)
    except Exception as exc:  # any damage means "rebuild", never a failed start
        log.warning("local_index_corrupt", folder=str(folder), error=f"{type(exc).__name__}: {exc}")
        return None


def _load(graph_path: Path, nodes_path: Path) -> tuple[Contents, Index]:
    with closing(sqlite3.connect(f"file:{nodes_path}?mode=ro", uri=True)) as db:
        state = dict(db.execute("SELECT key, value FROM state").fetchall())
        if int(state["format"]) != FORMAT:
            raise ValueError(f"format {state['format']}, expected {FORMAT}")
        if state["graph_sha256"] != _sha256(graph_path):
            raise ValueError("the graph file does not match its checksum")
        space = _space_from(json.loads(state["space"]))
        nodes = [
            IndexedNode(
                tenant=r[0],
                id=r[1],
                slug=r[2],
                content_type=r[3],
                title=r[4],
                tags=tuple(json.loads(r[5])),
                version=r[6],
                updated_at=datetime.fromisoformat(r[7]) if r[7] else None,
            )
            for r in db.execute("SELECT * FROM nodes")
        ]
        refs: list[Ref] = [
            (r[0], (r[1], r[2]), r[3], r[4], r[5], r[6]) for r in db.execute("SELECT * FROM refs")
        ]
    graph = Index.restore(str(graph_path))
    if graph is None:
        raise ValueError("the graph file cannot be read")
    if graph.ndim != space.dim:
        raise ValueError(f"the graph has {graph.ndim} dimensions, space {space.id} {space.dim}")
    if len(graph) != len(refs) or len(refs) != int(state["vectors"]):
        raise ValueError(f"the graph holds {len(graph)} vectors, {len(refs)} are recorded")
    contents = Contents(
        space=space,
        cursor=int(state["cursor"]),
        synced_at=float(state["synced_at"]),
        next_key=int(state["next_key"]),
        nodes=nodes,
        refs=refs,
    )
    return contents, graph


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _space_json(space: Space) -> dict[str, object]:
    return {
        "id": space.id,
        "model_id": space.model_id,
        "model_sha256": space.model_sha256,
        "dim": space.dim,
        "version": space.version,
        "state": space.state,
        "created_at": space.created_at.isoformat(),
        "activated_at": space.activated_at.isoformat() if space.activated_at else None,
    }


def _space_from(data: dict[str, object]) -> Space:
    activated = data.get("activated_at")
    return Space(
        id=int(str(data["id"])),
        model_id=str(data["model_id"]),
        model_sha256=str(data["model_sha256"]),
        dim=int(str(data["dim"])),
        version=int(str(data["version"])),
        state=str(data["state"]),
        created_at=datetime.fromisoformat(str(data["created_at"])),
        activated_at=datetime.fromisoformat(str(activated)) if activated else None,
        build={},
    )
