"""The memory experiment: synthetic tasks, the change and blinding probes, the verdict."""
