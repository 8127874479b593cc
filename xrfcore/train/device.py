"""Device and mixed-precision choice: CUDA when present and wanted, else CPU (never autocast on CPU)."""
from __future__ import annotations

import torch


def resolve_device(pref: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` -> a torch.device, with a clear error if unavailable."""
    pref = (pref or "auto").lower()
    if pref == "auto":
        pref = "cuda" if torch.cuda.is_available() else "cpu"
    if pref.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {pref!r} requested but no CUDA GPU is usable "
                             f"(torch {torch.__version__}); use --device cpu")
        if pref == "cuda":
            pref = f"cuda:{local_rank}"
        return torch.device(pref)
    if pref != "cpu":
        raise ValueError(f"unknown device {pref!r}; use auto, cpu or cuda")
    return torch.device("cpu")


def amp_dtype(device: torch.device, pref: str = "auto") -> torch.dtype | None:
    """Autocast dtype for ``device``: None on CPU (bf16 autocast there was ~14x slower), bf16 on
    CUDA cards that support it, else fp16 (with a GradScaler). ``pref``: auto | bf16 | fp16 | off."""
    pref = (pref or "auto").lower()
    if pref not in ("auto", "bf16", "fp16", "off"):
        raise ValueError(f"unknown mixed-precision setting {pref!r}; use auto, bf16, fp16 or off")
    if device.type != "cuda" or pref == "off":
        return None
    if pref == "fp16":
        return torch.float16
    if pref == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"
