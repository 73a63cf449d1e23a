"""surgekit: what tools/surgectl and tools/surge-demo share. Python 3
standard library only, so the tools run on any machine with Python 3.8+."""

__all__ = ["resp", "api", "promtext", "stats", "report", "recorder", "kube"]
