"""Engines (llama.cpp, vLLM, any OpenAI-compatible endpoint) and the model clients built on them."""
