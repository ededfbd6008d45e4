"""`semantic bench snapshot`: `semantic export` / `semantic import` against pg_dump / pg_restore.

Data: N nodes with 384-dimensional embedding-like vectors (:class:`EmbeddingLike`), COPYed
into a throw-away embedded PostgreSQL and indexed (HNSW) by :func:`load_corpus`, as in
`semantic bench search`. No service runs: the schema comes from ``bootstrap_schema`` and the
space from ``spaces.ensure_space`` (a made-up model id; nothing is embedded).

Measured, alternating for ``rounds`` rounds on the same source database:

- export: ``semantic export --out DIR --json`` in a child process (the product's code path,
  exactly what an operator runs); its peak RSS sampled from outside every 50 ms with psutil
  (not the ``peak_rss_mib`` the command prints: ``ru_maxrss`` survives fork and exec, so a
  child of this process, which holds the N vectors, would report this process's peak);
- baseline: ``pg_dump -Fc`` of the same database (the binary next to the embedded server);
- import: ``semantic import DIR --json`` into a new database after ``bootstrap_schema``
  (the snapshot's space is created there, vectors kept, no re-embedding);
- baseline: ``pg_restore`` of the dump into a new, empty database.

Each import and restore is checked: the new database holds N nodes and N vectors. Seconds
are wall clock from start to exit of the child process; both sides include the server's
work (index build, WAL). Peak RSS is the client process only (the server's memory is shared
by both sides). One more export, of a database holding N/4 nodes, shows that the export's
peak RSS does not grow with N (it streams in batches). Reported: medians of the rounds and
their ratios, ``export_vs_pg_dump_seconds`` (goal <= 1.5) and
``import_vs_pg_restore_seconds``. Last, with a model, ``degraded_reads``: dense reads
answered from the search service's local index while PostgreSQL is stopped against normal
ones, on N new nodes (:mod:`.degraded`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import psutil

from semantic.store.postgres import spaces
from semantic.store.postgres.db import init_connection
from semantic.store.postgres.schema import bootstrap_schema
from semantic.tools.bench.corpus import BULK_LOAD_SETTINGS, EmbeddingLike, load_corpus
from semantic.tools.bench.degraded import measure_degraded_reads
from semantic.tools.devstack import EmbeddedPostgres, free_port
from semantic.tools.devstack.postgres import postgres_bin_dir

GOALS = {"export_vs_pg_dump_seconds": 1.5}
MODEL_ID = "bench-snapshot"
"""The made-up model of the benchmark's space (nothing is embedded)."""
SAMPLE_S = 0.05
"""How often a child's RSS is read."""
MAINTENANCE_WORK_MEM = "1GB"
"""Server-wide, so pg_restore's HNSW build has the memory ``load_corpus`` gives its own."""


@dataclass(frozen=True)
class SnapshotBenchConfig:
    """What to measure."""

    n: int = 200_000
    dim: int = 384
    clusters: int = 200
    rounds: int = 2
    batch_size: int = 5_000
    seed: int = 7
    model_dir: Path | None = None
    """The embedder's model for the degraded-read part (None: that part is skipped)."""
    queries: int = 200
    """Query vectors of the degraded-read part."""


@dataclass(frozen=True)
class Run:
    """One child process: wall seconds, peak RSS sampled from outside, its stdout."""

    seconds: float
    peak_rss_bytes: int
    stdout: str


def run_measured(command: Sequence[str], env: dict[str, str]) -> Run:
    """Run ``command`` to completion, sampling its RSS every :data:`SAMPLE_S` seconds;
    raises RuntimeError with its stderr when it fails."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        child = subprocess.Popen(list(command), env=env, stdout=out, stderr=err)
        peak = 0
        try:
            watched = psutil.Process(child.pid)
            while child.poll() is None:
                with suppress(psutil.NoSuchProcess, psutil.ZombieProcess):
                    peak = max(peak, watched.memory_info().rss)
                time.sleep(SAMPLE_S)  # sampling period, not a wait for a condition
        except psutil.NoSuchProcess:
            pass  # exited before the first sample
        finally:
            if child.poll() is None:  # interrupted: leave no child behind
                child.kill()
        code = child.wait()
        seconds = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        if code != 0:
            tail = err.read().decode("utf-8", "replace")[-2000:]
            raise RuntimeError(f"{command[0]} {command[1:3]} exited with {code}: {tail}")
    return Run(seconds, peak, stdout)


def _env(database_url: str) -> dict[str, str]:
    """The children's environment: no PG* variables (they would redirect libpq)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["DATABASE_URL"] = database_url
    return env


def _semantic(*args: str) -> list[str]:
    """The `semantic` CLI of this interpreter."""
    return [sys.executable, "-m", "semantic.tools.cli.main", *args]


