"""Generic CSV / JSONL / JSON list: step and alias detection, --map overrides, row-order fallback, run columns."""

from __future__ import annotations

import csv
import json

import pytest

from entropy_watch import metrics as M
from entropy_watch.aliases import detect_canonical, find_step_column
from entropy_watch.errors import ImportFormatError
from entropy_watch.importers import detect_format, load_log


@pytest.mark.parametrize(
    ("columns", "step"),
    [
        (["Step", "entropy"], "Step"),
        (["global_step", "entropy"], "global_step"),
        (["_step", "_runtime", "entropy"], "_step"),
        (["_step", "train/global_step", "entropy"], "train/global_step"),  # HF + W&B: _step counts log calls
        (["iteration", "x"], "iteration"),
        (["iter", "x"], "iter"),
        (["epoch", "x"], None),
    ],
)
def test_step_aliases(columns, step) -> None:
    assert find_step_column(columns) == step


@pytest.mark.parametrize(
    ("columns", "entropy", "reward"),
    [
        (["entropy_avg", "reward_avg"], "entropy_avg", "reward_avg"),
        (["actor/entropy", "critic/score/mean"], "actor/entropy", "critic/score/mean"),
        (["actor/entropy_loss", "env/all/reward/total"], "actor/entropy_loss", "env/all/reward/total"),
        (["optim/entropy", "reward/mean"], "optim/entropy", "reward/mean"),
        (["policy_entropy", "reward"], "policy_entropy", "reward"),
        (["train/entropy", "train/reward"], "train/entropy", "train/reward"),
        (["eval_entropy", "entropy/mean"], "entropy/mean", None),
        (
            ["actor/main_chain/entropy", "val-core/GSM8K/reward/mean@1"],
            "actor/main_chain/entropy",
            "val-core/GSM8K/reward/mean@1",
        ),
        (["x/entropy", "val-core/d/acc/mean@4", "val-core/d/acc/mean@1"], "x/entropy", "val-core/d/acc/mean@1"),
        (["ENTROPY", "Reward"], "ENTROPY", "Reward"),
    ],
)
def test_entropy_and_reward_aliases(columns, entropy, reward) -> None:
    found = detect_canonical(columns)
    assert found.get(M.ENTROPY_MEAN) == entropy
    assert found.get(M.REWARD_MEAN) == reward


def test_eval_and_coefficient_columns_are_not_entropy() -> None:
    found = detect_canonical(["eval_entropy", "val/entropy", "entropy_coef", "entropy/frac_low"])
    assert M.ENTROPY_MEAN not in found and found[M.CONTROL_ENTROPY_COEF] == "entropy_coef"


