"""1-D masked-autoencoder ViT over spectra (MAE adapted to 1-D, as in the published research).

Parameter names follow the research code's ``MaskedAutoencoderViT`` so its state dicts load:
patch_embed.proj, cls_token, pos_embed, blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2},
norm, decoder_embed, mask_token, decoder_pos_embed, decoder_blocks.N..., decoder_norm, decoder_pred.
Masks are (B, L) floats over patches, 1 = removed (hidden from the encoder), 0 = kept.
"""
from __future__ import annotations

import torch
from torch import nn

from xrfcore.model.config import ModelConfig
from xrfcore.model.layers import Block, PatchEmbed, init_weights
from xrfcore.model.pos_embed import sincos_1d


class EncoderBase(nn.Module):
    """The encoder shared by the autoencoder and the regressor (same parameter names)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        d, n = cfg.embed_dim, cfg.num_patches
        self.patch_embed = PatchEmbed(cfg.patch_size, d)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        # fixed, not trained (a Parameter with requires_grad=False, as in the research state dicts)
        self.pos_embed = nn.Parameter(sincos_1d(d, n).unsqueeze(0), requires_grad=False)
        self.blocks = nn.ModuleList(Block(d, cfg.num_heads, cfg.mlp_ratio, cfg.norm_eps)
                                    for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(d, eps=cfg.norm_eps)

    def _init_encoder(self) -> None:
        nn.init.normal_(self.cls_token, std=0.02)

    def check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 2 or x.shape[1] != self.cfg.input_channels:
            raise ValueError(f"model expects spectra of shape (batch, {self.cfg.input_channels}) "
                             f"(its grid window), got {tuple(x.shape)}")

    def encode(self, x: torch.Tensor, ids_keep: torch.Tensor | None = None) -> torch.Tensor:
        """Tokens after the final norm: (B, 1 + kept patches, D); cls token first."""
        self.check_input(x)
        x = self.patch_embed(x) + self.pos_embed[:, 1:, :]
        if ids_keep is not None:
            x = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, x.shape[2]))
        cls = (self.cls_token + self.pos_embed[:, :1, :]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens[:, 0] if self.cfg.pool == "cls" else tokens[:, 1:].mean(dim=1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D) features of whole (unmasked) spectra: the cls token or the mean of patch tokens."""
        return self.pool(self.encode(x))


def masking_ids(batch: int, length: int, mask_ratio: float = 0.5, *,
                generator: torch.Generator | None = None, mask: torch.Tensor | None = None,
                device: torch.device | str = "cpu"):
    """(ids_keep, mask, ids_restore) for random masking (argsort of per-sample noise) or a given mask.

    ``mask``: (L,) or (B, L), true/1 = hidden; every row must hide the same number of patches.
    """
    if mask is None:
        if not 0.0 <= mask_ratio < 1.0:
            raise ValueError(f"mask ratio must be in [0, 1), got {mask_ratio}")
        len_keep = max(1, int(length * (1 - mask_ratio)))
        gdev = generator.device if generator is not None else device
        noise = torch.rand(batch, length, generator=generator, device=gdev).to(device)
    else:
        m = torch.as_tensor(mask, device=device).bool()
        if m.ndim == 1:
            m = m.unsqueeze(0).expand(batch, -1)
        if m.shape != (batch, length):
            raise ValueError(f"mask must have shape ({length},) or ({batch}, {length}) patches, "
                             f"got {tuple(m.shape)}")
        hidden = m.sum(dim=1)
        if (hidden != hidden[0]).any():
            raise ValueError("every spectrum in a batch must hide the same number of patches")
        if int(hidden[0]) >= length:
            raise ValueError("a mask must leave at least one patch visible")
        len_keep = length - int(hidden[0])
        noise = m.float()  # stable argsort: kept patches first, in order
    ids_shuffle = torch.argsort(noise, dim=1, stable=True)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    keep = torch.zeros(batch, length, device=device)
    keep[:, len_keep:] = 1
    out_mask = torch.gather(keep, 1, ids_restore)
    return ids_shuffle[:, :len_keep], out_mask, ids_restore


class MaskedAutoencoderViT(EncoderBase):
    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        de, n = cfg.decoder_embed_dim, cfg.num_patches
        self.decoder_embed = nn.Linear(cfg.embed_dim, de)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, de))
        self.decoder_pos_embed = nn.Parameter(sincos_1d(de, n).unsqueeze(0), requires_grad=False)
        self.decoder_blocks = nn.ModuleList(Block(de, cfg.decoder_num_heads, cfg.mlp_ratio, cfg.norm_eps)
                                            for _ in range(cfg.decoder_depth))
        self.decoder_norm = nn.LayerNorm(de, eps=cfg.norm_eps)
        self.decoder_pred = nn.Linear(de, cfg.patch_size)
        self.apply(init_weights)
        self._init_encoder()
        nn.init.normal_(self.mask_token, std=0.02)

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], self.cfg.num_patches, self.cfg.patch_size)

    def unpatchify(self, p: torch.Tensor) -> torch.Tensor:
        return p.reshape(p.shape[0], -1)

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        x = self.decoder_embed(latent)
        n_mask = ids_restore.shape[1] + 1 - x.shape[1]
        x_ = torch.cat([x[:, 1:], self.mask_token.expand(x.shape[0], n_mask, -1).to(x.dtype)], dim=1)
        x_ = torch.gather(x_, 1, ids_restore.unsqueeze(-1).expand(-1, -1, x.shape[2]))
        x = torch.cat([x[:, :1], x_], dim=1) + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            x = blk(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:]

    def _per_patch(self, x: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        target = self.patchify(x).float()
        if self.cfg.norm_pix_loss:
            target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6) ** 0.5
        return ((pred.float() - target) ** 2).mean(dim=-1)  # (B, L), float32 even under autocast

    def loss_per_sample(self, x: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B,) mean squared error per spectrum over the hidden patches (or all, per config)."""
        per_patch = self._per_patch(x, pred)
        if self.cfg.loss_on == "all":
            return per_patch.mean(dim=1)
        return (per_patch * mask).sum(1) / mask.sum(1).clamp(min=1)

    def forward_loss(self, x: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        per_patch = self._per_patch(x, pred)
        if self.cfg.loss_on == "all" or mask.sum() == 0:
            return per_patch.mean()
        return (per_patch * mask).sum() / mask.sum()

    def forward(self, x: torch.Tensor, mask_ratio: float = 0.5, *,
                generator: torch.Generator | None = None, mask: torch.Tensor | None = None):
        """(loss, pred (B, L, patch), mask (B, L), 1 = hidden) for a batch of transformed spectra."""
        self.check_input(x)
        ids_keep, mask, ids_restore = masking_ids(x.shape[0], self.cfg.num_patches, mask_ratio,
                                                  generator=generator, mask=mask, device=x.device)
        latent = self.encode(x, ids_keep)
        pred = self.forward_decoder(latent, ids_restore)
        return self.forward_loss(x, pred, mask), pred, mask