def _summary(stdout: str) -> dict[str, Any]:
    """The last JSON line a `semantic ... --json` printed."""
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"no JSON summary in {stdout[-500:]!r}")
    parsed: dict[str, Any] = json.loads(lines[-1])
    return parsed


def _disk_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


async def _counts(url: str) -> tuple[int, int]:
    """Nodes and vectors of the active space in the database at ``url``."""
    conn = await asyncpg.connect(url)
    try:
        await init_connection(conn)
        table = (await spaces.active_space(conn)).table
        nodes = await conn.fetchval("SELECT count(*) FROM semantic.nodes")
        vectors = await conn.fetchval(f"SELECT count(*) FROM {table}")
    finally:
        await conn.close()
    return int(nodes), int(vectors)


async def _source(url: str, vectors: np.ndarray[Any, Any], rng: np.random.Generator) -> Any:
    """Schema, one active space, then the corpus; returns load_corpus's timings."""
    await bootstrap_schema(url)
    conn = await asyncpg.connect(url)
    try:
        await init_connection(conn)
        await spaces.ensure_space(
            conn,
            model_id=MODEL_ID,
            model_sha256=hashlib.sha256(MODEL_ID.encode()).hexdigest(),
            dim=vectors.shape[1],
        )
    finally:
        await conn.close()
    return await load_corpus(url, vectors, rng)


@contextmanager
def tuned_postgres(folder: Path) -> Iterator[EmbeddedPostgres]:
    """A throw-away server tuned as `bench search`'s (no fsync, large shared_buffers)."""
    postgres = EmbeddedPostgres(
        folder / "postgres",
        free_port(),
        settings={**BULK_LOAD_SETTINGS, "maintenance_work_mem": MAINTENANCE_WORK_MEM},
    )
    postgres.start()
    try:
        yield postgres
    finally:
        postgres.stop()


class _Bench:
    """The measurements of one run, against one server and a work folder."""

    def __init__(self, postgres: EmbeddedPostgres, work: Path, config: SnapshotBenchConfig):
        self.pg = postgres
        self.work = work
        self.config = config
        self.bin = postgres_bin_dir(postgres.version)

    def export(self, database: str, name: str) -> dict[str, Any]:
        out = self.work / name
        args = ("export", "--out", str(out), "--json", "--batch-size", str(self.config.batch_size))
        run = run_measured(_semantic(*args), _env(self.pg.url(database)))
        summary = _summary(run.stdout)
        return {
            "seconds": run.seconds,
            "bytes": _disk_bytes(out),
            "peak_rss_mib": run.peak_rss_bytes / 2**20,
            "files": len(summary["files"]),
            "path": out,
        }

    def pg_dump(self, database: str, name: str) -> dict[str, Any]:
        out = self.work / name
        command = [str(self.bin / "pg_dump"), "-Fc", "-f", str(out), "-d", self.pg.url(database)]
        run = run_measured(command, _env(""))
        return {
            "seconds": run.seconds,
            "bytes": _disk_bytes(out),
            "peak_rss_mib": run.peak_rss_bytes / 2**20,
            "path": out,
        }

    def semantic_import(self, snapshot: Path, database: str) -> dict[str, Any]:
        self.pg.create_database(database)
        url = self.pg.url(database)
        asyncio.run(bootstrap_schema(url))
        args = ("import", str(snapshot), "--json", "--batch-size", str(self.config.batch_size))
        run = run_measured(_semantic(*args), _env(url))
        summary = _summary(run.stdout)
        return self._restored(database, run, heal_needed=summary["heal_needed"])

    def pg_restore(self, dump: Path, database: str) -> dict[str, Any]:
        self.pg.create_database(database)
        command = [str(self.bin / "pg_restore"), "-d", self.pg.url(database), str(dump)]
        return self._restored(database, run_measured(command, _env("")))

    def _restored(self, database: str, run: Run, **extra: Any) -> dict[str, Any]:
        nodes, vectors = asyncio.run(_counts(self.pg.url(database)))
        self.pg.drop_database(database)  # disk: a 200k database is ~1 GB with its index
        return {
            "seconds": run.seconds,
            "peak_rss_mib": run.peak_rss_bytes / 2**20,
            "nodes": nodes,
            "vectors": vectors,
            **extra,
        }


def _median(rounds: list[dict[str, Any]], vectors: int) -> dict[str, Any]:
    """Medians over the rounds, with vectors/s and each round's seconds."""
    seconds = statistics.median(r["seconds"] for r in rounds)
    out: dict[str, Any] = {
        "vectors": vectors,
        "seconds": round(seconds, 3),
        "vectors_per_s": round(vectors / seconds, 1),
        "peak_rss_mib": round(statistics.median(r["peak_rss_mib"] for r in rounds), 1),
        "rounds_seconds": [round(r["seconds"], 3) for r in rounds],
    }
    if "bytes" in rounds[0]:
        out["bytes"] = int(statistics.median(r["bytes"] for r in rounds))
    for key in ("files", "nodes", "heal_needed"):
        if key in rounds[0]:
            values = [r[key] for r in rounds]
            out[key] = values[0] if len(set(values)) == 1 else values
    if "nodes" in rounds[0]:
        out["vectors_restored"] = min(r["vectors"] for r in rounds)
    return out


