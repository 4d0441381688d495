"""The real-time scorer and the batch prediction job."""
