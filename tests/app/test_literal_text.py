"""Text from data (run, column and metric names, import notes, alert messages, evidence, paths) is shown as data: the
app passes it through ``display.md`` wherever Streamlit renders markdown, so it never becomes a link, emphasis, an
emoji, maths or HTML. Checked on ``md`` itself with a CommonMark renderer, and on every page against a store that
holds such text."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import numpy as np
import pytest
from markdown_it import MarkdownIt

from entropy_watch import metrics as M
from entropy_watch.analysis import Alert
from entropy_watch.app.display import SHORTCODE_COLON, WORD_JOINER, md
from entropy_watch.store import RunWriter

from .test_pages import app

LINK = "[click me](http://evil.example) **BOLD**"
COLUMN = "kl_**bold**"
IMPORTED_RUN = "inj_test:smile:"
RECORDED_RUN = "md__run__:+1:"
FRAMEWORK = "[fw](http://evil.example) $x^2$ <b>fw</b>"
MESSAGE = "msg [l](http://evil.example) :smile: $y$ <i>z</i> www.evil.example me@evil.example"
DETECTOR = "det_**x**"
TRICKY = [
    LINK, COLUMN, IMPORTED_RUN, RECORDED_RUN, FRAMEWORK, MESSAGE, "# heading", "- item", "1. item", "> quote",
    "~~strike~~ `code` a\\b | c", ":red[colour] :material/home:", "&amp; &lt;", "\\(x\\) $$y$$", "_x_ *y* __z__",
]  # fmt: skip
TAGS = re.compile(r"<(?!/?p>)[a-z]")  # any tag but the paragraph around inline text


def rendered(source: str) -> tuple[str, str]:
    """``(html, text)`` of ``source`` rendered as CommonMark (what Streamlit's markdown builds on): the text with the
    tags dropped, entities resolved and the invisible word joiners removed."""
    out = MarkdownIt("commonmark").render(source)
    return out, html.unescape(re.sub(r"<[^>]+>", "", out)).strip().replace(WORD_JOINER, "")


def assert_literal(source: str, value: str) -> None:
    """``value`` is in ``source`` (markdown) as ``md`` writes it and shows as itself: CommonMark keeps every
    character (a link or emphasis would drop the brackets or asterisks), and Streamlit's own additions, which work on
    the text after the escapes (shortcodes and directives need a bare ':', maths a '$', GFM's autolinks 'www.', '@'
    or 'http:/'), find none of them (the unit test below checks ``md`` for those)."""
    assert md(value) in source, (value, source)
    assert value in rendered(source)[1], (value, rendered(source))


@pytest.mark.parametrize("value", TRICKY)
def test_md_renders_data_literally(value: str) -> None:
    source = md(value)
    out, text = rendered(source)
    assert text == value and not TAGS.search(out), (source, out)
    assert not SHORTCODE_COLON.search(source.replace("\\", "")), source  # no shortcode, directive or http://
    assert not re.search(r"(?<!\\)\$", source), source
    for bare in ("www.", "@e", "http:/"):
        assert bare not in source.replace("\\", ""), source


@pytest.mark.parametrize("name", ["exp:1", "run@host", "grpo-s0_v1.2", "a,b+c"])
def test_a_plain_run_name_copied_from_the_page_is_the_name(name: str) -> None:
    """Joiners go only where a shortcode, directive or autolink could form: a name a user copies into the CLI must
    not carry invisible characters."""
    assert WORD_JOINER not in md(name) and rendered(md(name))[1] == name


@pytest.fixture(scope="module")
def tricky_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An import whose column name and one bad cell are markdown (the importer's note quotes both), and a recorded
    run whose name, framework, stored alert message and detector are markdown."""
    from entropy_watch.importers import import_log
    from entropy_watch.store import Store

    root = tmp_path_factory.mktemp("tricky") / "store"
    tmp = tmp_path_factory.mktemp("tricky-csv")
    h = 0.5 + 0.01 * np.sin(np.arange(80) / 3.0)  # a healthy level: the page's point here is the text
    rows = [f"{i},{v:.6f},{0.1 if i != 50 else json.dumps(LINK)}\n" for i, v in enumerate(h)]
    (tmp / "log.csv").write_text(f'step,entropy,"{COLUMN}"\n' + "".join(rows))
    import_log(Store(root), tmp / "log.csv", run=IMPORTED_RUN, mapping={"entropy/mean": "entropy"})
    w = RunWriter(root, RECORDED_RUN)
    w.update_run_meta(framework=FRAMEWORK)
    w.write("scalars", {"step": list(range(80)), "name": [M.ENTROPY_MEAN] * 80, "value": [float(x) for x in h]})
    alert = Alert(step=5, detector=DETECTOR, kind="spike", severity="warning", message=MESSAGE)
    w.write("alerts", {k: [v] for k, v in alert.to_row().items()})
    w.heartbeat(step=79)
    w.close()
    return root


def markdown_sources(at: object) -> list[str]:
    """Every string Streamlit renders as markdown on the page: titles, markdown, captions, alert boxes, expander
    labels, page-link labels and static tables' cells."""
    out = [e.value for kind in ("title", "markdown", "caption", "error", "warning", "info", "success") for e in
           getattr(at, kind)]  # fmt: skip
    out += [e.label for e in at.expander]
    out += [p.proto.label for p in at.get("page_link")]
    for t in at.table:
        out += [str(x) for x in t.value.to_numpy().ravel()]
    return out


def find(sources: list[str], value: str) -> list[str]:
    return [s for s in sources if value in rendered(s)[1]]


def test_run_page_shows_names_notes_and_alerts_literally(monkeypatch: pytest.MonkeyPatch, tricky_store: Path) -> None:
    at = app(monkeypatch, tricky_store, "views/run.py", {"run": IMPORTED_RUN})
    sources = markdown_sources(at)
    assert_literal(at.title[0].value, IMPORTED_RUN)
    notes = find(sources, LINK)
    assert notes, "the importer's note quoting the cell is shown"
    for s in notes:
        assert_literal(s, LINK)
        assert_literal(s, COLUMN)

    at = app(monkeypatch, tricky_store, "views/run.py", {"run": RECORDED_RUN})
    sources = markdown_sources(at)
    assert_literal(at.title[0].value, RECORDED_RUN)
    for value in (FRAMEWORK, MESSAGE, DETECTOR):
        shown = find(sources, value)
        assert shown, f"{value!r} is shown"
        for s in shown:
            assert_literal(s, value)


def test_unknown_run_and_compare_show_names_literally(monkeypatch: pytest.MonkeyPatch, tricky_store: Path) -> None:
    at = app(monkeypatch, tricky_store, "views/run.py", {"run": "inj_test:smil"})
    links = [p.proto.label for p in at.get("page_link")]
    assert any(rendered(s)[1] == IMPORTED_RUN for s in links), links
    assert_literal(next(e.value for e in at.error), "inj_test:smil")
    at = app(monkeypatch, tricky_store, "views/compare.py")
    latest = [c.value for c in at.caption if "Entropy level" in c.value]
    assert latest and IMPORTED_RUN in rendered(latest[0])[1] and RECORDED_RUN in rendered(latest[0])[1]
    assert_literal(latest[0], IMPORTED_RUN)
