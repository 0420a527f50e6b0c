"""Linked hover and zoom across a page's step charts, as W&B and TensorBoard users know them.

Streamlit draws each Plotly figure in its own element, so Plotly cannot link them by itself. :func:`link_step_axes`
adds one small script to the page (``st.html`` with JavaScript, run once per browser tab) that watches for Plotly
charts whose x axis is the training step (axis title starting with "step") and:

* zoom: a drag-zoom or pan on one chart sets the same step range on the others, and on charts drawn later (a tab
  opened); a double-click (autorange) resets them all;
* hover: the hovered step is shown on every other step chart (``Plotly.Fx.hover`` at that x value).

Charts redrawn by a live refresh are picked up again (a ``MutationObserver`` on the page). Charts with another x
axis (reward vs entropy) are left alone.

(Plotly's code itself starts loading with the page document: ``app/early.py``.)
"""

from __future__ import annotations

import streamlit as st

SCRIPT = """
<script>
(() => {
  if (window.__ewLinked) return;
  window.__ewLinked = true;
  const P = () => window.Plotly;
  const isStep = gd => {
    const t = gd.layout && gd.layout.xaxis && gd.layout.xaxis.title;
    const text = (t && (t.text || t)) || "";
    return typeof text === "string" && text.startsWith("step");
  };
  const charts = () => [...document.querySelectorAll(".js-plotly-plot")].filter(isStep);
  let syncing = false;
  const onRelayout = (src, ev) => {
    if (syncing || !P()) return;
    let update = null;
    if (ev["xaxis.autorange"]) update = {"xaxis.autorange": true};
    else if ("xaxis.range[0]" in ev) update = {"xaxis.range": [ev["xaxis.range[0]"], ev["xaxis.range[1]"]]};
    else if (ev["xaxis.range"]) update = {"xaxis.range": ev["xaxis.range"].slice()};
    if (!update) return;
    window.__ewRange = update["xaxis.range"] || null;  // charts drawn later (a tab opened) start at this range
    syncing = true;
    Promise.all(charts().filter(gd => gd !== src).map(gd => P().relayout(gd, update)))
      .finally(() => { syncing = false; });
  };
  const onHover = (src, ev) => {
    if (syncing || !P() || !ev.points || !ev.points.length) return;
    const x = ev.points[0].x;
    syncing = true;
    try { charts().filter(gd => gd !== src).forEach(gd => P().Fx.hover(gd, {xval: x}, ["xy"])); }
    finally { syncing = false; }
  };
  const onUnhover = src => {
    if (syncing || !P()) return;
    charts().filter(gd => gd !== src).forEach(gd => P().Fx.unhover(gd));
  };
  const attach = () => charts().forEach(gd => {
    if (gd.__ewHooked) return;
    gd.__ewHooked = true;
    if (window.__ewRange && P()) {
      syncing = true;
      P().relayout(gd, {"xaxis.range": window.__ewRange.slice()}).finally(() => { syncing = false; });
    }
    gd.on("plotly_relayout", ev => onRelayout(gd, ev));
    gd.on("plotly_hover", ev => onHover(gd, ev));
    gd.on("plotly_unhover", () => onUnhover(gd));
  });
  let queued = false;
  new MutationObserver(() => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => { queued = false; attach(); });
  }).observe(document.body, {childList: true, subtree: true});
  attach();
})();
</script>
"""


def link_step_axes() -> None:
    """Link hover and zoom of every step chart on the page (see the module docstring); call once per script run."""
    st.html(SCRIPT, unsafe_allow_javascript=True)
