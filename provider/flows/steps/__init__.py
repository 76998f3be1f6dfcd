"""The activation's steps, one module each (see `provider.flows.step` for the interface)."""
