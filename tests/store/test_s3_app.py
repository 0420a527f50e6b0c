"""The app over an ``s3://`` store (moto on 127.0.0.1): the Runs table and a run's page, unchanged code paths.

The app's data layer, monitor and pages only see the store through ``TailReader``/``Store``; this checks that nothing
in between turns the URI into a local path (``Path("s3://b/p").resolve()`` would be ``/cwd/s3:/b/p``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("streamlit")

from streamlit.testing.v1 import AppTest  # noqa: E402

from entropy_watch.synthetic import write_to_store  # noqa: E402

APP_HOME = Path(__file__).resolve().parents[2] / "app" / "home.py"


@pytest.fixture(autouse=True)
def _fresh_app_caches() -> object:
    from entropy_watch.app import data

    data.clear_caches()
    yield
    data.clear_caches()


def test_runs_and_run_page_over_s3(s3_root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    write_to_store(s3_root, "s3-collapse", "fast_collapse", seed=1, n_steps=120)
    write_to_store(s3_root, "s3-healthy", "healthy", seed=2, n_steps=120)
    monkeypatch.setenv("ENTROPY_WATCH_DIR", s3_root)
    from entropy_watch.app import data

    assert data.default_store_root() == s3_root
    monkeypatch.setattr(data, "ANALYSIS_WAIT_S", 60.0)
    monkeypatch.setattr(data, "POLL_MIN_S", 0.0)
    at = AppTest.from_file(str(APP_HOME), default_timeout=120)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    df = at.dataframe[0].value.set_index("run")
    assert sorted(df.index) == ["s3-collapse", "s3-healthy"]
    assert df.loc["s3-collapse", "status"] == "✅ finished" and df.loc["s3-collapse", "last step"] == 119
    assert df.loc["s3-collapse", "health"] == "🔴 critical"
    at.switch_page("views/run.py")
    at.query_params.update({"run": "s3-collapse"})
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    shown = [t.value.replace("\\", "").replace("\u2060", "") for t in (*at.title, *at.markdown, *at.caption)]
    assert any("s3-collapse" in t for t in shown), "the run's page opened"  # (markdown escapes dropped)
