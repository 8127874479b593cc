"""Model files: ``NAME.safetensors`` (weights) + ``NAME.json`` (model card). Nothing is unpickled.

The card holds everything needed to use the weights honestly: architecture config (with the input
grid and energy window), transform + statistics, target statistics, training-data hashes, seeds,
metrics, whether the training data were simulated, the xrfcore version and the command line.
Research state dicts (``.pth``/``.ckpt``) load with ``torch.load(weights_only=True)`` only.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shlex
import stat
import sys
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from xrfcore.fileio import atomic_open, atomic_path
from xrfcore.model.config import PRESETS, ModelConfig
from xrfcore.model.mae import MaskedAutoencoderViT
from xrfcore.model.regressor import SpectrumRegressor

CARD_FORMAT = "xrfcore-model"
CARD_VERSION = 1
KINDS = {"mae": MaskedAutoencoderViT, "regressor": SpectrumRegressor}


def kind_of(model: nn.Module) -> str:
    model = getattr(model, "module", model)  # unwrap DDP
    for kind, cls in KINDS.items():
        if isinstance(model, cls):
            return kind
    raise TypeError(f"not an xrfcore model: {type(model).__name__}")


def build(kind: str, cfg: ModelConfig) -> nn.Module:
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {', '.join(KINDS)}")
    return KINDS[kind](cfg)


def paths(path) -> tuple[Path, Path]:
    """(weights, card) paths for a model given as a stem, a .safetensors/.json file or a folder."""
    p = Path(path)
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    elif p.is_dir():
        cards = sorted(p.glob("*.json"))
        cards = [c for c in cards if c.with_suffix(".safetensors").exists()]
        if len(cards) == 1:
            p = cards[0].with_suffix("")
        else:
            p = p / "model"
    return p.with_suffix(".safetensors"), p.with_suffix(".json")


# sizes past which a model file is refused unread (base with decoder: ~0.45 GB of weights)
MAX_CARD_BYTES = 32 << 20
MAX_WEIGHTS_BYTES = 4 << 30
MAX_ARRAYS_BYTES = 1 << 30


def regular_file(path, what: str = "model file", max_bytes: int = MAX_WEIGHTS_BYTES) -> Path:
    """``path`` if it is a plain file of at most ``max_bytes``; FIFOs, devices, folders (also behind a
    link) and oversized files are refused before anything opens them (a FIFO or /dev/zero would hang)."""
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise FileNotFoundError(f"{p}: {what} not found") from None
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{p}: {what} is not a regular file (a folder, FIFO or device); refused unread")
    if st.st_size > max_bytes:
        raise ValueError(f"{p}: {what} is {st.st_size / 2**20:.0f} MiB, over the {max_bytes / 2**20:.0f} MiB "
                         "a model file may have; refused unread")
    return p


def member(folder, name, what: str = "file") -> Path:
    """The file a model card names (``name``), which must lie inside the model's ``folder``: absolute
    paths, ``..`` and links that lead out of the folder are refused (ValueError)."""
    folder = Path(folder)
    if not isinstance(name, str) or not name.strip() or "\x00" in name:
        raise ValueError(f"{folder}: the model card names its {what} as {name!r}, not a file name")
    rel = Path(name)
    if rel.is_absolute() or ".." in rel.parts or "\\" in name:
        raise ValueError(f"{folder}: the model card names its {what} {name!r} outside the model folder; "
                         "model files are read only from inside their folder")
    p = folder / rel
    inside(p, folder, what)
    return p


def inside(p, folder, what: str = "file") -> Path:
    """``p`` unless it (after following links) lies outside ``folder``: then ValueError."""
    p = Path(p)
    try:
        Path(os.path.realpath(p)).relative_to(os.path.realpath(folder))
    except ValueError:
        raise ValueError(f"{p}: the {what} is a link to {os.path.realpath(p)}, outside the model folder "
                         f"{folder}; refused") from None
    return p


def check_finite(tensors: dict, path, what: str = "weights") -> None:
    """Refuse tensors / arrays holding NaN or infinite values, naming the file and the entry."""
    import numpy as np

    for k, v in tensors.items():
        if isinstance(v, torch.Tensor):
            bad = v.is_floating_point() and not bool(torch.isfinite(v).all())
        else:
            a = np.asarray(v)
            bad = a.dtype.kind in "fc" and not bool(np.isfinite(a).all())
        if bad:
            raise ValueError(f"{path}: {what} entry {k!r} holds NaN or infinite values; the model is "
                             "damaged and is refused")


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_json(path, obj) -> None:
    text = json.dumps(obj, indent=2, sort_keys=False, default=_json_default)

    with atomic_open(path) as f:
        f.write(text + "\n")


def _json_default(o):
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, (Path, _dt.datetime)):
        return str(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def state_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    model = getattr(model, "module", model)
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}


def save(path, model: nn.Module, card: dict) -> Path:
    """Write ``NAME.safetensors`` then ``NAME.json``; returns the card path.

    ``card`` must hold at least ``transform`` (``Transform.to_dict()``); this fills in format,
    kind, config, xrfcore version, creation time, weights hash, model id and the command line."""
    from xrfcore import __version__

    if "transform" not in card:
        raise ValueError("the model card needs the input transform ('transform': transform.to_dict())")
    weights, card_path = paths(path)
    tensors = state_tensors(model)
    with atomic_path(weights) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    digest = sha256_file(weights)
    kind = kind_of(model)
    full = {"format": CARD_FORMAT, "format_version": CARD_VERSION,
            "id": f"{kind}-{getattr(model, 'module', model).cfg.size}-{digest[:12]}", "kind": kind}
    full.update(card)
    full.update({"config": getattr(model, "module", model).cfg.to_dict(),
                 "weights_file": weights.name, "weights_sha256": digest,
                 "n_parameters": int(sum(t.numel() for k, t in tensors.items()
                                         if not k.endswith("pos_embed")))})
    full.setdefault("simulated_data", None)  # True / False; None = not stated
    full.setdefault("xrfcore_version", __version__)
    full.setdefault("created", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    full.setdefault("command_line", shlex.join(sys.argv))
    write_json(card_path, full)
    return card_path


def load_card(path) -> dict:
    _, card_path = paths(path)
    try:
        card = json.loads(regular_file(card_path, "model card", MAX_CARD_BYTES).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{card_path}: model card not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{card_path}: model card is not valid JSON ({exc})") from None
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        raise ValueError(f"{card_path}: not an xrfcore model card")
    if int(card.get("format_version", 0)) > CARD_VERSION:
        raise ValueError(f"{card_path}: model card version {card['format_version']} is newer than "
                         f"this xrfcore understands ({CARD_VERSION}); update xrfcore")
    return card


def load(path, *, map_location: str | torch.device = "cpu", verify: bool = True):
    """(model in eval mode, card) from a saved model; checks the weights against the card's hash."""
    weights, card_path = paths(path)
    card = load_card(card_path)
    if card.get("weights_file") is not None:  # a plain name inside the folder (renamed models keep theirs)
        member(card_path.parent, card["weights_file"], "weights file")
    if not weights.exists():
        raise FileNotFoundError(f"{weights}: weights file of {card_path.name} not found")
    inside(weights, card_path.parent, "weights file")
    regular_file(weights, "weights file", MAX_WEIGHTS_BYTES)
    if verify and card.get("weights_sha256") and sha256_file(weights) != card["weights_sha256"]:
        raise ValueError(f"{weights}: weights do not match their card (sha256 differs); "
                         "the file was changed or is incomplete")
    if not isinstance(card.get("config"), dict) or card.get("kind") not in KINDS:
        raise ValueError(f"{card_path}: the model card lacks a valid kind and architecture config")
    try:  # the architecture is checked against limits before anything is allocated
        cfg = ModelConfig.from_dict(card["config"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{card_path}: {exc}") from None
    try:
        sd = load_file(str(weights), device=str(map_location))
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"{weights}: not a readable safetensors file ({exc})") from None
    check_finite(sd, weights)
    model = build(card["kind"], cfg)
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{weights}: weights do not fit the card's architecture: "
                         f"{str(exc).splitlines()[0]}") from None
    return model.to(map_location).eval(), card


