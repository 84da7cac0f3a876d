"""mftlab: Mask Fine-Tuning (MFT) for causal language models.

Learn a binary mask over the weights of an already fine-tuned model, store it as a compact
bit-packed safetensors file, and analyse what it removed.
"""

__version__ = "0.1.0"

from mftlab.errors import MftlabError  # noqa: E402,F401  (re-exported: `from mftlab import MftlabError`)
