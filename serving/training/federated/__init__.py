"""Federated fine-tuning on Flower: clients train the same LoRA as ``finetune`` on their own data; only the adapter
tensors travel; the server aggregates them (FedAvg, FedProx), checkpoints every round and writes an ordinary
adapter with its run card."""
