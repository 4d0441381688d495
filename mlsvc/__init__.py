"""mlsvc: a self-hosted machine-learning prediction service."""
