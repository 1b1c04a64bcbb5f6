"""Shadow evaluation: models accounted on paper on live bars with the backtest's policy and costs."""
