"""Stands in for a machine without Ray: put this directory first on PYTHONPATH and
`import ray` fails exactly as it does when the package is not installed."""

raise ModuleNotFoundError("No module named 'ray'", name="ray")
