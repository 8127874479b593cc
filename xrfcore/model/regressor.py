"""Regressor: the MAE encoder (same parameter names) plus a head ``fc`` on the cls token or mean pool.

The head is ``fc = Sequential(Linear)`` (state-dict keys ``fc.0.weight``/``fc.0.bias``, as in the
research ``SpectrumRegressor``); ``head="sigmoid100"`` adds the research's sigmoid * 100 output.
"""
from __future__ import annotations

import torch
from torch import nn

from xrfcore.model.config import ModelConfig
from xrfcore.model.layers import init_weights
from xrfcore.model.mae import EncoderBase


class SpectrumRegressor(EncoderBase):
    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        layers: list[nn.Module] = [nn.Linear(cfg.embed_dim, cfg.n_outputs)]
        if cfg.head == "sigmoid100":
            layers.append(nn.Sigmoid())
        self.fc = nn.Sequential(*layers)
        self.apply(init_weights)
        self._init_encoder()

    def encoder_state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.state_dict().items() if not k.startswith("fc.")}

    def load_encoder(self, source) -> list[str]:
        """Copy encoder weights from an MAE model or a state dict; returns the keys copied.

        Decoder keys are ignored; a missing or mis-shaped encoder key is an error."""
        sd = source.state_dict() if isinstance(source, nn.Module) else source
        own = self.encoder_state_dict()
        missing = [k for k in own if k not in sd]
        if missing:
            raise ValueError(f"encoder weights missing from the source: {', '.join(missing[:5])}")
        bad = [k for k in own if tuple(sd[k].shape) != tuple(own[k].shape)]
        if bad:
            raise ValueError(f"encoder weights of another shape: {bad[0]} {tuple(sd[bad[0]].shape)} "
                             f"vs {tuple(own[bad[0]].shape)} (different architecture or window)")
        self.load_state_dict({k: sd[k] for k in own}, strict=False)
        return list(own)

    @classmethod
    def from_mae(cls, mae: EncoderBase, **cfg_overrides) -> "SpectrumRegressor":
        model = cls(mae.cfg.replace(**cfg_overrides) if cfg_overrides else mae.cfg)
        model.load_encoder(mae)
        return model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, n_outputs); with head "sigmoid100" scaled to 0-100 like the research head."""
        out = self.fc(self.embed(x))
        return out * 100 if self.cfg.head == "sigmoid100" else out
