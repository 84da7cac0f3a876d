"""A mask applied to a model in memory, reversibly (`Mask.apply_to`).

Only the values of the masked weights are kept aside (about `mask_ratio` of the targeted
weights), so `restore()` puts the model back bit for bit at a fraction of a model copy.
"""

from __future__ import annotations

import torch

from mftlab.errors import MftlabError
from mftlab.mft.apply import apply_mask_
from mftlab.models.loading import named_weights


class AppliedMask:
    """The result of `Mask.apply_to(model)`: the masked weights are zero until `restore()`.

    Usable as a context manager: the weights come back at the end of the `with` block.
    `mismatched` lists the tensors whose fingerprints differed (only possible with force=True).
    """

    def __init__(self, model: torch.nn.Module, mask, force: bool = False):
        weights = named_weights(model)
        mask.check_fits(weights, force=force)  # before anything is changed
        self.model, self.mask = model, mask
        with torch.no_grad():
            self._saved = {n: weights[n][~mask.keep(n, weights[n].device)].clone() for n in mask.names}
        self.mismatched = apply_mask_(model, mask, force=force)
        self.active = True

    @torch.no_grad()
    def restore(self) -> torch.nn.Module:
        """Put the original values of the masked weights back; returns the model.

        Example:
            >>> applied = mask.apply_to(model); ...; model = applied.restore()  # doctest: +SKIP
        """
        if not self.active:
            raise MftlabError("this mask was restored already; apply it again with mask.apply_to(model)")
        weights = named_weights(self.model)
        for name, values in self._saved.items():
            weights[name][~self.mask.keep(name, weights[name].device)] = values
        self._saved, self.active = {}, False
        return self.model

    def __enter__(self) -> "AppliedMask":
        return self

    def __exit__(self, *exc) -> None:
        if self.active:
            self.restore()
