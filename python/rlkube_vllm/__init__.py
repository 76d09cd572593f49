"""rlkube's additions to the vLLM engine: full policy weights reloaded in place from a safetensors file."""