# -- research state dicts ----------------------------------------------------------------------
def load_research_state_dict(path) -> dict[str, torch.Tensor]:
    """Tensors of a research ``.pth``/``.ckpt``: plain, or under 'model'/'state_dict'/'model_state_dict'.

    ``torch.load(weights_only=True)``: only tensors and plain containers, never arbitrary pickles."""
    path = regular_file(path, "research state dict", MAX_WEIGHTS_BYTES)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: file not found") from None
    except Exception as exc:  # UnpicklingError for anything beyond tensors, or not a torch file
        raise ValueError(f"{path}: not a plain tensor state dict "
                         f"(weights_only load refused it: {str(exc).splitlines()[0][:200]})") from None
    for key in ("model", "state_dict", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj:
        raise ValueError(f"{path}: holds no state dict")
    sd = {}
    for k, v in obj.items():
        if not isinstance(v, torch.Tensor):
            raise ValueError(f"{path}: entry {k!r} is a {type(v).__name__}, not a tensor")
        k = k.removeprefix("module.")
        if k in ("fc.weight", "fc.bias"):  # a bare Linear head -> our Sequential(Linear)
            k = "fc.0." + k.split(".")[1]
        sd[k] = v
    check_finite(sd, path)
    return sd


def _count(sd: dict, prefix: str) -> int:
    idx = {int(k[len(prefix):].split(".")[0]) for k in sd if k.startswith(prefix)}
    return max(idx) + 1 if idx else 0


def config_from_state_dict(sd: dict, **overrides) -> ModelConfig:
    """Architecture read from tensor shapes; head counts from the presets (override if needed)."""
    try:
        d = sd["cls_token"].shape[-1]
        w = sd["patch_embed.proj.weight"]
        n = sd["pos_embed"].shape[1] - 1
    except KeyError as exc:
        raise ValueError(f"state dict lacks {exc}: not a masked-autoencoder ViT") from None
    heads = {e: h for e, _, h, _, _, _ in PRESETS.values()}
    dheads = {de: dh for *_, de, _, dh in PRESETS.values()}
    size = next((name for name, p in PRESETS.items() if p[0] == d and p[1] == _count(sd, "blocks.")),
                "custom")
    fields = dict(size=size, channels=n * w.shape[-1], patch_size=w.shape[-1], embed_dim=d,
                  depth=_count(sd, "blocks."), num_heads=heads.get(d, max(1, d // 64)),
                  mlp_ratio=sd["blocks.0.mlp.fc1.weight"].shape[0] / d if "blocks.0.mlp.fc1.weight" in sd else 4.0)
    if "decoder_embed.weight" in sd:
        de = sd["decoder_embed.weight"].shape[0]
        fields.update(decoder_embed_dim=de, decoder_depth=_count(sd, "decoder_blocks."),
                      decoder_num_heads=dheads.get(de, max(1, de // 32)))
    if "fc.0.weight" in sd:
        fields["n_outputs"] = sd["fc.0.weight"].shape[0]
    fields.update(overrides)
    return ModelConfig(**fields)


def load_research_model(path, kind: str = "auto", **cfg_overrides):
    """(model, card) from a research state dict, loaded strictly into our architecture.

    ``kind``: "mae", "regressor" (encoder + fc; an MAE file gives its encoder and a fresh head)
    or "auto" (regressor when the file has an ``fc`` head, else mae). A file with a head gets the
    research output ``head="sigmoid100"`` unless ``cfg_overrides`` say otherwise."""
    from xrfcore.model.transforms import ZScore

    sd = load_research_state_dict(path)
    if kind == "auto":
        kind = "regressor" if "fc.0.weight" in sd else "mae"
    if "fc.0.weight" in sd:  # the research head is sigmoid(fc(x)) * 100
        cfg_overrides.setdefault("head", "sigmoid100")
    cfg = config_from_state_dict(sd, **cfg_overrides)
    model = build(kind, cfg)
    if kind == "regressor" and "fc.0.weight" not in sd:
        model.load_encoder(sd)
    else:
        try:
            model.load_state_dict(sd, strict=True)
        except RuntimeError as exc:
            raise ValueError(f"{path}: state dict does not fit a {kind}: "
                             f"{str(exc).splitlines()[0]}") from None
    card = {"format": CARD_FORMAT, "format_version": CARD_VERSION, "kind": kind,
            "config": cfg.to_dict(), "transform": ZScore().to_dict(),
            "source": {"research_state_dict": str(path), "sha256": sha256_file(path)},
            "simulated_data": False, "notes": "published research weights; grid assumed 20 eV/channel"}
    return model.eval(), card
