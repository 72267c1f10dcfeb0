"""ZCA whitening of the steady prior's latent states: the diffusion model sees unit covariance.

The prior's latents are far from unit variance and strongly correlated: the codec maps a
field of X points to tokens x dim > X features (on the quickstart 256 features of a
64-point field), and a smooth long-time state has almost all of its energy in a few
directions. Per-feature standardisation left those correlations in place, so the
denoiser's small independent errors per feature broke them, and the decoded samples
carried a flat floor of energy at high wavenumbers that no held-out state has.

Whitening by the states' own covariance Sigma (`w = W (z - mean)`, `W = sd Sigma^(-1/2)`)
removes that: an error of the model in a direction the states barely move in is
scaled back by that direction's own small spread (`z = C w + mean`, `C = Sigma^(1/2) / sd`).
It also makes the EDM preconditioning exact for a Gaussian: with data of covariance
sd^2 I, the zero-initialised network (F = 0, D = c_skip x) is already the optimal
denoiser, so an untrained prior samples the Gaussian fit of the states and training
adds what a Gaussian cannot represent.

ZCA (the symmetric square root) rather than PCA: a spectral function of Sigma is
unique, whatever eigenvectors the solver returns for repeated eigenvalues and
whatever their signs, so the matrices do not depend on the LAPACK build that
computed them beyond rounding. They are computed, kept and applied in float64: the
spreads span six decades, more than float32 resolves in a product.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

# Directions with less spread than this fraction of the largest are left to a Gaussian: the
# codec's latents have exact null directions (more features than grid points), and a
# smooth state's finest scales sit at float32's resolution of the field.
GAUSSIAN_BELOW = 1e-3


@dataclass
class StateWhitening:
    """mean [tokens, dim]; whiten, colour and gaussian [F, F] with F = tokens * dim.

    The prior models the directions in which the states spread more than
    `GAUSSIAN_BELOW` of the most; `gaussian` projects onto the others, which it leaves to
    the Gaussian fit. There `to_model` gives zero and training adds fresh noise of the
    model's own spread (`in_gaussian`), so every coordinate the model sees has that
    variance, and the zero-initialised network already denoises it exactly; `to_latent`
    maps a sample back with each direction's own spread, those included. (Fitted to
    zeros there instead, the network learned to shrink everything: on the quickstart its
    samples had 0.07-0.3 of the states' variance along the directions it models.)
    """

    mean: Tensor
    whiten: Tensor
    colour: Tensor
    gaussian: Tensor

    @classmethod
    def fit(cls, states: Tensor, sigma_data: float) -> "StateWhitening":
        """From states [N, tokens, dim] (N >= 2), to covariance sigma_data^2 I."""
        if len(states) < 2:
            raise ValueError("whitening needs at least two states")
        flat = states.reshape(len(states), -1).double()
        mean = flat.mean(0)
        centred = flat - mean
        var, basis = torch.linalg.eigh(centred.T @ centred / (len(states) - 1))
        return cls._from_spectrum(mean.reshape(states.shape[1:]), var.clamp_min(0).sqrt() / sigma_data, basis)

    @classmethod
    def from_colour(cls, mean: Tensor, colour: Tensor) -> "StateWhitening":
        """What a prior's file ships (its mean and colouring), enough to map samples back."""
        std, basis = torch.linalg.eigh(colour.double())
        return cls._from_spectrum(mean.double(), std.clamp_min(0), basis)

    @classmethod
    def _from_spectrum(cls, mean: Tensor, std: Tensor, basis: Tensor) -> "StateWhitening":
        """From each direction's spread relative to sigma_data (the colouring's eigenvalues)."""
        modelled = std > GAUSSIAN_BELOW * float(std.max())
        kept = basis[:, modelled]
        whiten = (kept / std[modelled]) @ kept.T
        colour = (basis * std) @ basis.T
        gaussian = torch.eye(len(basis), dtype=basis.dtype) - kept @ kept.T
        return cls(mean, whiten, colour, gaussian)

    @classmethod
    def per_feature(cls, mean: Tensor, scale: Tensor) -> "StateWhitening":
        """The diagonal case, `w = (z - mean) * scale`: files written before whitening."""
        flat = scale.reshape(-1).double()
        return cls(mean.double(), torch.diag(flat), torch.diag(1.0 / flat), torch.zeros(len(flat), len(flat)).double())

    def to_model(self, z: Tensor) -> Tensor:
        """Latent states [..., tokens, dim] -> what the prior trains on (zero where it is Gaussian)."""
        return self._apply(self.whiten, z.double() - self.mean).to(z.dtype)

    def in_gaussian(self, x: Tensor) -> Tensor:
        """x [..., tokens, dim] projected onto the directions left to the Gaussian."""
        return self._apply(self.gaussian, x).to(x.dtype)

    def to_latent(self, w: Tensor) -> Tensor:
        """A prior sample [..., tokens, dim] -> a latent state."""
        return (self._apply(self.colour, w) + self.mean).to(w.dtype)

    @staticmethod
    def _apply(matrix: Tensor, x: Tensor) -> Tensor:
        """matrix @ x per item, in float64 (whitening spans six decades)."""
        return (x.reshape(*x.shape[:-2], -1).double() @ matrix.T).reshape(x.shape)
