"""The activation flows: an ordered list of steps, one module per step, and the engine
that runs them (built with the student activation flow)."""
