"""The surrogate's models: a fixed latent codec, the latent operator, and the denoisers.

`LatentCodec` maps a 1D field to latent tokens with no learned weights (so latents
are reproducible anywhere); `LatentOperator` steps latents forward in time;
`TokenDenoiser` is the residual diffusion model, its consistency student and the
steady prior. Build them through the `build_*` functions below so every stage and
evaluation agree on the architecture the config describes.
"""

from ups.models.build import (
    architecture,
    build_codec,
    build_diffusion,
    build_operator,
    build_steady_prior,
    build_student,
    param_count,
)

__all__ = [
    "architecture",
    "build_codec",
    "build_diffusion",
    "build_operator",
    "build_steady_prior",
    "build_student",
    "param_count",
]
