"""The store on an S3 bucket (a real S3-compatible server, moto, started on 127.0.0.1 by ``conftest.py``).

The crash and concurrency harness runs on both roots (``test_crash.py``, ``test_concurrency.py``); these tests cover
what is specific to an object store: per-rank run metadata that no writer overwrites, compaction that defers deletion
(every intermediate state reads each row once), a reader whose listing races a deletion, a bucket that refuses
writes mid-run (training unharmed, the failure counted and reported once), the catalog views and the CLI.
"""

from __future__ import annotations

import importlib
import json
import logging
import threading
import time

import duckdb
import numpy as np
import pytest

from entropy_watch import metrics as M
from entropy_watch.cli import main
from entropy_watch.errors import StoreUnwritable
from entropy_watch.recorder import Recorder
from entropy_watch.store import RunWriter, Store, TailReader, compact, export_duckdb, write_catalog
from entropy_watch.store import query as query_module
from entropy_watch.store.files import CoverageCache, list_table_files
from entropy_watch.store.fs import ObjectPath, open_root, read_bytes, register_duckdb, vanished, walk_files
from entropy_watch.store.layout import catalog_path, default_root, run_dir

from ..waiting import wait_until
from .s3_proxy import DenyingProxy, writes

ROWS = 10


def _write(root: str, n: int, start: int = 0, rank: int = 0, run: str = "r") -> RunWriter:
    w = RunWriter(root, run, rank=rank)
    for i in range(start, start + n):
        w.write("scalars", {"step": [i] * ROWS, "name": ["m"] * ROWS, "value": list(map(float, range(ROWS)))})
    return w


def _kinds(root: str, run: str = "r") -> list[str]:
    refs = list_table_files(run_dir(default_root(root), run) / "table=scalars", CoverageCache())
    return sorted(r.kind for r in refs)


def _counts(root: str, tails: list[TailReader]) -> list[int]:
    """Rows seen by: Store, each tail (after a poll), a fresh tail, Store.sql over every run."""
    out = [Store(root).scalars("r").num_rows]
    for tail in [*tails, TailReader(root, tables=("scalars",))]:
        tail.poll()
        out.append(tail.query("SELECT count(*) AS n FROM scalars").column("n")[0].as_py())
    out.append(Store(root).sql("SELECT count(*) AS n FROM scalars").column("n")[0].as_py())
    return out


def test_roundtrip_ranks_meta_catalog_and_export(s3_root: str, tmp_path) -> None:
    root = default_root(s3_root)
    assert isinstance(root, ObjectPath) and str(root) == s3_root
    w0, w1 = _write(s3_root, 3, rank=0), _write(s3_root, 3, rank=1)
    w0.update_run_meta(config={"lr": 1e-6})
    w1.update_run_meta(vocab_size=50_000)
    w0.write("hist", {"step": [0, 0], "bin": [1, 2], "count": [5, 7]})
    w0.close()
    w1.close()
    store = Store(s3_root)
    (info,) = store.runs()
    assert (info.name, info.state, info.ranks, info.last_step) == ("r", "finished", [0, 1], 2)
    meta = store.run_meta("r")
    assert meta["config"] == {"lr": 1e-6} and meta["vocab_size"] == 50_000 and meta["name"] == "r"
    assert store.scalars("r").num_rows == 60 and store.scalars("r", rank=1).num_rows == 30
    steps, values = store.series("r", "m")
    assert steps.tolist() == [0, 1, 2] and np.isfinite(values).all()
    assert store.table("r", "hist").column("count").to_pylist() == [5, 7]
    tail = TailReader(s3_root)
    assert tail.poll() == 62 and tail.poll() == 0
    # nothing under the root but whole objects: no temporaries, no probe left behind
    names = [rel for rel, _ in walk_files(root)]
    assert not [n for n in names if n.rsplit("/", 1)[-1].startswith(".")], names
    # the catalog views expand s3:// globs through the registered filesystem (no httpfs download)
    dest = write_catalog(s3_root)
    assert dest == catalog_path(root)
    local = tmp_path / "catalog.duckdb"
    local.write_bytes(read_bytes(dest))
    con = duckdb.connect(str(local), read_only=True)
    register_duckdb(con, root)
    assert con.sql("SELECT rank, count(*) FROM scalars GROUP BY rank ORDER BY rank").fetchall() == [(0, 30), (1, 30)]
    con.close()
    out = export_duckdb(s3_root, tmp_path / "export.duckdb")
    con = duckdb.connect(str(out), read_only=True)
    assert con.sql("SELECT count(*) FROM scalars").fetchall() == [(60,)]
    assert con.sql("SELECT run, state FROM runs").fetchall() == [("r", "finished")]


