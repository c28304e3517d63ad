"""What each GAN loss needs from its discriminator, and what its healthy numbers look like.

Plain data (no torch), read by the config checks (refuse or warn on a discriminator nothing
constrains), by the D step (which penalty to add) and by the health warnings (thresholds on the
logged ``d_real``/``d_fake``, which mean different things for each loss).

``lipschitz``: the loss is only a distance when D is Lipschitz-constrained (the WGAN critic);
without a constraint its values and G's gradients grow without bound. A constraint is weight
clipping (``loss.clip_value``), spectral norm (``discriminator.spectral_norm``) or the gradient
penalty (``wgan-gp``). ``penalty``: the penalty the loss brings with it. Thresholds are in the
units of D's outputs for that loss: ``d_wins``: ``d_real - d_fake`` above which D separates the
two so well that G learns little (None: no such level for an unbounded critic); ``g_fools``:
``d_fake - d_real`` above which G has found outputs D rates as more real than real images;
``max_logit``: ``|d_real|`` or ``|d_fake|`` above which D's outputs have blown up.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GanContract:
    kind: str
    summary: str
    lipschitz: bool = False
    penalty: str = ""  # "gp": WGAN-GP's gradient penalty on real/fake blends
    saturates: bool = False  # G's gradient vanishes while D wins (the original minimax)
    d_wins: float | None = 10.0
    g_fools: float | None = 10.0
    max_logit: float = 50.0


CONTRACTS: dict[str, GanContract] = {
    c.kind: c
    for c in (
        GanContract("minimax", "log(1 - D(G(z))), the original", saturates=True),
        GanContract("nonsaturating", "-log D(G(z)), binary cross-entropy (Real-ESRGAN)"),
        GanContract("ragan", "relativistic average (ESRGAN)"),
        GanContract(
            "lsgan", "least squares, targets 1 and 0", d_wins=0.9, g_fools=0.5, max_logit=10
        ),
        GanContract("hinge", "hinge, margins at +-1 (SN-GAN)", d_wins=4.0, g_fools=4.0),
        GanContract(
            "wgan", "Wasserstein critic", lipschitz=True, d_wins=None, g_fools=None, max_logit=1e3
        ),
        GanContract(
            "wgan-gp",
            "Wasserstein critic with gradient penalty",
            lipschitz=True,
            penalty="gp",
            d_wins=None,
            g_fools=None,
            max_logit=1e3,
        ),
    )
}
GAN_TYPES = tuple(CONTRACTS)


def refusals(kind: str, *, clip_value: float, spectral_norm: bool, gp_weight: float) -> list[str]:
    """Combinations that leave a loss meaningless: each a sentence saying what to set."""
    contract, problems = CONTRACTS[kind], []
    if contract.penalty == "gp" and gp_weight <= 0:
        problems.append(f"{kind} needs loss.gp_weight > 0 (its gradient penalty)")
    if contract.lipschitz and not (clip_value > 0 or spectral_norm or contract.penalty):
        problems.append(
            f"{kind} needs a Lipschitz constraint on D, and none is set: use "
            "discriminator.spectral_norm=true, loss.clip_value > 0 (weight clipping) or wgan-gp"
        )
    return problems


def cautions(kind: str, *, clip_value: float, spectral_norm: bool, r1_weight: float) -> list[str]:
    """Combinations that train, but not as one might think: each a sentence."""
    contract, notes = CONTRACTS[kind], []
    if contract.saturates:
        notes.append(
            f"{kind}: G's gradient vanishes while D wins; nonsaturating is the usual choice"
        )
    if clip_value > 0 and not contract.lipschitz:
        notes.append(f"loss.clip_value clips D's weights, which {kind} does not need")
    if clip_value > 0 and spectral_norm:
        notes.append(
            "loss.clip_value with spectral norm: the clip bounds the effective (normalised) "
            "weights, on top of the normalisation"
        )
    if not contract.lipschitz and not spectral_norm and r1_weight <= 0:
        notes.append(
            f"nothing constrains D ({kind} without spectral norm or R1): its logits can grow "
            "until G learns nothing; set discriminator.spectral_norm=true or loss.r1_weight"
        )
    return notes
