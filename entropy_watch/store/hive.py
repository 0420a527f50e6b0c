"""What engines that discover the Hive layout themselves (Spark, and Hive-style readers) need at the store root.

``spark.read.parquet(ROOT)`` finds the ``run=``/``table=``/``rank=`` partitions by listing, but without
``mergeSchema`` it takes the *columns* from one file only: the root's ``_common_metadata`` summary when there is one,
else an arbitrary data file, so the columns of the other four tables would be missing (their rows read as nulls).
The store therefore keeps ``ROOT/_common_metadata``: a Parquet file with no rows whose schema is the union of every
table's core columns and the writers' ``_writer``/``_seq`` (the five tables share no column name with two types).
Partition columns are not in it; engines add them from the paths. Its name starts with ``_``, so every engine skips it
as data (Spark reads it only as the schema summary it is).

The union is fixed by :data:`~entropy_watch.store.schema.TABLE_SCHEMAS`, so the file never changes between writers:
the first writer on a root publishes it (atomically, like any store file) and everyone after finds it. Columns a
caller adds to a table later are not in it; read with ``mergeSchema=true`` to get them.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from entropy_watch.store import fs, layout
from entropy_watch.store.atomic import json_tmp_path, publishing
from entropy_watch.store.fs import StorePath
from entropy_watch.store.schema import SEQ_COL, TABLE_SCHEMAS, WRITER_COL

COMMON_METADATA = "_common_metadata"


def union_schema() -> pa.Schema:
    """Every table's core columns (first appearance order, tables in :data:`~.layout.TABLES` order), then
    ``_writer`` and ``_seq``."""
    fields: dict[str, pa.Field] = {}
    for table in layout.TABLES:
        for f in TABLE_SCHEMAS[table]:
            if fields.setdefault(f.name, f).type != f.type:  # guards the claim in the module docstring
                raise AssertionError(f"column {f.name!r} has two types across tables")
    fields[WRITER_COL] = pa.field(WRITER_COL, pa.string())
    fields[SEQ_COL] = pa.field(SEQ_COL, pa.int64())
    return pa.schema(list(fields.values()))


def ensure_common_metadata(root: StorePath) -> None:
    """Publish ``ROOT/_common_metadata`` unless it is there (one ``stat``, or one HEAD on an object store)."""
    path = layout.default_root(root) / COMMON_METADATA
    try:
        fs.mtime(path)
        return
    except OSError:
        pass
    with publishing(path, json_tmp_path(path)) as fh:
        pq.write_metadata(union_schema(), fh)