def test_ranks_updating_run_meta_at_once_lose_nothing(s3_root: str) -> None:
    """Eight ranks, each merging its own fields many times at once: on S3 nobody overwrites anybody."""
    writers = [RunWriter(s3_root, "meta", rank=r) for r in range(8)]
    barrier = threading.Barrier(len(writers))

    def work(w: RunWriter) -> None:
        barrier.wait()
        for i in range(5):
            w.update_run_meta(**{f"rank{w.rank}_field": i})

    threads = [threading.Thread(target=work, args=(w,)) for w in writers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    meta = Store(s3_root).run_meta("meta")
    assert {k: v for k, v in meta.items() if k.endswith("_field")} == {f"rank{r}_field": 4 for r in range(8)}
    assert meta["created_at"] == min(w.started_at for w in writers)
    # a side writer (stored alerts) opening the run adds no object and changes nothing
    RunWriter(s3_root, "meta", heartbeat=False)
    assert Store(s3_root).run_meta("meta") == meta


def test_compaction_defers_deletion_and_every_state_counts_once(s3_root: str) -> None:
    _write(s3_root, 6)
    early = TailReader(s3_root, tables=("scalars",))
    assert _counts(s3_root, [early]) == [60] * 4
    report = compact(s3_root, "r", min_age_s=0)  # default grace: the part is PUT, its segments stay for now
    assert (report.parts_written, report.merged_files) == (1, 0)
    assert _kinds(s3_root) == ["part"] + ["seg"] * 6
    assert _counts(s3_root, [early]) == [60] * 4
    assert compact(s3_root, "r", min_age_s=0).parts_written == 0  # covered segments are not merged again
    _write(s3_root, 2, start=6)
    assert compact(s3_root, "r", min_age_s=0).parts_written == 1  # only the two new segments
    assert _kinds(s3_root) == ["part"] * 2 + ["seg"] * 8
    assert _counts(s3_root, [early]) == [80] * 4
    report = compact(s3_root, "r", min_age_s=0, grace_s=0)  # the grace period is over: covered files go
    assert (report.parts_written, report.merged_files) == (0, 8) and _kinds(s3_root) == ["part"] * 2
    assert _counts(s3_root, [early]) == [80] * 4
    report = compact(s3_root, "r", final=True)  # one part per rank; the two merged parts wait out the grace
    assert report.parts_written == 1 and _kinds(s3_root) == ["part"] * 3
    assert _counts(s3_root, [early]) == [80] * 4
    assert compact(s3_root, "r", grace_s=0).merged_files == 2 and _kinds(s3_root) == ["part"]
    assert _counts(s3_root, [early]) == [80] * 4


def _then_compact_once(fn, s3_root: str, raced: list):
    """``fn``, whose first call is followed by a compaction of run ``r`` (its report appended to ``raced``): a
    compactor that PUTs the part and deletes the segments right after a reader listed them."""

    def wrapped(*args, **kwargs):
        out = fn(*args, **kwargs)
        if not raced:
            raced.append(compact(s3_root, "r", min_age_s=0, grace_s=0))
        return out

    return wrapped


def test_reader_listing_races_a_deletion(s3_root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader lists the segments, a compactor PUTs the part and deletes them, then the reader reads: it lists
    again and counts every row once."""
    _write(s3_root, 5)
    raced: list = []
    list_then_compact = _then_compact_once(query_module.table_files, s3_root, raced)
    monkeypatch.setattr(query_module, "table_files", list_then_compact)
    for module in ("entropy_watch.store.reader", "entropy_watch.store.reads"):
        monkeypatch.setattr(importlib.import_module(module), "table_files", list_then_compact)
    assert Store(s3_root).scalars("r").num_rows == 50
    assert raced and raced[0].merged_files == 5 and _kinds(s3_root) == ["part"]


def test_tail_poll_races_a_deletion(s3_root: str) -> None:
    """A tail reader's poll lists new segments, a compactor PUTs the part and deletes them before they are read (a
    poll that outlasted the grace period, as under load): S3 answers the read with RESOURCE_NOT_FOUND, and the poll
    lists again and counts every row once."""
    _write(s3_root, 5)
    tail = TailReader(s3_root, tables=("scalars",))
    raced: list = []
    tail._watch.scan = _then_compact_once(tail._watch.scan, s3_root, raced)  # type: ignore[method-assign]
    assert tail.poll() == 50
    assert raced and raced[0].merged_files == 5 and _kinds(s3_root) == ["part"]
    assert tail.query("SELECT count(*) AS n FROM scalars").column("n")[0].as_py() == 50


def test_a_key_deleted_while_open_reads_as_vanished(s3_root: str) -> None:
    """S3's answers to reading a key deleted after it was opened (a compaction that outran the read) are recognised
    as a vanished file, so the read lists again instead of failing."""
    _write(s3_root, 1).close()
    seg = next(p for _, p in walk_files(open_root(s3_root)) if p.name.startswith("seg-"))
    f = seg.fs.open_input_file(seg.key)  # HEAD now: the key exists
    seg.fs.delete_file(seg.key)
    with pytest.raises(OSError) as err:
        f.read()
    assert vanished(err.value), err.value  # "AWS Error NO_SUCH_KEY during GetObject operation: ..."
    # a 404 without a body (as S3 answers HEAD, and moto a read under load) is the SDK's RESOURCE_NOT_FOUND: the same
    # fact; this text is the one that failed a tail poll in test_concurrency's S3 run
    assert vanished(OSError("AWS Error RESOURCE_NOT_FOUND during GetObject operation: "))


def test_bucket_refusing_writes_mid_run(
    s3_endpoint: str, s3_root: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Writes are refused for a while mid-run: the loop never notices, every row lands once writes are allowed
    again, and the failure is counted (``hooks/errors``) and reported once per thing that failed, not per attempt."""
    with DenyingProxy(s3_endpoint, writes).running() as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        rec = Recorder(RunWriter(s3_root, "refused"), flush_secs=0.1, heartbeat_secs=0.1, handle_sigterm=False)
        caplog.set_level(logging.WARNING, logger="entropy_watch")
        for step in range(60):
            rec.scalars(step, {"loss": float(step), M.ENTROPY_MEAN: 1.0 / (1 + step)})
            rec.hist(step, [0, step + 1, 2])
            if step == 20:
                proxy.on = True
                wait_until(
                    lambda: rec.errors >= 3, "three failed publishes"
                )  # several publishes (and heartbeats) failed meanwhile
            if step == 40:
                proxy.on = False
            time.sleep(0.01)
        rec.close()
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)  # read back from the server itself
    assert proxy.denied >= 3
    store = Store(s3_root)
    steps, values = store.series("refused", "loss")
    assert steps.tolist() == list(range(60)) and values.tolist() == [float(s) for s in range(60)]
    assert store.table("refused", "hist").num_rows == 60 * 2  # empty bins are not stored
    errors = store.series("refused", M.HOOKS_ERRORS)[1]
    assert errors[-1] == rec.errors >= 3
    assert store.run_info("refused").state == "finished"
    messages = [r.getMessage() for r in caplog.records]
    warnings = [m for m in messages if "failed" in m and "works again" not in m]
    assert warnings and len(warnings) == len(set(warnings)) and len(warnings) < rec.errors, warnings
    assert all("AccessDenied" in w or "Access Denied" in w for w in warnings), warnings
    assert any("works again" in m for m in messages), messages  # the outage's end is said too


