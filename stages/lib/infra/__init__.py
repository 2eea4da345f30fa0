"""Infrastructure: atomic files, the entry-point wrapper, interrupts, MLflow tracking, paths, figures."""
