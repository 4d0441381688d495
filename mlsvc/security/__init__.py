"""Security: which URIs and paths may be touched, who may call, and (later) which artifacts may be loaded."""
