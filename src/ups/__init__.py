"""ups: a latent-space neural PDE surrogate trained in four resumable stages."""

__version__ = "0.1.0"
