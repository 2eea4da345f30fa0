"""The forecast experiment: series, forecasters (one module per family), the backtest, scores."""
