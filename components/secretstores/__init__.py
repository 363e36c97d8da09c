"""The secrets building block: stores the GetSecret API and ``secret_ref`` read."""
