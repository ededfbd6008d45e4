"""Migration files: ordered by number, named NNN_name.sql, checksummed."""

from pathlib import Path

import pytest

from semantic.common.errors import BootstrapError
from semantic.store.postgres.schema import load_migrations


def test_shipped_migrations_are_ordered_and_start_at_one() -> None:
    migrations = load_migrations()
    assert migrations, "the package ships its migrations as package data"
    versions = [m.version for m in migrations]
    assert versions == sorted(versions)
    assert versions[0] == 1


def test_files_load_in_numeric_order(tmp_path: Path) -> None:
    (tmp_path / "010_later.sql").write_text("SELECT 10;")
    (tmp_path / "002_second.sql").write_text("SELECT 2;")
    (tmp_path / "README.md").write_text("ignored")
    assert [m.filename for m in load_migrations(tmp_path)] == ["002_second.sql", "010_later.sql"]


def test_badly_named_sql_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "nodes.sql").write_text("SELECT 1;")
    with pytest.raises(BootstrapError, match=r"NNN_name\.sql"):
        load_migrations(tmp_path)


def test_two_files_with_one_number_are_refused(tmp_path: Path) -> None:
    (tmp_path / "001_a.sql").write_text("SELECT 1;")
    (tmp_path / "001_b.sql").write_text("SELECT 2;")
    with pytest.raises(BootstrapError, match="share a version"):
        load_migrations(tmp_path)


def test_checksum_changes_with_the_text(tmp_path: Path) -> None:
    path = tmp_path / "001_a.sql"
    path.write_text("SELECT 1;")
    before = load_migrations(tmp_path)[0].checksum
    path.write_text("SELECT 2;")
    assert load_migrations(tmp_path)[0].checksum != before
    assert len(before) == 64
