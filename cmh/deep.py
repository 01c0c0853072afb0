"""The extension API for deep methods: the shared training loop, its hooks and the shared layers/losses.

A third-party method subclasses :class:`DeepHashMethod` (see ``docs/adding-a-method.md``)::

    from cmh.deep import DeepConfig, DeepHashMethod, EpochContext, mlp

These names are stable; the modules they come from (``cmh.methods._train``, ``_nets``, ``_losses``) are
cmh's internals.
"""

from cmh.methods._losses import (
    code_alignment,
    cosine_matrix,
    joint_semantics,
    lsgan_discriminator_loss,
    lsgan_generator_loss,
    pairwise_nll,
    triplet_loss,
)
from cmh.methods._nets import discriminator, mlp
from cmh.methods._train import DeepConfig, DeepHashMethod, EpochContext, TrainData

__all__ = [
    "DeepConfig",
    "DeepHashMethod",
    "EpochContext",
    "TrainData",
    "code_alignment",
    "cosine_matrix",
    "discriminator",
    "joint_semantics",
    "lsgan_discriminator_loss",
    "lsgan_generator_loss",
    "mlp",
    "pairwise_nll",
    "triplet_loss",
]
