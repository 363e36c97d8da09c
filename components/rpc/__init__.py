"""Service invocation (InvokeService): kind ``rpcs``."""
