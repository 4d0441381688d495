"""Recommendation: interactions to a user × item matrix, candidate recommenders, ranking metrics, the loop."""
