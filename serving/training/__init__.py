"""Fine-tuning: LoRA / QLoRA / full SFT of the served model, resumable, with a run card."""
