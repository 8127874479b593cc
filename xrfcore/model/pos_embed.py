"""Fixed 1-D sine-cosine position embeddings (the MAE recipe, with a zero row for the cls token)."""
from __future__ import annotations

import torch


def sincos_1d(embed_dim: int, num_positions: int, cls_token: bool = True) -> torch.Tensor:
    """(num_positions [+1], embed_dim) float32: first half sin, second half cos."""
    if embed_dim % 2:
        raise ValueError(f"embedding width {embed_dim} must be even")
    omega = torch.arange(embed_dim // 2, dtype=torch.float64) / (embed_dim / 2.0)
    omega = 1.0 / 10000 ** omega
    pos = torch.arange(num_positions, dtype=torch.float64)
    out = pos[:, None] * omega[None, :]
    emb = torch.cat([torch.sin(out), torch.cos(out)], dim=1)
    if cls_token:
        emb = torch.cat([torch.zeros(1, embed_dim, dtype=torch.float64), emb], dim=0)
    return emb.float()
