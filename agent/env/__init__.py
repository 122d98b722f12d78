"""The gymnasium market environment: features, the TradingEnv and its reward."""
