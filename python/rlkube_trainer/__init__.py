"""rlkube's Python side: the GRPO trainer server and the tiny policy (engine) server."""
