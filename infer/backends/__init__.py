"""Runner backends, one module each; ``make(model, signature, device) -> Runner``.
Each imports its runtime lazily so the others run without it installed."""
