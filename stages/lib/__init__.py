"""The library under the stage entry points, in layers that import downwards only.

    config    the params schema: validates params.yaml once, for every stage
    memory    the memory experiment: synthetic tasks, probes, the verdict
    forecast  the forecast experiment: series, forecasters, backtest, scores
    nn        Keras models and the one training function
    infra     files, the entry-point wrapper, interrupts, MLflow, paths, figures
    errors    the user errors, imported by every layer

memory and forecast do not import each other. .importlinter states these
contracts and the tests check them.
"""