def test_csv_every_numeric_column_under_its_source_name(tmp_path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("step,entropy,reward,loss,note\n1,0.9,0.1,2.0,ok\n2,0.8,0.2,,warm\n3,nan,0.3,1.5,fine\n")
    (run,) = load_log(path)
    assert run.name == "m" and run.fmt == "csv"
    assert run.series("loss")[0].tolist() == [1, 3]  # empty cell: no point at that step
    assert run.series(M.ENTROPY_MEAN)[1][2] != run.series(M.ENTROPY_MEAN)[1][2]  # "nan" kept as NaN
    assert run.meta["text_columns"] == ["note"] and "note" not in run.scalars
    assert run.meta["column_mapping"] == run.mapping
    assert run.meta["entropy_definition"].startswith("unknown")


def test_map_overrides_detection(tmp_path) -> None:
    path = tmp_path / "custom.csv"
    path.write_text("iter,ent,acc,entropy,step\n10,0.9,0.1,5,1\n20,0.8,0.2,5,2\n")
    (run,) = load_log(path, mapping={"step": "iter", "entropy": "ent", "reward": "acc", "kl/ref": "entropy"})
    assert run.mapping == {"step": "iter", M.ENTROPY_MEAN: "ent", M.KL_REF: "entropy", M.REWARD_MEAN: "acc"}
    assert run.series(M.ENTROPY_MEAN)[0].tolist() == [10, 20]
    assert run.series("ent")[1].tolist() == [0.9, 0.8] and run.series("step")[1].tolist() == [1, 2]
    assert run.meta["mapping_overrides"] == {M.ENTROPY_MEAN: "ent", M.REWARD_MEAN: "acc", M.KL_REF: "entropy"}


def test_no_step_column_uses_row_order(tmp_path) -> None:
    path = tmp_path / "rows.tsv"
    path.write_text("entropy\treward\n0.9\t0\n0.8\t1\n")
    (run,) = load_log(path)
    assert run.series(M.ENTROPY_MEAN)[0].tolist() == [0, 1]
    assert run.mapping["step"] == "<row order>"
    assert any("no step column; using row order" in n for n in run.notes)


def test_json_list_and_nested_jsonl(tmp_path) -> None:
    lst = tmp_path / "hist.json"
    lst.write_text(json.dumps([{"iteration": i, "policy_entropy": 1.0 / (i + 1)} for i in range(4)], indent=1))
    assert detect_format(lst) == "json"
    (run,) = load_log(lst)
    assert run.series(M.ENTROPY_MEAN)[0].tolist() == [0, 1, 2, 3]
    nested = tmp_path / "n.jsonl"
    nested.write_text("".join(json.dumps({"step": i, "actor": {"entropy": 0.5}, "ok": True}) + "\n" for i in range(3)))
    assert detect_format(nested) == "jsonl"
    (run,) = load_log(nested)
    assert run.mapping[M.ENTROPY_MEAN] == "actor/entropy" and run.series("ok")[1].tolist() == [1.0, 1.0, 1.0]


def test_run_name_column_splits_runs(tmp_path) -> None:
    path = tmp_path / "two.csv"
    path.write_text("step,run_name,entropy\n1,a,0.9\n1,b,0.5\n2,a,0.8\n2,b,0.4\n")
    runs = {r.name: r for r in load_log(path)}
    assert set(runs) == {"a", "b"}
    assert runs["b"].series(M.ENTROPY_MEAN)[1].tolist() == [0.5, 0.4]
    assert not runs["a"].notes or all("rows without" not in n for n in runs["a"].notes)


def test_non_numeric_cell_in_other_column_is_skipped_with_a_note(tmp_path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("step,entropy,loss\n1,0.9,1.0\n2,0.8,oops\n3,0.7,0.5\n")
    (run,) = load_log(path)
    assert run.series("loss")[0].tolist() == [1, 3]
    assert any("'loss': skipped 1 non-numeric cell(s) (first at line 3: 'oops')" in n for n in run.notes)


def test_unfinished_last_jsonl_line_is_skipped(tmp_path) -> None:
    path = tmp_path / "live.jsonl"
    path.write_text('{"step": 1, "entropy": 0.5}\n{"step": 2, "entropy": 0.4}\n{"step": 3, "entr')
    (run,) = load_log(path)
    assert run.series(M.ENTROPY_MEAN)[0].tolist() == [1, 2]
    assert any("unfinished" in n for n in run.notes)


HEADER = ["step", "loss", "reward_avg", "tokens_per_sec", "entropy_avg", "eval_acc"]


def _csv_rows(n: int) -> list[list[str]]:
    """Rows as a training script formats them (``f"{x:.6f}"``), eval_acc every 5th step only."""
    return [
        [str(s), f"{-0.1 * s:.6f}", f"{0.01 * s:.6f}", f"{20 + s + 0.188117:.6f}", f"{1.0 / s:.6f}"]
        + [f"{s / 2:.1f}" if s % 5 == 0 else ""]
        for s in range(1, n + 1)
    ]


def test_csv_cut_inside_its_last_row_skips_that_row(tmp_path) -> None:
    """A CSV still being written (``csv.writer``, one row per step, flushed): the copy ends inside a row. That row
    is not data (``2`` for ``23.188117``): skipped with a note, as an unfinished JSONL line is."""
    path = tmp_path / "live.csv"
    with path.open("w", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows([HEADER, *_csv_rows(3)])
    path.write_text(path.read_text()[: -len("3.188117,0.333333,\n")])  # step 3 cut in tokens_per_sec
    assert path.read_text().endswith("\n3,-0.300000,0.030000,2")
    (run,) = load_log(path)
    assert run.series("tokens_per_sec")[0].tolist() == [1, 2]
    assert run.series(M.ENTROPY_MEAN)[0].tolist() == [1, 2]
    assert "last line (4) is unfinished (4 of 6 fields and no line end: file still being written?); skipped it" in (
        run.notes
    )


@pytest.mark.parametrize("header", [HEADER, [*HEADER, "notes"]], ids=["full-rows", "short-rows"])
def test_csv_without_a_final_newline_keeps_its_last_row(tmp_path, header) -> None:
    """Rows joined by newlines with none after the last (as six real logs in shared/real_runs end): the last row is
    complete and kept — also when every row is one field short of the header (each row is padded)."""
    path = tmp_path / "done.csv"
    path.write_text("\n".join(",".join(r) for r in [header, *_csv_rows(3)]))
    (run,) = load_log(path)
    assert run.series("tokens_per_sec")[1][-1] == pytest.approx(23.188117)
    assert run.series(M.ENTROPY_MEAN)[0].tolist() == [1, 2, 3]
    assert not any("unfinished" in n for n in run.notes)


@pytest.mark.parametrize(
    ("text", "columns"),
    [
        ("step,a\tb\tc\n1,0.5\n2,0.4\n", ["step", "a\tb\tc"]),  # tabs inside a CSV header cell
        ("step\tentropy\n1\t0.5\n2\t0.4\n", ["step", "entropy"]),  # a TSV
        ("step;x,y\n1;0.5\n2;0.4\n", ["step", "x,y"]),  # semicolons, a comma inside a name
    ],
)
def test_delimiter_agrees_with_the_data_rows(tmp_path, text, columns) -> None:
    """The delimiter is the one that splits the header and the data rows alike, not the most frequent character of
    the header (found by fuzzing: a column named '<\\t\\t<' turned a CSV into a TSV with no usable column)."""
    p = tmp_path / "m.csv"
    p.write_text(text, newline="")
    (run,) = load_log(p, mapping={"entropy": columns[1]})
    steps, values = run.series(M.ENTROPY_MEAN)
    assert steps.tolist() == [1, 2] and values.tolist() == [0.5, 0.4]


def test_an_entropy_column_without_a_positive_value_is_a_loss(tmp_path) -> None:
    """A column auto-mapped as entropy that holds -H (a trainer's ``entropy_loss``) is negated and the note says so;
    a column with some negative values keeps them and the note counts them (the analysis reads them as 0)."""
    path = tmp_path / "loss.csv"
    path.write_text("step,train/entropy_loss\n" + "".join(f"{s},{-1.0 + s / 100:.3f}\n" for s in range(60)))
    (run,) = load_log(path)
    assert run.mapping[M.ENTROPY_MEAN] == "train/entropy_loss"
    assert run.series(M.ENTROPY_MEAN)[1][:2].tolist() == [1.0, 0.99]
    assert any("holds no positive value: read as a loss (-H) and negated" in n for n in run.notes)
    mixed = tmp_path / "mixed.csv"
    mixed.write_text("step,entropy\n" + "".join(f"{s},{(-1) ** (s % 3 == 0) * 0.5:.3f}\n" for s in range(60)))
    (run,) = load_log(mixed)
    assert run.series(M.ENTROPY_MEAN)[1][:2].tolist() == [-0.5, 0.5]
    assert any("holds 20 negative value(s) of 60" in n for n in run.notes)


@pytest.mark.parametrize("sep", [";", "\t"])
def test_decimal_commas_in_a_semicolon_or_tab_separated_file(tmp_path, sep) -> None:
    """A spreadsheet export in a locale that writes 0,532 (``to_csv(sep=";", decimal=",")``): before, "entropy column
    holds '1,1704'; the column is mostly text". Read with the comma as the decimal point, by the Arrow reader and
    the line reader (a short row) alike, with a note; a column that also has a decimal point is left as text, and a
    comma-separated file is never read so."""
    values = [(i, 1.2 * 0.97**i, 0.1 + i / 100) for i in range(1, 31)]
    rows = [f"{i}{sep}{h:.4f}{sep}{r:.3f}{sep}run a,b".replace(".", ",") for i, h, r in values]
    for name, body in {"fast": rows, "ragged": [*rows, "31"]}.items():
        p = tmp_path / f"{name}.csv"
        p.write_text(sep.join(["step", "entropy", "reward", "tag"]) + "\n" + "\n".join(body) + "\n")
        (run,) = load_log(p)
        steps, ent = run.series(M.ENTROPY_MEAN)
        assert steps.tolist() == list(range(1, 31))
        assert ent.tolist() == pytest.approx([round(h, 4) for _, h, _ in values])
        assert run.series(M.REWARD_MEAN)[1].tolist() == pytest.approx([round(r, 3) for *_, r in values])
        assert "decimal commas read as decimal points in 'entropy', 'reward'" in run.notes
    mixed = tmp_path / "mixed.csv"
    mixed.write_text(
        f"step{sep}entropy{sep}other\n" + "".join(f"{i}{sep}0.5{sep}{'1,5' if i % 2 else '1.5'}\n" for i in range(9))
    )
    (run,) = load_log(mixed)
    assert run.series("other")[0].tolist() == [0, 2, 4, 6, 8]  # its "1,5" cells skipped as text, as before
    assert not [n for n in run.notes if "decimal comma" in n]
    comma = tmp_path / "comma.csv"
    comma.write_text('step,entropy\n1,"0,5"\n2,"0,4"\n')
    with pytest.raises(ImportFormatError, match="'0,5'"):
        load_log(comma)