def run_snapshot_bench(
    config: SnapshotBenchConfig, progress: Callable[[str], None] = lambda _: None
) -> dict[str, Any]:
    """Load, then alternate export / pg_dump / import / pg_restore; returns the JSON-ready
    report."""
    rng = np.random.default_rng(config.seed)
    shape = EmbeddingLike(config.dim, config.clusters, rng)
    quarter = max(1, config.n // 4)
    with (
        tempfile.TemporaryDirectory(prefix="semantic-bench-snapshot-") as folder,
        tuned_postgres(Path(folder)) as postgres,
    ):
        work = Path(folder) / "out"
        work.mkdir()
        bench = _Bench(postgres, work, config)
        progress(f"loading {config.n} nodes, then the HNSW index")
        postgres.create_database("source")
        load = asyncio.run(_source(postgres.url("source"), shape.documents(config.n, rng), rng))
        progress(f"loaded: {load}; loading {quarter} nodes for the N/4 export")
        postgres.create_database("quarter")
        asyncio.run(_source(postgres.url("quarter"), shape.documents(quarter, rng), rng))
        rows: dict[str, list[dict[str, Any]]] = {
            "export": [], "pg_dump": [], "import": [], "pg_restore": []
        }  # fmt: skip
        for r in range(config.rounds):
            progress(f"round {r + 1}: semantic export")
            exported = bench.export("source", f"snap{r}")
            progress(f"round {r + 1}: pg_dump -Fc")
            dumped = bench.pg_dump("source", f"dump{r}.pgdump")
            progress(f"round {r + 1}: semantic import")
            rows["import"].append(bench.semantic_import(exported.pop("path"), f"imported{r}"))
            progress(f"round {r + 1}: pg_restore")
            rows["pg_restore"].append(bench.pg_restore(dumped.pop("path"), f"restored{r}"))
            rows["export"].append(exported)
            rows["pg_dump"].append(dumped)
        progress(f"semantic export of the {quarter}-node database")
        small = bench.export("quarter", "snap-quarter")
        for name in ("source", "quarter"):  # disk and buffers for the next part
            postgres.drop_database(name)
        degraded = (
            measure_degraded_reads(
                postgres,
                config.model_dir,
                shape.documents(config.n, rng),
                shape.queries(config.queries, rng),
                work=Path(folder),
                rounds=config.rounds,
                rng=rng,
                progress=progress,
            )
            if config.model_dir is not None
            else None
        )
    report = {name: _median(values, config.n) for name, values in rows.items()}
    export_vs = report["export"]["seconds"] / report["pg_dump"]["seconds"]
    import_vs = report["import"]["seconds"] / report["pg_restore"]["seconds"]
    big_rss = report["export"]["peak_rss_mib"]
    small_rss = round(small["peak_rss_mib"], 1)
    return {
        "benchmark": "snapshot",
        "n": config.n,
        "dim": config.dim,
        "rounds": config.rounds,
        "setup": {
            "load": "COPY, then HNSW built by the product DDL (m=16, ef_construction=64)",
            **load,
            "shared_buffers": BULK_LOAD_SETTINGS["shared_buffers"],
            "maintenance_work_mem": MAINTENANCE_WORK_MEM,
            "batch_size": config.batch_size,
            "export": "semantic export --out DIR --json (child process)",
            "import": "semantic import DIR --json into a new database after bootstrap_schema",
            "pg_dump": "pg_dump -Fc (one file, default compression)",
            "pg_restore": "pg_restore into a new empty database (one job)",
            "rss": "client process only, sampled every 50 ms with psutil",
        },
        **report,
        "export_peak_rss_vs_n": {
            f"n_{config.n}_mib": big_rss,
            f"n_{quarter}_mib": small_rss,
            "ratio": round(big_rss / small_rss, 3),
            "quarter_seconds": round(small["seconds"], 3),
        },
        "export_vs_pg_dump_seconds": round(export_vs, 3),
        "import_vs_pg_restore_seconds": round(import_vs, 3),
        "export_vs_pg_dump_bytes": round(report["export"]["bytes"] / report["pg_dump"]["bytes"], 3),
        **({"degraded_reads": degraded} if degraded is not None else {}),
        "goals_met": {
            "export_vs_pg_dump_seconds<=1.5": export_vs <= GOALS["export_vs_pg_dump_seconds"],
        },
    }
