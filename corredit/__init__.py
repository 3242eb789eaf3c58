"""corredit: how the correlation between facts shapes knowledge editing.

Usage::

    from corredit import EditRequest
    req = EditRequest(case_id="0", subject="Ada Lovelace", relation_id="P19",
                      prompt="{} was born in", target_new="Paris", target_true="London")

Subpackages follow one direction of dependency: ``data``/``world`` -> ``models`` ->
``stats``/``embed`` -> ``graph`` -> ``schedule`` -> ``editors`` -> ``evaluate`` ->
``runner`` -> ``results`` -> ``plots``. Importing ``corredit`` does not import torch.
"""

from corredit.types import EditRequest, MultiHopQuestion, LocalityPrompt

__all__ = ["EditRequest", "MultiHopQuestion", "LocalityPrompt", "__version__"]
__version__ = "0.1.0"
