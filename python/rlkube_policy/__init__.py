"""Policies shared by the engines and the trainer: the tiny model and Hugging Face models, sampling, log-probs, policy files."""
