"""MFT inside training stacks people already use.

transformers.Trainer / TRL's SFTTrainer (DDP included; FSDP and DeepSpeed are refused):

    handle = mftlab.mask_model(model, mask_ratio=0.1)        # scores become the only trainable tensors
    trainer = Trainer(model=model, args=args, train_dataset=ds, callbacks=[MaskCallback(handle)])
    trainer.train()                                            # OUT/mask.safetensors (+ one per checkpoint)

A plain PyTorch loop (three lines around your own loop):

    handle = mftlab.mask_model(model, mask_ratio=0.1)
    optimizer = torch.optim.AdamW(handle.trainable_parameters(), lr=2e-5)
    ...   loss.backward(); optimizer.step(); optimizer.zero_grad(); handle.refresh()   # each step
    handle.save("mask.safetensors")
"""

from mftlab.integrations.hf_trainer import MaskCallback

__all__ = ["MaskCallback"]
