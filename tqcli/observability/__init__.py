"""What an operator watches: metrics (Prometheus text and JSON) and the counters behind them."""
