"""Files at a location named by a URL (fsspec): the backups' packed snapshots. No SQL here."""
