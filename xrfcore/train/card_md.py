"""The markdown model card of a fine-tuned model (``model.md`` beside ``model.json``).

A short human-readable summary of the JSON card: what the model predicts (targets with unit and
model space, and why that space), its validation metrics and intervals, and what it was trained on.
"""
from __future__ import annotations

import math


def _num(v, fmt: str = ".3f") -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, fmt)


def finetuned_markdown(card: dict) -> str:
    from xrfcore.targets import units_of

    units = units_of(card)
    stats = card.get("target_stats") or {}
    metrics = card.get("metrics") or {}
    conf = card.get("conformal") or {}
    labels = card.get("labels") or {}
    base = card.get("base_model") or {}
    lines = [f"# Fine-tuned model {card.get('id', '')}", ""]
    if card.get("simulated_data"):
        lines += ["**Trained on SIMULATED data**: not for use on real cores without checking.", ""]
    lines += [f"Regressor ({card.get('mode', '?')} fine-tuning) from base model {base.get('id') or 'none'}; "
              f"xrfcore {card.get('xrfcore_version', '')}.", "",
              "## Targets", "",
              "| target | unit | modelled | why | clamp | labels |",
              "|---|---|---|---|---|---|"]
    for t in card.get("targets") or []:
        st = stats.get(t, {})
        clamp = st.get("clamp", [0.0, 100.0])
        ctext = f"{_num(clamp[0], 'g') if clamp[0] is not None else '-inf'} to " \
                f"{_num(clamp[1], 'g') if clamp[1] is not None else 'inf'}"
        lines.append(f"| {t} | {units.get(t) or 'not stated'} | {st.get('space', 'linear')} | "
                     f"{st.get('space_reason', '')} | {ctext} | "
                     f"{(labels.get('n_per_target') or {}).get(t, '')} |")
    lines += ["", f"## Validation ({(card.get('validation') or {}).get('scheme', '')})", "",
              "| target | R2 | RMSE | MAE | n | interval |", "|---|---|---|---|---|---|"]
    alpha = (card.get("finetune_config") or {}).get("alpha", 0.1)
    for t, m in metrics.items():
        c = conf.get(t, {})
        q, avg = c.get("q"), ""
        if c.get("method") == "normalised" and c.get("cv_mean_halfwidth_normalised") is not None:
            q, avg = c["cv_mean_halfwidth_normalised"], " on average"
        if q is None:
            iv = "n/a"
        elif c.get("space") == "log":
            iv = f"x/ {math.exp(q):.2f}{avg}"
        else:
            iv = f"+- {q:.4g} {units.get(t, '')}".rstrip() + avg
        u = units.get(t, "")
        lines.append(f"| {t} | {_num(m.get('r2'))} | {_num(m.get('rmse'), '.4g')} {u} | {_num(m.get('mae'), '.4g')} {u} | "
                     f"{m.get('n', '')} | {iv} ({round(100 * (1 - alpha))} % conformal, {c.get('method', 'plain')}) |")
    lines += ["", "## Training data", "",
              f"- lab samples: {labels.get('matched', labels.get('n', '?'))} matched"
              + (f" from {', '.join(labels['files'])}" if labels.get("files") else "")
              + (f" from {labels['file']}" if labels.get("file") else ""),
              f"- cores: {', '.join(labels.get('cores') or []) or 'not recorded'}",
              f"- labels sha256: {labels.get('table_sha256', labels.get('sha256', ''))}",
              f"- weights sha256: {card.get('weights_sha256', '')}", ""]
    return "\n".join(lines)
