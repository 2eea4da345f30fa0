"""Commands for people, not DVC stages: check params and data, compare runs, search the memory horizon, migrate MLflow runs."""
