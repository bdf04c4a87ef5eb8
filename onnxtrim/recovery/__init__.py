"""Recovering accuracy after trimming: fine-tuning loops that compose the public stages.

Network Trimming's iterations (trim, fine-tune, recalibrate, trim again) and Zhu & Gupta's
gradual pruning inside fine-tuning. Training itself is `onnxtrim.torch_bridge.finetune`;
nothing here imports torch until a loop runs.
"""
