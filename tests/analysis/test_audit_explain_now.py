"""Audit of the "now" sentence of a decay outlook: a level already past the collapse target is *below* it, and the
sentence says so. It read "at 10% of H_ref (0.077 nats) now" beside "entropy is down to 0.027 nats, 4% of H_ref"
(tinker arithmetic), and "critical collapse: entropy 0.0069 nats (0.7% of H_ref 1.02); at 10% of H_ref (0.1 nats)
now" on a synthetic fast collapse: a reader checking 0.7% against "at 10%" sees a contradiction."""

from __future__ import annotations

import re

from entropy_watch import synthetic
from entropy_watch.analysis import analyze


def test_decay_past_its_target_reads_below_it() -> None:
    run = synthetic.generate("fast_collapse", seed=1, n_steps=600)
    v = analyze(run.to_series()).verdict
    fc = v.forecast
    assert v.kind == "collapse" and fc is not None and fc.now, v.headline
    assert v.level is not None and v.level < fc.target, "the premise: the level is under the target"
    said = re.search(rf"(\w+) {re.escape(fc.target_label)} now", v.headline)
    assert said, v.headline
    assert said.group(1) in ("below", "under"), v.headline
    for a in v.alerts:  # every alert quoting its decay target "now" has its entropy under it
        m = re.search(r"(\w+) (\d+% of H_ref|the absolute floor) \((\d+(?:\.\d+)?) nats\) now", a.message)
        if m and a.kind in ("collapse", "saturation"):
            assert a.evidence["h_now"] < a.evidence["floor"] and m.group(1) in ("below", "under"), a.message
