"""The choices of the training loop that `mftlab plan` models too, defined once (no torch import)."""

METHODS = ("mask", "fft", "lora")  # mask = MFT; fft = full fine-tuning; lora = LoRA (needs peft)
PRECISIONS = ("auto", "bf16", "fp32")
SHARDINGS = ("none", "fsdp")
