"""Starting weights for a new run: ``model.init_from`` loaded into a built ``TrainState``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from .checkpoint import CheckpointError, generator_weights
from .state import TrainState


def initialise(state: TrainState, log: Callable[[str], None]) -> None:
    """Load ``model.init_from`` (if set) into the generator and its EMA copy."""
    config = state.config
    source = config.model.init_from
    if not source:
        return
    try:
        weights, info = generator_weights(source)
    except CheckpointError as exc:
        raise CheckpointError(
            f"model.init_from: {exc} (train the PSNR stage first, or set model.init_from='')"
        ) from None
    ours = dataclasses.asdict(state.arch_config)  # type: ignore[call-overload]
    theirs = dict(info["arch_config"])
    other_scale = {**theirs, "scale": ours["scale"]} == ours and theirs != ours
    if info["arch"] != config.model.arch or (theirs != ours and not other_scale):
        raise CheckpointError(
            f"{source}: a {info['arch']} {info['arch_config']} generator cannot start "
            f"a {config.model.arch} {ours} run"
        )
    own = state.g.state_dict()
    if other_scale:
        # Same trunk, another scale (x2 from x4): take every weight whose shape fits and
        # keep this run's own (ICNR-initialised) upsampling layers for the rest.
        fitting = {k: v for k, v in weights.items() if k in own and own[k].shape == v.shape}
        state.g.load_state_dict({**own, **fitting})
        kept = sorted(set(own) - set(fitting))
        log(
            f"generator trunk initialised from {info['path']} (x{theirs['scale']}); "
            f"own layers kept: {', '.join(kept)}"
        )
    else:
        state.g.load_state_dict(weights)
        log(f"generator initialised from {info['path']}")
    state.ema.module.load_state_dict(state.g.state_dict())
