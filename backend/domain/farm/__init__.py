"""The render farm as operators see it: the worker registry, remote drain, the operator role."""
