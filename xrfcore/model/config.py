"""Model architecture and input grid, as one JSON-able dataclass.

The grid (channels, keV/channel, offset) is the spectrum the model expects after resampling;
the optional energy window selects a contiguous slice of it (e.g. the first 512 channels =
0-10.24 keV at 20 eV/channel: a 10 kV spectrum holds nothing above ~10.5 keV).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

# name -> (embed_dim, depth, num_heads, decoder_embed_dim, decoder_depth, decoder_num_heads)
PRESETS: dict[str, tuple[int, int, int, int, int, int]] = {
    "tiny": (192, 6, 3, 128, 2, 4),      # ~3.1 M parameters: CPU-friendly
    "small": (384, 8, 6, 256, 4, 8),     # ~16 M
    "base": (768, 12, 12, 512, 8, 16),   # the published size (~111 M with decoder)
}

# bounds a model card's architecture must keep to (checked before any tensor is allocated):
# generous for real models (base: 768 wide, 12 deep, ~111 M parameters with its decoder)
LIMITS: dict[str, tuple[int, int]] = {
    "channels": (1, 65536), "window_start": (0, 65535), "window_channels": (1, 65536),
    "patch_size": (1, 4096), "embed_dim": (2, 4096), "depth": (1, 64), "num_heads": (1, 128),
    "decoder_embed_dim": (2, 4096), "decoder_depth": (0, 64), "decoder_num_heads": (1, 128),
    "n_outputs": (1, 64)}
MAX_PARAMETERS = 2_000_000_000


@dataclass
class ModelConfig:
    size: str = "tiny"
    channels: int = 2048           # channels of the model grid
    gain_kev: float = 0.02         # keV per channel of the model grid
    offset_kev: float = 0.0        # keV of channel 0
    window_start: int = 0          # first grid channel the model reads
    window_channels: int | None = None  # None: all channels from window_start
    patch_size: int = 16
    embed_dim: int = 192
    depth: int = 6
    num_heads: int = 3
    decoder_embed_dim: int = 128
    decoder_depth: int = 2
    decoder_num_heads: int = 4
    mlp_ratio: float = 4.0
    norm_eps: float = 1e-6
    norm_pix_loss: bool = False
    loss_on: str = "masked"        # "masked" (published) or "all" patches
    pool: str = "cls"              # regressor / embed pooling: "cls" (published) or "mean"
    n_outputs: int = 2             # regressor outputs (CaCO3, TOC)
    head: str = "linear"           # "linear", or "sigmoid100" (published: sigmoid(fc(x)) * 100)

    def __post_init__(self) -> None:
        self.validate()

    # -- derived -------------------------------------------------------------------------------
    @property
    def input_channels(self) -> int:
        """Number of values the network reads (the window, or the whole grid)."""
        if self.window_channels is None:
            return self.channels - self.window_start
        return self.window_channels

    @property
    def num_patches(self) -> int:
        return self.input_channels // self.patch_size

    @property
    def window(self) -> slice:
        return slice(self.window_start, self.window_start + self.input_channels)

    def grid(self):
        """The model grid as an ``xrfcore.energy.Grid``."""
        from xrfcore.energy import Grid

        return Grid(self.channels, self.gain_kev, self.offset_kev)

    def window_kev(self) -> tuple[float, float]:
        lo = self.offset_kev + self.window_start * self.gain_kev
        return lo, lo + self.input_channels * self.gain_kev

    def validate(self) -> None:
        self._check_limits()
        if self.window_start < 0 or self.input_channels <= 0 or \
                self.window_start + self.input_channels > self.channels:
            raise ValueError(f"energy window [{self.window_start}, +{self.window_channels}) "
                             f"does not fit in {self.channels} channels")
        if self.input_channels % self.patch_size:
            raise ValueError(f"patch size {self.patch_size} must divide the {self.input_channels} "
                             "input channels")
        for dim, heads, what in ((self.embed_dim, self.num_heads, "encoder"),
                                 (self.decoder_embed_dim, self.decoder_num_heads, "decoder")):
            if dim % heads or dim % 2:
                raise ValueError(f"{what} width {dim} must be even and divisible by {heads} heads")
        if self.loss_on not in ("masked", "all"):
            raise ValueError(f"loss_on must be 'masked' or 'all', not {self.loss_on!r}")
        if self.pool not in ("cls", "mean"):
            raise ValueError(f"pool must be 'cls' or 'mean', not {self.pool!r}")
        if self.head not in ("linear", "sigmoid100"):
            raise ValueError(f"head must be 'linear' or 'sigmoid100', not {self.head!r}")

    def _check_limits(self) -> None:
        """Types and sane bounds, before anything is allocated (a model card may be hostile)."""
        for name, (lo, hi) in LIMITS.items():
            v = getattr(self, name)
            if name == "window_channels" and v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError(f"model architecture: {name} must be a whole number, not {v!r}")
            if not lo <= v <= hi:
                raise ValueError(f"model architecture: {name} {v} is outside {lo}..{hi}; refused "
                                 "(a damaged or hand-made model card?)")
        for name in ("gain_kev", "offset_kev", "mlp_ratio", "norm_eps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or abs(v) == float("inf"):
                raise ValueError(f"model architecture: {name} must be a finite number, not {v!r}")
        if not 0 < self.mlp_ratio <= 16 or not 0 < self.gain_kev <= 1 or not 0 < self.norm_eps < 1:
            raise ValueError(f"model architecture: mlp_ratio {self.mlp_ratio}, gain {self.gain_kev} keV or "
                             f"norm_eps {self.norm_eps} out of range; refused")
        n = self.input_channels // max(1, self.patch_size)
        per_block = (4 + 2 * self.mlp_ratio) * self.embed_dim ** 2
        dec_block = (4 + 2 * self.mlp_ratio) * self.decoder_embed_dim ** 2
        params = self.depth * per_block + self.decoder_depth * dec_block + n * (self.embed_dim + self.decoder_embed_dim)
        if params > MAX_PARAMETERS:
            raise ValueError(f"model architecture of about {params / 1e6:.0f} M parameters is over the "
                             f"{MAX_PARAMETERS / 1e6:.0f} M xrfcore accepts; refused")

    # -- construction / serialisation -------------------------------------------------------
    @classmethod
    def preset(cls, name: str = "tiny", **overrides) -> "ModelConfig":
        if name not in PRESETS:
            raise ValueError(f"unknown model size {name!r}; choose one of {', '.join(PRESETS)}")
        e, d, h, de, dd, dh = PRESETS[name]
        fields = dict(size=name, embed_dim=e, depth=d, num_heads=h, decoder_embed_dim=de,
                      decoder_depth=dd, decoder_num_heads=dh)
        fields.update(overrides)
        return cls(**fields)

    def replace(self, **changes) -> "ModelConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"model config has unknown fields: {', '.join(sorted(unknown))}")
        return cls(**d)