def test_bad_roots_fail_with_one_line(s3_endpoint: str, s3_root: str) -> None:
    missing = s3_root.replace("s3://", "s3://no-such-bucket-")
    with pytest.raises(StoreUnwritable, match="cannot write to store s3://no-such-bucket-") as err:
        RunWriter(missing, "r")
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="names no bucket"):
        default_root("s3:///prefix")


def test_cli_reads_and_compacts_an_s3_store(
    s3_endpoint: str, s3_root: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    w = _write(s3_root, 4, run="cli-run")
    w.close()
    monkeypatch.delenv("AWS_ENDPOINT_URL")  # --endpoint-url alone must be enough
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)

    def ew(*args: str) -> str:
        capsys.readouterr()
        try:
            main(["--store", s3_root, "--endpoint-url", s3_endpoint, *args])
        except SystemExit as e:
            assert not e.code, capsys.readouterr().err
        return capsys.readouterr().out

    (row,) = json.loads(ew("ls", "--json"))
    assert row["run"] == "cli-run" and row["state"] == "finished" and row["last_step"] == 3
    assert "40" in ew("sql", "SELECT count(*) AS n FROM scalars")
    assert "cli-run" in ew("compact", "--min-age", "0")
    assert _kinds(s3_root, "cli-run") == ["part"] + ["seg"] * 4  # merged; deletion waits out the grace period
    assert Store(s3_root).scalars("cli-run").num_rows == 40


def test_import_onto_s3_and_replace(s3_root: str, tmp_path) -> None:
    from entropy_watch.importers import RunExists, import_log

    log = tmp_path / "log.csv"
    log.write_text("step,entropy,reward\n" + "".join(f"{s},{1.0 / (1 + s)},{s / 10}\n" for s in range(50)))
    assert import_log(s3_root, log, run="imp") == ["imp"]
    store = Store(s3_root)
    info = store.run_info("imp")
    assert info.state == "imported" and info.last_step == 49 and store.run_meta("imp")["imported"]
    with pytest.raises(RunExists):
        import_log(s3_root, log, run="imp")
    log.write_text("step,entropy\n" + "".join(f"{s},{0.5}\n" for s in range(10)))
    import_log(s3_root, log, run="imp", replace=True)
    steps, values = store.series("imp", M.ENTROPY_MEAN)
    assert steps.tolist() == list(range(10)) and set(values.tolist()) == {0.5}


def test_watch_records_onto_s3(s3_root: str) -> None:
    torch = pytest.importorskip("torch")
    from entropy_watch.hooks import Watch

    gen = torch.Generator().manual_seed(0)
    with Watch("watched", store=s3_root, vocab_size=32, config={"lr": 1e-6}) as w:
        for step in range(6):
            w.log_tokens(step, logits=torch.randn(2, 4, 32, generator=gen), mask=torch.ones(2, 4, dtype=torch.bool))
            w.log(step, **{"reward/mean": step / 6})
    store = Store(s3_root)
    info = store.run_info("watched")
    assert info.state == "finished" and store.run_meta("watched")["config"] == {"lr": 1e-6}
    steps, _ = store.series("watched", M.ENTROPY_MEAN)
    assert steps.tolist() == list(range(6)) and store.table("watched", "hist").num_rows > 0
