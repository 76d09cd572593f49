"""The tiny and hf engines: one HTTP server (docs/contracts.md, "Engine") over an rlkube_policy policy."""
