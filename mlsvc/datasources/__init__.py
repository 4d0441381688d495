"""CSV reading, schema inference, rearrangement and statistics for datasources."""
