"""Recipes to features, candidate models, the train / validate / select loop, and metrics."""
