"""The recovery flow's steps, one module each."""
