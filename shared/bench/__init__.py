"""Benchmarks behind ``organfed bench``: each module measures one part side by side in one run."""
