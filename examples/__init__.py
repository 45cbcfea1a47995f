"""Example task functions used by `make demo` and the sample configs."""
