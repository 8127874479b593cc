"""Resumable training state in one safetensors file (no pickle): model and optimizer tensors,
RNG states, and a JSON metadata entry (step, schedule, param groups, scaler, configs, metrics).

Written to a temp file and moved into place, so a crash or cancel never leaves half a checkpoint."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from xrfcore.fileio import atomic_path
from xrfcore.model.checkpoint import state_tensors

META_KEY = "xrfcore_train_state"


def save_state(path, model, optimizer, meta: dict, scaler=None) -> Path:
    path = Path(path)
    tensors = {f"model.{k}": v for k, v in state_tensors(model).items()}
    osd = optimizer.state_dict()
    scalars: dict[str, dict] = {}
    for idx, st in osd["state"].items():
        for key, val in st.items():
            if torch.is_tensor(val):
                tensors[f"optim.{idx}.{key}"] = val.detach().to("cpu").contiguous().clone()
            else:
                scalars.setdefault(str(idx), {})[key] = val
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    np_state = np.random.get_state()
    full = dict(meta)
    full.update({"param_groups": osd["param_groups"], "optim_scalars": scalars,
                 "numpy_rng": [np_state[0], np_state[1].tolist(), *map(float, np_state[2:])],
                 "python_rng": _listify(random.getstate()),
                 "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None})
    text = json.dumps(full)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={META_KEY: text})
    return path


def _listify(x):
    return [_listify(v) for v in x] if isinstance(x, (tuple, list)) else x


def _tuplify(x):
    return tuple(_tuplify(v) for v in x) if isinstance(x, list) else x


def read_meta(path) -> dict:
    from xrfcore.model.checkpoint import MAX_WEIGHTS_BYTES, regular_file

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: training checkpoint not found")
    regular_file(path, "training checkpoint", 3 * MAX_WEIGHTS_BYTES)  # weights + AdamW moments
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = (f.metadata() or {}).get(META_KEY)
    except Exception as exc:
        raise ValueError(f"{path}: not a readable checkpoint ({exc})") from None
    if meta is None:
        raise ValueError(f"{path}: not an xrfcore training checkpoint (no training state inside)")
    return json.loads(meta)


def load_state(path, model, optimizer, scaler=None, device="cpu") -> dict:
    """Restore model, optimizer, scaler and RNG states; returns the metadata dict."""
    meta = read_meta(path)
    tensors = load_file(str(path), device="cpu")
    target = getattr(model, "module", model)
    msd = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        target.load_state_dict(msd, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path}: checkpoint does not fit this model: {str(exc).splitlines()[0]}") from None
    state: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, idx, key = k.split(".", 2)
            state.setdefault(int(idx), {})[key] = v
    for idx, extra in meta.get("optim_scalars", {}).items():
        state.setdefault(int(idx), {}).update(extra)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    if scaler is not None and meta.get("scaler"):
        scaler.load_state_dict(meta["scaler"])
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    ns = meta["numpy_rng"]
    np.random.set_state((ns[0], np.asarray(ns[1], dtype=np.uint32), int(ns[2]), int(ns[3]), float(ns[4])))
    random.setstate(_tuplify(meta["python_rng"]))
    return meta
