"""The FastAPI app: one router per resource, the one error handler, authentication."""
