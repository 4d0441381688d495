"""Jobs: the one table of job kinds and their handlers, the context a handler runs in, the worker loop that
claims jobs from the queue, and the worker processes `mlsvc serve` keeps alive."""
