"""A fixed linear map between a 1D field and latent tokens, identical in every process.

The design asks that a resumed stage see the same latents as the run it continues,
even on a fresh machine. A learned autoencoder would need its weights saved and
shipped before any stage could start; this codec has no weights at all — it is
recomputed from `(nx, tokens, dim)` with closed-form cosines — so nothing is saved
but the normalisation constants in `describe()`.

Construction (version `CODEC_VERSION`):

- patch width `p = X // tokens` (`X % tokens == 0` is required);
- token `k` looks at a periodic window of width `W = min(X, max(p, dim))` centred on
  its patch `[k*p, (k+1)*p)`: indices `(k*p + (p - W)//2 + n) mod X`, `n < W`;
- its `dim` features are the first `min(dim, W)` orthonormal DCT-II basis functions
  on that window, `sqrt((1 if j == 0 else 2) / W) * cos(pi * (n + 0.5) * j / W)`;
  if `dim > W` the remaining rows are zero;
- the encoder `E` [tokens*dim, X] is built in float64 with numpy; the decoder is
  its pseudo-inverse `D = pinv(E)` (float64 SVD, singular values below
  `PINV_RTOL * max` dropped), so `D @ E = I` whenever `tokens * dim >= X` (then
  `dim >= p`, every window holds a full DCT and the windows cover the field);
- both are rounded to float32 and kept as non-persistent buffers.

Rounding a float64 matrix to float32 absorbs the last-bit differences between libm
or LAPACK builds, so the buffers are the same bytes on any machine in practice; the
latents are then the same bytes for the same inputs on the same kind of device.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

CODEC_VERSION = 1
PINV_RTOL = 1e-10


def dct_window_encoder(nx: int, tokens: int, dim: int) -> np.ndarray:
    """The float64 encoder matrix E [tokens*dim, nx] described in the module docstring."""
    check_sizes(nx, tokens, dim)
    p = nx // tokens
    width = min(nx, max(p, dim))
    n_basis = min(dim, width)
    n = np.arange(width, dtype=np.float64)
    j = np.arange(n_basis, dtype=np.float64)[:, None]
    basis = np.cos(math.pi * (n + 0.5) * j / width)
    basis *= np.where(j == 0, math.sqrt(1.0 / width), math.sqrt(2.0 / width))
    enc = np.zeros((tokens, dim, nx), dtype=np.float64)
    for k in range(tokens):
        cols = (k * p + (p - width) // 2 + np.arange(width)) % nx
        rows = enc[k, :n_basis]  # a view: writing into it fills E
        rows[:, cols] = basis
    return enc.reshape(tokens * dim, nx)


def pseudo_inverse(mat: np.ndarray, rtol: float = PINV_RTOL) -> np.ndarray:
    """Moore-Penrose inverse via SVD; singular values below `rtol * max` count as zero."""
    u, s, vt = np.linalg.svd(mat, full_matrices=False)
    keep = s > rtol * s.max()
    inv_s = np.zeros_like(s)
    inv_s[keep] = 1.0 / s[keep]
    return (vt.T * inv_s) @ u.T


def check_sizes(nx: int, tokens: int, dim: int) -> None:
    if tokens < 1 or dim < 1 or nx < 1:
        raise ValueError(f"latent.tokens={tokens}, latent.dim={dim} and nx={nx} must be positive")
    if nx % tokens:
        raise ValueError(
            f"latent.tokens={tokens} must divide the field's grid size X={nx}; "
            f"pick a divisor of {nx}"
        )


class LatentCodec(nn.Module):
    """encode: u [..., X] -> z [..., tokens, dim]; decode: the pseudo-inverse, back to u."""

    def __init__(self, nx: int, tokens: int, dim: int, mean: float = 0.0, std: float = 1.0):
        super().__init__()
        if not (math.isfinite(mean) and math.isfinite(std) and std > 0):
            raise ValueError(f"codec normalisation needs a finite mean and std > 0, got {mean}, {std}")
        enc = dct_window_encoder(nx, tokens, dim)
        self.nx, self.tokens, self.dim = nx, tokens, dim
        self.mean, self.std = float(mean), float(std)
        self.register_buffer("encoder", torch.from_numpy(enc.astype(np.float32)), persistent=False)
        dec = pseudo_inverse(enc).astype(np.float32)
        self.register_buffer("decoder", torch.from_numpy(dec), persistent=False)

    @classmethod
    def from_description(cls, desc: dict) -> "LatentCodec":
        """Rebuild the codec stored in a checkpoint by `describe()`."""
        version = desc.get("version", CODEC_VERSION)
        if version != CODEC_VERSION:
            raise ValueError(f"codec version {version} is not {CODEC_VERSION}; re-encode the data")
        return cls(desc["nx"], desc["tokens"], desc["dim"], desc["mean"], desc["std"])

    def describe(self) -> dict:
        return {
            "version": CODEC_VERSION,
            "nx": self.nx,
            "tokens": self.tokens,
            "dim": self.dim,
            "mean": self.mean,
            "std": self.std,
        }

    def encode(self, u: Tensor) -> Tensor:
        if u.shape[-1] != self.nx:
            raise ValueError(f"codec built for X={self.nx} got a field of size {u.shape[-1]}")
        # Never in bf16, even inside a training step's autocast: latents are data.
        with torch.autocast(u.device.type, enabled=False):
            flat = ((u - self.mean) / self.std) @ self.encoder.to(u.dtype).T
        return flat.reshape(*u.shape[:-1], self.tokens, self.dim)

    def decode(self, z: Tensor) -> Tensor:
        if tuple(z.shape[-2:]) != (self.tokens, self.dim):
            raise ValueError(
                f"codec built for latents [{self.tokens}, {self.dim}] got {list(z.shape[-2:])}"
            )
        flat = z.reshape(*z.shape[:-2], self.tokens * self.dim)
        with torch.autocast(z.device.type, enabled=False):
            return (flat @ self.decoder.to(z.dtype).T) * self.std + self.mean

    def extra_repr(self) -> str:
        return f"nx={self.nx}, tokens={self.tokens}, dim={self.dim}, mean={self.mean:.4g}, std={self.std:.4g}"
