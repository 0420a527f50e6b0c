"""The store on S3 as a user meets it (moto on 127.0.0.1, started by ``conftest.py``; skipped without moto): a
bucket whose objects cannot be read for a while (access denied: credentials that may list but not read, a KMS key
the reader may not use, an expired session) is a failure of the service, not of the files: it fails the read with
one line, and never quarantines good files (which a long-lived reader, the app or ``watch``, then left out of every
read for the rest of its life).
"""

from __future__ import annotations

import threading
import urllib.parse

import pytest

from entropy_watch.cli import main
from entropy_watch.store import RunWriter, Store, TailReader, quarantine

from .s3_proxy import DenyingProxy

ROWS = 10


def _write(root: str, run: str, steps: int) -> None:
    w = RunWriter(root, run)
    for i in range(steps):
        w.write("scalars", {"step": [i] * ROWS, "name": ["m"] * ROWS, "value": list(map(float, range(ROWS)))})
    w.close()


def _object_read(command: str, path: str) -> bool:
    """A GET or HEAD of an object (``/bucket/key``), not a LIST (``/bucket?list-type=2``)."""
    return command in ("GET", "HEAD") and "/" in urllib.parse.urlsplit(path).path.strip("/")


def _through(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """Every S3 client made from now on goes through ``url`` (``--endpoint-url`` in an earlier CLI test of this
    process set ``AWS_ENDPOINT_URL_S3``, which wins over ``AWS_ENDPOINT_URL``)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", url)


def test_reads_denied_fail_in_one_line_and_quarantine_nothing(
    s3_endpoint: str, s3_root: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Listing allowed, object reads denied: ``ls`` and ``show`` exit 1 with one line naming the denial (they listed
    every run ``imported`` with no step, exit 0, and warned that each good segment was an "unreadable data file" to
    delete); nothing is quarantined."""
    _write(s3_root, "denied", 3)
    before = quarantine.found()
    with DenyingProxy(s3_endpoint, _object_read).running() as proxy:
        _through(monkeypatch, proxy.url)
        proxy.on = True
        for args in (["ls"], ["show", "denied"], ["sql", "SELECT count(*) FROM scalars"]):
            capsys.readouterr()
            with pytest.raises(SystemExit) as exit_:
                main(["--store", s3_root, *args])
            err = capsys.readouterr().err
            assert exit_.value.code == 1, (args, err)
            lines = err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: ") and "ACCESS_DENIED" in lines[0], (args, err)
        assert proxy.denied > 0
    assert quarantine.found() == before


def test_a_reader_outlives_a_denial_and_loses_no_rows(
    s3_endpoint: str, s3_root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long-lived reader (the app's TailReader, ``watch``) whose polls are denied for a while (credentials rotated,
    a session token expired): those polls fail, and once reads are allowed again every row is there. A denial used to
    quarantine every listed file for the life of the process: their rows never came back."""
    _write(s3_root, "r", 4)
    with DenyingProxy(s3_endpoint, _object_read).running() as proxy:
        _through(monkeypatch, proxy.url)
        tail = TailReader(s3_root, tables=("scalars",))
        store = Store(s3_root)
        proxy.on = True
        with pytest.raises(OSError, match="ACCESS_DENIED"):
            tail.poll()
        with pytest.raises(OSError, match="ACCESS_DENIED"):
            store.scalars("r")
        proxy.on = False
        assert tail.poll() == 4 * ROWS
        assert tail.query("SELECT count(*) AS n FROM scalars").column("n")[0].as_py() == 4 * ROWS
        assert store.scalars("r").num_rows == 4 * ROWS


def test_a_missing_bucket_is_an_error_not_an_empty_store(s3_root: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``ls``/``alerts``/``sql`` on a misspelt bucket said "no runs" and exited 0 (a CI gate passed); now one line
    naming the bucket, exit 1 (``alerts``: 3, its error status). An empty prefix of a bucket that exists is still an
    empty store."""
    missing = s3_root.replace("s3://", "s3://no-such-bucket-")
    for args, code in ((["ls"], 1), (["alerts"], 3), (["sql", "SELECT count(*) FROM scalars"], 1)):
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_:
            main(["--store", missing, *args])
        err = capsys.readouterr().err.strip()
        assert exit_.value.code == code and err.count("\n") == 0 and "does not exist" in err, (args, err)
    assert Store(s3_root).runs() == []


def test_alerts_stored_twice_by_racing_writers_list_once(s3_root: str) -> None:
    """Two ``alerts --write`` at once on S3 (no lock there) both read no stored alerts and both store them: the
    readers (``Store``, the app's ``TailReader``) list each alert once, as first written."""
    _write(s3_root, "r", 2)
    alert = {
        "step": [1, 1],
        "detector": ["collapse", "collapse"],
        "kind": ["collapse.forecast", "collapse.imminent"],
        "severity": ["warning", "critical"],
        "evidence": ["{}", "{}"],
    }
    for i, wall in enumerate((100.0, 200.0)):  # two side writers, as two `alerts --write` processes
        RunWriter(s3_root, "r", heartbeat=False).write(
            "alerts", {**alert, "message": [f"first {i}", f"second {i}"], "wall_time": [wall, wall]}
        )
    tail = TailReader(s3_root)
    tail.poll()
    for reader in (Store(s3_root), tail):
        listed = reader.alerts("r")
        assert [(a["kind"], a["message"]) for a in listed] == [
            ("collapse.forecast", "first 0"),
            ("collapse.imminent", "second 0"),
        ], listed
    assert Store(s3_root).table("r", "alerts").num_rows == 4  # the table itself keeps what was written


def test_listing_runs_reads_them_concurrently(s3_root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Listing runs on S3 costs ~12 round trips a run (run.json, the ranks' meta and heartbeat objects, five table
    prefixes); made one after another, ``ls`` of 300 runs took 214 s behind 20 ms of latency a request (19 s now).
    The runs' objects are read concurrently: two reads meet at a barrier (a listing one run at a time never gets
    there), and the listing is the one a run-by-run listing gives."""
    for run in ("a", "b", "c", "d"):
        _write(s3_root, run, 2)
    expected = [(i.name, i.state, i.last_step, i.ranks, i.meta) for i in Store(s3_root).runs()]
    barrier = threading.Barrier(2, timeout=30)
    original = Store._read_state

    def meeting(self: Store, run: str):  # type: ignore[no-untyped-def]
        if run in ("a", "b"):
            barrier.wait()
        return original(self, run)

    monkeypatch.setattr(Store, "_read_state", meeting)
    assert [(i.name, i.state, i.last_step, i.ranks, i.meta) for i in Store(s3_root).runs()] == expected
    assert [i[:3] for i in expected] == [(r, "finished", 1) for r in "abcd"]


def test_refreshing_the_catalog_reads_no_run(s3_root: str, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """``compact`` (even of one run) refreshes ``_catalog.duckdb``; creating its views on S3 read the schema of every
    data file of every run (8,800 requests for 300 one-segment runs). They are bound against the placeholders only,
    and answer the same over every run."""
    import duckdb
    from fsspec.implementations.arrow import ArrowFSWrapper

    from entropy_watch.store import write_catalog
    from entropy_watch.store.fs import read_bytes, register_duckdb
    from entropy_watch.store.layout import default_root

    for run in ("a", "b"):
        _write(s3_root, run, 3)
    opened: list[str] = []
    original = ArrowFSWrapper._open

    def spy(self, path, *args, **kwargs):  # type: ignore[no-untyped-def]
        opened.append(str(path))
        return original(self, path, *args, **kwargs)

    monkeypatch.setattr(ArrowFSWrapper, "_open", spy)
    dest = write_catalog(s3_root)
    assert opened and not [p for p in opened if "/run=a/" in p or "/run=b/" in p], opened
    local = tmp_path / "catalog.duckdb"
    local.write_bytes(read_bytes(dest))
    con = duckdb.connect(str(local), read_only=True)
    register_duckdb(con, default_root(s3_root))
    assert con.sql("SELECT run, count(*) FROM scalars GROUP BY run ORDER BY run").fetchall() == [("a", 30), ("b", 30)]
    assert con.sql("SELECT count(*) FROM hist").fetchall() == [(0,)]
    con.close()


def test_a_prefix_with_nothing_under_it_is_no_store_for_the_commands_that_read_one(
    s3_root: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--store s3://bucket/typo ls`` said "no runs" and exited 0 where the local ``--store /tmp/typo`` is an error."""
    _write(s3_root, "r", 1)
    for args, code in ((["ls"], 1), (["alerts"], 3)):
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_:
            main(["--store", f"{s3_root}/typo", *args])
        err = capsys.readouterr().err.strip()
        assert exit_.value.code == code and err.count("\n") == 0 and "no store at" in err, (args, err)
    assert [r.name for r in Store(s3_root).runs()] == ["r"]  # the store itself is there


def _bucket_head(command: str, path: str) -> bool:
    """A HEAD of the bucket itself (``/bucket``), which a policy scoped to one prefix refuses."""
    return command == "HEAD" and "/" not in urllib.parse.urlsplit(path).path.strip("/")


def test_a_bucket_the_credentials_may_not_inspect_is_not_called_missing(
    s3_endpoint: str, s3_root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Credentials allowed to list one prefix only are refused the bucket's HEAD: an empty store there is an empty
    store (a new run's first poll), not "bucket does not exist"."""
    with DenyingProxy(s3_endpoint, _bucket_head).running() as proxy:
        _through(monkeypatch, proxy.url)
        proxy.on = True
        assert Store(f"{s3_root}/fresh").runs() == []
        assert proxy.denied > 0


def test_a_read_cut_short_by_the_network_is_read_again(
    s3_endpoint: str, s3_root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A GET whose connection drops mid-body (a loaded server, a flaky network: the AWS SDK's INTERNAL_FAILURE "Failed
    to flush response stream") is a passing fault: the read is made again and loses nothing, instead of failing a
    whole ``ls``, a ``show`` or an app refresh (a reader under eight writers and a compactor failed so in CI)."""
    _write(s3_root, "cut", 4)
    with DenyingProxy(s3_endpoint, _object_read, cut=True, budget=12).running() as proxy:
        _through(monkeypatch, proxy.url)
        proxy.on = True
        steps, _ = Store(s3_root).series("cut", "m")
        assert proxy.denied == 12  # more answers cut short than the SDK retries one request: read again
    assert steps.tolist() == list(range(4))
