"""The latent codec: exact round trip, reproducible bytes across processes, clear errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ups.config import config_from_dict
from ups.models import build_codec
from ups.models.latent import LatentCodec, dct_window_encoder

REPO_ROOT = Path(__file__).resolve().parents[2]


def _fixed_field(nx: int, batch: int = 3) -> torch.Tensor:
    x = np.linspace(0.0, 2 * np.pi, nx, endpoint=False)
    rows = [np.sin((k + 1) * x) + 0.3 * np.cos(3 * x + k) + 0.1 * k for k in range(batch)]
    return torch.tensor(np.stack(rows), dtype=torch.float32)


@pytest.mark.parametrize(
    "nx,tokens,dim",
    [(64, 16, 16), (64, 8, 8), (64, 16, 4), (64, 4, 32), (32, 4, 64), (64, 64, 1)],
)
def test_decode_of_encode_returns_the_field_when_tokens_times_dim_covers_the_grid(nx, tokens, dim):
    codec = LatentCodec(nx, tokens, dim, mean=0.2, std=1.7)
    u = torch.randn(5, nx, generator=torch.Generator().manual_seed(0)) * 2 + 0.5
    assert torch.allclose(codec.decode(codec.encode(u)), u, atol=2e-5)


def test_codec_keeps_full_precision_inside_bf16_autocast():
    codec = LatentCodec(64, 16, 16)
    u = torch.randn(2, 64, generator=torch.Generator().manual_seed(2))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z = codec.encode(u)
        back = codec.decode(z)
    assert z.dtype == torch.float32 and torch.equal(z, codec.encode(u))
    assert torch.equal(back, codec.decode(z))


def test_lossy_codec_is_a_projection_so_reencoding_changes_nothing():
    codec = LatentCodec(64, 8, 4)  # 32 features for 64 points
    z = codec.encode(torch.randn(4, 64, generator=torch.Generator().manual_seed(1)))
    assert torch.allclose(codec.encode(codec.decode(z)), z, atol=1e-5)


def test_latents_keep_leading_batch_dims():
    codec = LatentCodec(64, 16, 8)
    z = codec.encode(torch.zeros(2, 3, 64))
    assert z.shape == (2, 3, 16, 8)
    assert codec.decode(z).shape == (2, 3, 64)


def test_a_field_equal_to_the_mean_encodes_to_zero():
    codec = LatentCodec(32, 4, 8, mean=1.5, std=3.0)
    assert torch.equal(codec.encode(torch.full((2, 32), 1.5)), torch.zeros(2, 4, 8))


def test_token_features_are_orthonormal_dct_rows_on_their_window():
    enc = dct_window_encoder(64, 16, 16).reshape(16, 16, 64)
    for k in (0, 7, 15):
        assert np.allclose(enc[k] @ enc[k].T, np.eye(16), atol=1e-12)
        assert (np.abs(enc[k]).sum(axis=0) > 0).sum() == 16  # window width W = max(p, dim)


def test_same_field_gives_same_latent_bytes_in_a_fresh_process():
    code = (
        "import sys, torch\n"
        "from tests.unit.test_latent_codec import _fixed_field\n"
        "from ups.models.latent import LatentCodec\n"
        "z = LatentCodec(64, 16, 16, mean=0.25, std=0.75).encode(_fixed_field(64))\n"
        "sys.stdout.write(z.contiguous().numpy().tobytes().hex())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    )
    here = LatentCodec(64, 16, 16, mean=0.25, std=0.75).encode(_fixed_field(64))
    assert out.stdout == here.contiguous().numpy().tobytes().hex()


def test_grid_size_not_divisible_by_tokens_raises_naming_latent_tokens():
    with pytest.raises(ValueError, match=r"latent\.tokens=6.*X=64"):
        LatentCodec(64, 6, 8)


@pytest.mark.parametrize("mean,std", [(0.0, 0.0), (0.0, -1.0), (float("nan"), 1.0)])
def test_bad_normalisation_raises(mean, std):
    with pytest.raises(ValueError, match="std"):
        LatentCodec(64, 16, 16, mean=mean, std=std)


def test_field_of_the_wrong_size_raises():
    codec = LatentCodec(64, 16, 16)
    with pytest.raises(ValueError, match="X=64"):
        codec.encode(torch.zeros(2, 32))
    with pytest.raises(ValueError, match="latents"):
        codec.decode(torch.zeros(2, 8, 16))


def test_description_rebuilds_an_identical_codec_and_no_weights_are_saved():
    codec = LatentCodec(64, 16, 8, mean=0.1, std=2.0)
    again = LatentCodec.from_description(codec.describe())
    assert torch.equal(again.encoder, codec.encoder) and torch.equal(again.decoder, codec.decoder)
    assert again.describe() == codec.describe()
    assert codec.state_dict() == {}


def test_build_codec_ignores_mean_and_std_when_normalisation_is_off():
    cfg = config_from_dict({"latent": {"dim": 8, "tokens": 8, "normalize": False}})
    codec = build_codec(cfg, 64, mean=3.0, std=5.0)
    assert (codec.mean, codec.std, codec.tokens, codec.dim) == (0.0, 1.0, 8, 8)
